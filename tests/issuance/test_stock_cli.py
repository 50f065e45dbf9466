"""``etcwallet issuance stock add``: a batch into an outlet's stock with its emulated blank chips made."""

from __future__ import annotations

import json
import uuid
from typing import Any

import psycopg


def _outlet(url: str) -> str:
    code = f"CLI-{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO outlets (id, code, name, kind) VALUES (%s, %s, %s, 'self_operated')",
            (uuid.uuid4(), code, "命令行网点"),
        )
    return code


def test_a_batch_of_cards_goes_into_stock_and_the_drawer(cli_database: Any) -> None:
    run, url = cli_database, cli_database.url
    code = _outlet(url)
    first = "62010100000000000100"
    result = run(
        "issuance", "stock", "add", "--kind", "card", "--card-type", "stored_value",
        "--outlet", code, "--first", first, "--count", "250",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "62010100000000000349" in result.flat and "250" in result.flat
    with psycopg.connect(url) as conn:
        (count, low, high, card_type) = conn.execute(
            "SELECT count(*), min(number), max(number), min(card_type) FROM issuance_chips"
        ).fetchone() or (0, None, None, None)
        (actions,) = conn.execute("SELECT array_agg(action) FROM audit_log").fetchone() or ([],)
    assert (count, low, high, card_type) == (250, first, "62010100000000000349", 22)
    assert "issuance.stock.add" in actions
    chips = sorted((cli_database.data_dir / "chips").glob("*.json"))
    assert len(chips) == 250 and json.loads(chips[0].read_text())["kind"] == "card"

    again = run(
        "issuance", "stock", "add", "--kind", "card", "--card-type", "account",
        "--outlet", code, "--first", "62010100000000000349", "--count", "5",
    )  # fmt: skip
    assert again.exit_code == 1 and "62010100000000000349" in again.flat
    with psycopg.connect(url) as conn:
        assert (conn.execute("SELECT count(*) FROM issuance_chips").fetchone() or (0,))[0] == 250


def test_bad_options_are_refused_before_anything_is_written(cli_database: Any) -> None:
    run, url = cli_database, cli_database.url
    code = _outlet(url)
    no_type = run(
        "issuance",
        "stock",
        "add",
        "--kind",
        "card",
        "--outlet",
        code,
        "--first",
        "6201" + "0" * 16,
        "--count",
        "1",
    )
    assert no_type.exit_code != 0 and "stored_value" in no_type.flat
    other_network = run(
        "issuance",
        "stock",
        "add",
        "--kind",
        "tag",
        "--outlet",
        code,
        "--first",
        "1101000000000001",
        "--count",
        "1",
    )
    assert other_network.exit_code == 1 and "6201" in other_network.flat
    unknown = run(
        "issuance",
        "stock",
        "add",
        "--kind",
        "tag",
        "--outlet",
        "NOPE",
        "--first",
        "6201000000000001",
        "--count",
        "1",
    )
    assert unknown.exit_code == 1 and "outlet" in unknown.flat
    with psycopg.connect(url) as conn:
        assert (conn.execute("SELECT count(*) FROM issuance_chips").fetchone() or (0,))[0] == 0
