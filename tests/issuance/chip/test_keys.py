"""The key service: two-level diversification, the master keys from configuration, and that they never print."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from etcwallet.core.config import Settings
from etcwallet.core.masking import mask_mapping, mask_secrets_processor
from etcwallet.issuance.chip import crypto
from etcwallet.issuance.chip.keys import (
    ISSUER_KEY_SETTINGS,
    CardIdentity,
    IssuerMasterKeys,
    SoftwareKeyService,
    derive_card_key,
    issuer_keys_from,
    key_service_from,
    load_issuer_keys,
)

h = bytes.fromhex
ISSUER = h("B8CACBE062010001")  # "甘肃" 6201 0001
CARD = CardIdentity(issuer_id=ISSUER, application_serial=h("2301000012345678"))
MASTER = IssuerMasterKeys(
    load=h("0123456789ABCDEFFEDCBA9876543210"),
    purchase=h("11111111111111112222222222222222"),
    tac=h("33333333333333334444444444444444"),
    maintenance=h("55555555555555556666666666666666"),
)
HEX = {name: getattr(MASTER, name).hex() for name in ISSUER_KEY_SETTINGS}


def test_card_keys_are_diversified_by_issuer_then_by_card() -> None:
    service = SoftwareKeyService(MASTER)
    keys = service.derive_card_keys(CARD)
    issuer_level = crypto.diversify(MASTER.load, h("B8CACBE0B8CACBE0"))
    assert keys.load == crypto.diversify(issuer_level, CARD.application_serial)
    assert keys.purchase == derive_card_key(MASTER.purchase, CARD)
    assert keys.tac == derive_card_key(MASTER.tac, CARD)
    assert keys.maintenance == derive_card_key(MASTER.maintenance, CARD)
    assert len({keys.load, keys.purchase, keys.tac, keys.maintenance}) == 4
    other_card = CardIdentity(issuer_id=ISSUER, application_serial=h("2301000012345679"))
    other_issuer = CardIdentity(issuer_id=h("C7E0BAA363010001"), application_serial=CARD.application_serial)
    assert service.derive_card_keys(other_card).load != keys.load
    assert service.derive_card_keys(other_issuer).load != keys.load
    assert keys.load != crypto.diversify(MASTER.load, CARD.application_serial)  # two levels, not one


def test_card_identity_checks_lengths() -> None:
    with pytest.raises(ValueError, match="8 bytes"):
        CardIdentity(issuer_id=ISSUER[:4], application_serial=CARD.application_serial)


def test_sm4_cards_only_behind_the_switch() -> None:
    with pytest.raises(crypto.UnsupportedAlgorithm):
        SoftwareKeyService(MASTER).derive_card_keys(CARD, algorithm_id=crypto.ALGORITHM_SM4)
    keys = SoftwareKeyService(MASTER, allow_unverified_sm4=True).derive_card_keys(
        CARD, algorithm_id=crypto.ALGORITHM_SM4
    )
    assert keys.load != SoftwareKeyService(MASTER).derive_card_keys(CARD).load


def test_keys_never_print() -> None:
    service = SoftwareKeyService(MASTER)
    for text in (repr(MASTER), repr(service), repr(service.derive_card_keys(CARD))):
        for value in HEX.values():
            assert value.lower() not in text.lower()
    settings = Settings(**{f"issuer_{name}_key": value for name, value in HEX.items()})
    assert all(
        value not in repr(settings) and value not in str(settings.model_dump()) for value in HEX.values()
    )


# --- configuration -------------------------------------------------------------------------------------


def test_master_keys_from_configuration(tmp_path: Path) -> None:
    keys = load_issuer_keys(HEX, tmp_path, True)
    assert keys == MASTER and keys.source == "environment"
    assert not (tmp_path / "issuer_keys.json").exists()


def test_production_without_issuer_keys_refuses_to_start(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="ETCW_ISSUER_LOAD_KEY, ETCW_ISSUER_PURCHASE_KEY") as err:
        load_issuer_keys({}, tmp_path, True)
    assert "ETCW_ISSUER_MAINTENANCE_KEY" in str(err.value)
    with pytest.raises(SystemExit, match="ETCW_ISSUER_TAC_KEY") as err:
        load_issuer_keys({**HEX, "tac": "  "}, tmp_path, True)
    assert "ETCW_ISSUER_LOAD_KEY" not in str(err.value)
    assert not (tmp_path / "issuer_keys.json").exists()
    with pytest.raises(SystemExit, match="ETCW_ISSUER_"):
        issuer_keys_from(Settings(env="production", data_dir=tmp_path))
    with pytest.raises(SystemExit, match="ETCW_ISSUER_"):
        key_service_from(Settings(env="production", data_dir=tmp_path))


@pytest.mark.parametrize(("value", "message"), [("zz" * 16, "not valid hex"), ("AB" * 8, "16 bytes")])
def test_malformed_issuer_key_exits_without_the_value(tmp_path: Path, value: str, message: str) -> None:
    with pytest.raises(SystemExit, match=message) as err:
        load_issuer_keys({**HEX, "purchase": value}, tmp_path, True)
    assert "ETCW_ISSUER_PURCHASE_KEY" in str(err.value) and value not in str(err.value)


def test_development_generates_issuer_keys_once(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    first = key_service_from(Settings(env="development", data_dir=data_dir))
    path = data_dir / "issuer_keys.json"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert set(json.loads(path.read_text())) == set(ISSUER_KEY_SETTINGS)
    second = key_service_from(Settings(env="development", data_dir=data_dir))
    assert second.derive_card_keys(CARD) == first.derive_card_keys(CARD)
    assert [p.name for p in data_dir.iterdir()] == ["issuer_keys.json"]  # no temporary files left behind
    keys = load_issuer_keys({"load": HEX["load"]}, data_dir, False)
    assert keys.load == MASTER.load  # configuration wins over the file
    assert keys.tac == issuer_keys_from(Settings(env="development", data_dir=data_dir)).tac
    assert keys.source == str(path)


def test_development_corrupt_issuer_keys_file_exits(tmp_path: Path) -> None:
    (tmp_path / "issuer_keys.json").write_text("{not json")
    with pytest.raises(SystemExit, match=r"issuer_keys\.json"):
        load_issuer_keys({}, tmp_path, False)
    (tmp_path / "issuer_keys.json").write_text(json.dumps({"load": HEX["load"]}))
    with pytest.raises(SystemExit, match="purchase"):
        load_issuer_keys({}, tmp_path, False)


@pytest.mark.parametrize(
    "key",
    [
        *ISSUER_KEY_SETTINGS.values(),
        *(f"issuer_{name}_key" for name in ISSUER_KEY_SETTINGS),
        "dlk",
        "card_dtk",
        "maintenance_key",
    ],
)
def test_issuer_key_names_are_masked(key: str) -> None:
    assert mask_mapping({key: HEX["maintenance"]}) == {key: "***"}


def test_issuer_keys_in_a_log_line_are_masked() -> None:
    event = mask_secrets_processor(
        None, "info", {"event": "x", "ETCW_ISSUER_MAINTENANCE_KEY": HEX["maintenance"]}
    )
    assert HEX["maintenance"] not in str(event)
