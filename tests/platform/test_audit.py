"""The audit log: what each row records, the SHA-256 hash chain that links the rows, the database's refusal
to rewrite them, and the detection of tampering (by ``audit.verify``, the admin endpoint and the CLI).

Tampering happens only in fresh databases created for the purpose on the same server: the shared session
database's chain is verified by other tests and must stay intact.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import httpx
import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from etcwallet.core.crypto import Keys
from etcwallet.core.db import open_pool
from etcwallet.core.deps import Client
from etcwallet.core.errors import DomainError
from etcwallet.identity.authz import Role
from etcwallet.identity.passwords import verify_secret
from etcwallet.identity.staff import service as staff
from etcwallet.platform import audit
from etcwallet.platform.audit import GENESIS, AuditEvent
from tests.conftest import STAFF_PASSWORD, StaffFactory
from tests.idempotency_keys import keyed

UA = "etcw-audit-test/2.0 (X11; Linux x86_64)"
SERVICE_UA = "etcw-service/2.0 (审计 · 测试)"
VERIFY = "/api/v1/admin/audit/verify"
_COLUMNS = "seq, at, actor_type, actor_id, action, target_type, target_id, outcome, ip, user_agent, detail, prev_hash, hash"
_CONTENT = (
    "actor_type",
    "actor_id",
    "action",
    "target_type",
    "target_id",
    "outcome",
    "ip",
    "user_agent",
    "detail",
)


# --- helpers -------------------------------------------------------------------------------------------


def as_dicts(cur: Any, rows: list[Any]) -> list[dict[str, Any]]:
    names = [d.name for d in cur.description]
    return [dict(zip(names, r, strict=True)) for r in rows]


async def rows_where(conn: Any, sql: str, params: Any = ()) -> list[dict[str, Any]]:
    cur = await conn.execute(f"SELECT {_COLUMNS} FROM audit_log WHERE {sql} ORDER BY seq", params)
    return as_dicts(cur, await cur.fetchall())


def recomputed_hash(row: dict[str, Any]) -> bytes:
    """The row's hash as the chain defines it: SHA-256 over the previous hash and the row's content."""
    return audit._digest(bytes(row["prev_hash"]), row["at"], {k: row[k] for k in _CONTENT})


async def verify_url(url: str) -> audit.ChainReport:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        return await audit.verify(conn)


def tamper(url: str, sql: str, params: Any = ()) -> None:
    """As the table's owner, switch the refusing triggers off, change the log, and switch them back on."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ALTER TABLE audit_log DISABLE TRIGGER USER")
        try:
            conn.execute(sql, params)
        finally:
            conn.execute("ALTER TABLE audit_log ENABLE TRIGGER USER")


def sync_rows(url: str, sql: str = "true", params: Any = ()) -> list[dict[str, Any]]:
    with psycopg.connect(url) as conn:
        cur = conn.execute(f"SELECT {_COLUMNS} FROM audit_log WHERE {sql} ORDER BY seq", params)
        return as_dicts(cur, cur.fetchall())


async def write_history(url: str, keys: Keys) -> list[int]:
    """Audit rows written the way the service writes them: a CLI-style staff creation, refused and accepted
    sign-ins, and an administrator's change with a nested detail. Returns every seq in order."""
    pool = await open_pool(url, 2)
    try:
        async with pool.connection() as conn, conn.transaction():
            member = await staff.create_staff(
                conn,
                username="auditor.one",
                display_name="审计员",
                password=STAFF_PASSWORD,
                role=Role.ADMINISTRATOR,
                outlet_id=None,
            )
            await audit.append(
                conn,
                AuditEvent(
                    "system",
                    "cli",
                    "staff.create",
                    "success",
                    "staff",
                    str(member.id),
                    detail={"username": "auditor.one", "role": "administrator"},
                ),
            )
        for username, password in [
            ("auditor.one", "Wrong-pass-2026!"),
            ("nobody.here", "x"),
            ("auditor.one", STAFF_PASSWORD),
        ]:
            with contextlib.suppress(DomainError):
                await staff.login_password(
                    pool,
                    cipher=keys.cipher,
                    username=username,
                    password=password,
                    client=Client("192.0.2.7", SERVICE_UA),
                )
        await audit.record(
            pool,
            AuditEvent(
                "staff",
                str(member.id),
                "staff.update",
                "success",
                "staff",
                str(uuid4()),
                "2001:db8::1",
                SERVICE_UA,
                {
                    "before": {"role": "outlet_operator", "outlet_id": None, "status": "active"},
                    "after": {"role": "finance", "outlet_id": None, "status": "disabled"},
                    "n": 3,
                    "ok": True,
                },
            ),
        )
        await audit.record(pool, AuditEvent("anonymous", None, "staff.login.totp", "refused"))
        async with pool.connection() as conn:
            cur = await conn.execute("SELECT seq FROM audit_log ORDER BY seq")
            return [r[0] for r in await cur.fetchall()]
    finally:
        await pool.close()


# --- what a row records, and the chain -----------------------------------------------------------------


async def test_rows_record_who_what_target_outcome_where_and_when_and_link_up(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, make_staff: StaffFactory, outlet
) -> None:
    admin = await make_staff(Role.ADMINISTRATOR, step_up=True)  # creating a member asks for it
    admin_id = (await client.get("/api/v1/staff/me", headers=admin)).json()["id"]
    name = f"t.{uuid4().hex[:12]}"
    start = datetime.now(UTC)
    r = await client.post(
        "/api/v1/admin/staff",
        json={
            "username": name,
            "display_name": "审计",
            "password": STAFF_PASSWORD,
            "role": "outlet_operator",
            "outlet_id": str(outlet.id),
        },
        headers=keyed(admin | {"User-Agent": UA}),
    )
    assert r.status_code == 201, r.text
    staff_id = r.json()["id"]
    # The enrollment code comes from another administrator than the one who set the password.
    second = await make_staff(Role.ADMINISTRATOR)
    second_id = (await client.get("/api/v1/staff/me", headers=second)).json()["id"]
    r = await client.post(
        f"/api/v1/admin/staff/{staff_id}/enrollment-code", headers=keyed(second | {"User-Agent": UA})
    )
    assert r.status_code == 201, r.text
    code = r.json()["enrollment_code"]
    wrong = await client.post(
        "/api/v1/staff/auth/login",
        json={"username": name, "password": "Wrong-pass-2026!"},
        headers={"User-Agent": UA},
    )
    assert wrong.status_code == 401
    step = await client.post(
        "/api/v1/staff/auth/login",
        json={"username": name, "password": STAFF_PASSWORD, "enrollment_code": code},
        headers={"User-Agent": UA},
    )
    assert step.status_code == 200
    r = await client.patch(
        f"/api/v1/admin/staff/{staff_id}", json={"status": "disabled"}, headers=admin | {"User-Agent": UA}
    )
    assert r.status_code == 200
    end = datetime.now(UTC)

    async with pool.connection() as conn:
        rows = await rows_where(conn, "target_id = %s", (staff_id,))
    assert [(x["actor_type"], x["actor_id"], x["action"], x["target_type"], x["outcome"]) for x in rows] == [
        ("staff", admin_id, "staff.create", "staff", "success"),
        ("staff", second_id, "staff.enrollment_code.issue", "staff", "success"),
        ("staff", staff_id, "staff.login.password", "staff", "refused"),
        ("staff", staff_id, "staff.login.password", "staff", "success"),
        ("staff", admin_id, "staff.update", "staff", "success"),
    ]
    assert code not in str(rows[1]["detail"])  # the code itself is never on the record
    rows = [rows[0], *rows[2:]]
    assert rows[1]["detail"] == {"username": name, "reason": "invalid_credentials"}
    assert rows[2]["detail"] == {"username": name, "totp_enrollment": "started"}
    assert rows[3]["detail"]["after"]["status"] == "disabled"
    ip = rows[0]["ip"]
    assert re.fullmatch(r"10\.\d+\.\d+\.\d+", ip), ip
    for row in rows:
        assert row["ip"] == ip and row["user_agent"] == UA
        assert start - timedelta(seconds=1) <= row["at"] <= end + timedelta(seconds=1)
        assert row["at"].tzinfo is not None
        assert len(bytes(row["hash"])) == len(bytes(row["prev_hash"])) == 32
        assert recomputed_hash(row) == bytes(row["hash"])
    assert [x["seq"] for x in rows] == sorted({x["seq"] for x in rows})
    assert rows[0]["at"] <= rows[1]["at"] <= rows[2]["at"] <= rows[3]["at"]

    # each row's prev_hash is the hash of the row just before it in the log
    async with pool.connection() as conn:
        for row in rows:
            cur = await conn.execute(
                "SELECT hash FROM audit_log WHERE seq < %s ORDER BY seq DESC LIMIT 1", (row["seq"],)
            )
            before = await cur.fetchone()
            assert before is not None and bytes(before[0]) == bytes(row["prev_hash"])


async def test_the_whole_shared_chain_links_from_genesis(pool: AsyncConnectionPool) -> None:
    await audit.record(pool, AuditEvent("system", "test", "test.audit.chain", "success"))
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) FILTER (WHERE before IS NOT NULL AND prev_hash <> before), count(*), "
            "bool_and(before IS NOT NULL OR prev_hash = %s) "
            "FROM (SELECT prev_hash, lag(hash) OVER (ORDER BY seq) AS before FROM audit_log) links",
            (GENESIS,),
        )
        broken, total, genesis_ok = await cur.fetchone()  # type: ignore[misc]
        cur = await conn.execute("SELECT count(*) FROM audit_log WHERE hash = prev_hash")
        (self_linked,) = await cur.fetchone()  # type: ignore[misc]
    assert total >= 1 and broken == 0 and genesis_ok and self_linked == 0


async def test_verify_holds_on_the_shared_chain(pool: AsyncConnectionPool) -> None:
    await audit.record(pool, AuditEvent("system", "test", "test.audit.verify", "success", detail={"k": "值"}))
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM audit_log")
        (before,) = await cur.fetchone()  # type: ignore[misc]
        report = await audit.verify(conn)
        small_pages = await audit.verify(conn, batch=7)
    assert report.ok and report.first_broken_seq is None and report.reason is None
    assert report.rows >= before
    assert small_pages.ok and small_pages.rows >= before


async def test_verify_endpoint_for_administrators_and_risk_officers(
    client: httpx.AsyncClient, make_staff: StaffFactory
) -> None:
    for role in (Role.ADMINISTRATOR, Role.RISK_OFFICER):
        r = await client.get(VERIFY, headers=await make_staff(role))
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["ok"] is True and body["rows"] > 0
        assert body["first_broken_seq"] is None and body["reason"] is None
    r = await client.get(VERIFY, headers=await make_staff(Role.FINANCE))
    assert r.status_code == 403 and r.json()["code"] == "forbidden"
    assert (await client.get(VERIFY)).status_code == 401


@pytest.mark.parametrize(
    ("operation", "sql"),
    [
        ("UPDATE", "UPDATE audit_log SET outcome = 'success', detail = '{}' WHERE seq = %(seq)s"),
        ("DELETE", "DELETE FROM audit_log WHERE seq = %(seq)s"),
        ("TRUNCATE", "TRUNCATE audit_log"),
    ],
)
async def test_the_database_refuses_to_rewrite_the_log(
    pool: AsyncConnectionPool, owner_pool: AsyncConnectionPool, operation: str, sql: str
) -> None:
    """Even the table's owner is refused (the service's role lacks the privilege altogether)."""
    seq = await audit.record(
        pool, AuditEvent("anonymous", None, "test.audit.refuse", "refused", detail={"op": operation})
    )
    async with owner_pool.connection() as conn:
        with pytest.raises(psycopg.errors.RestrictViolation) as refused:
            async with conn.transaction():
                await conn.execute(sql, {"seq": seq})
        assert operation in str(refused.value) and "audit_log" in str(refused.value)
        [row] = await rows_where(conn, "seq = %s", (seq,))
    assert row["outcome"] == "refused" and row["detail"] == {"op": operation}


# --- tampering (fresh databases only) ------------------------------------------------------------------


async def test_editing_any_field_of_a_row_is_detected_at_that_row(
    fresh_database: Callable[[], str], keys: Keys
) -> None:
    url = fresh_database()
    seqs = await write_history(url, keys)
    assert len(seqs) == 6
    intact = await verify_url(url)
    assert intact.ok and intact.rows == 6

    # the refused sign-in (second row) is the one someone would like to rewrite
    target = seqs[1]
    [original] = sync_rows(url, "seq = %s", (target,))
    assert original["action"] == "staff.login.password" and original["outcome"] == "refused"
    assert original["target_id"] is not None and original["user_agent"] == SERVICE_UA
    edits: list[tuple[str, Any]] = [
        ("outcome", "success"),
        ("actor_id", str(uuid4())),
        ("actor_type", "system"),
        ("action", "staff.login.totp"),
        ("target_id", None),
        ("ip", "198.51.100.1"),
        ("user_agent", None),
        ("at", original["at"] + timedelta(seconds=1)),
        ("detail", psycopg.types.json.Jsonb({"username": original["detail"]["username"]})),
    ]
    for column, value in edits:
        tamper(url, f"UPDATE audit_log SET {column} = %s WHERE seq = %s", (value, target))
        report = await verify_url(url)
        assert (report.ok, report.first_broken_seq, report.rows) == (False, target, 1), column
        assert report.reason is not None and "hash" in report.reason
        original_value = original[column]
        if column == "detail":
            original_value = psycopg.types.json.Jsonb(original_value)
        tamper(url, f"UPDATE audit_log SET {column} = %s WHERE seq = %s", (original_value, target))
        assert (await verify_url(url)).ok, column

    # re-hashing the edited row moves the break to the next row, whose prev_hash no longer matches
    edited = dict(original, outcome="success")
    tamper(
        url,
        "UPDATE audit_log SET outcome = 'success', hash = %s WHERE seq = %s",
        (recomputed_hash(edited), target),
    )
    report = await verify_url(url)
    assert (report.ok, report.first_broken_seq, report.rows) == (False, seqs[2], 2)
    assert report.reason is not None and "prev_hash" in report.reason


async def test_deleting_a_row_is_detected_at_the_next_row(
    fresh_database: Callable[[], str], keys: Keys
) -> None:
    url = fresh_database()
    seqs = await write_history(url, keys)
    assert (await verify_url(url)).ok

    tamper(url, "DELETE FROM audit_log WHERE seq = %s", (seqs[2],))
    report = await verify_url(url)
    assert (report.ok, report.first_broken_seq, report.rows) == (False, seqs[3], 2)
    assert report.reason is not None and "removed" in report.reason

    # removing the first row breaks the link to the genesis hash
    tamper(url, "DELETE FROM audit_log WHERE seq = %s", (seqs[0],))
    report = await verify_url(url)
    assert (report.ok, report.first_broken_seq, report.rows) == (False, seqs[1], 0)


async def test_verify_endpoint_names_the_broken_row(
    fresh_database: Callable[[], str], keys: Keys, settings
) -> None:
    """The admin endpoint reports on whatever database the application runs on: run one on a tampered copy."""
    from etcwallet.app import Runtime, create_app
    from etcwallet.ledger.service import Ledger
    from tests.conftest import sign_in_staff

    url = fresh_database()
    seqs = await write_history(url, keys)
    pool = await open_pool(url, 4)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        app = create_app(settings, runtime=Runtime(pool=pool, ledger=Ledger(pool), keys=keys))
        transport = httpx.ASGITransport(app=app, client=("192.0.2.50", 1234))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            headers = await sign_in_staff(c, "auditor.one")
            r = await c.get(VERIFY, headers=headers)
            body = r.json()
            assert {k: body[k] for k in ("ok", "rows", "first_broken_seq", "reason")} == {
                "ok": True,
                "rows": 8,
                "first_broken_seq": None,
                "reason": None,
            }
            head = f"{body['head_seq']}:{body['head_hash']}"
            assert body["head_seq"] >= seqs[-1] and len(body["head_hash"]) == 64
            r = await c.get(VERIFY, headers=headers, params={"anchor": head})
            assert r.json()["ok"] is True
            for bad in ("12", "x:" + "0" * 64, f"{body['head_seq']}:zz", f"1:{'0' * 63}"):
                r = await c.get(VERIFY, headers=headers, params={"anchor": bad})
                assert r.status_code == 422 and r.json()["field"] == "anchor", (bad, r.text)
            tamper(
                url,
                'UPDATE audit_log SET detail = detail || \'{"role": "finance"}\' WHERE seq = %s',
                (seqs[1],),
            )
            r = await c.get(VERIFY, headers=headers)
            body = r.json()
            assert r.status_code == 200 and body["ok"] is False
            assert body["first_broken_seq"] == seqs[1] and body["rows"] == 1 and "hash" in body["reason"]
    finally:
        await pool.close()
        root.handlers[:] = handlers
        root.setLevel(level)


async def test_a_row_with_a_large_float_in_its_detail_verifies(fresh_database: Callable[[], str]) -> None:
    url = fresh_database()
    pool = await open_pool(url, 2)
    try:
        await audit.record(
            pool, AuditEvent("system", "test", "test.float", "success", detail={"amount": 1e16})
        )
    finally:
        await pool.close()
    report = await verify_url(url)
    assert report.ok, report


async def test_many_rows_appended_in_one_message_link_up_with_awkward_details(
    fresh_database: Callable[[], str],
) -> None:
    """The server chains the rows of one message; details jsonb would spell differently still verify."""
    url = fresh_database()
    pool = await open_pool(url, 2)
    awkward: list[dict[str, Any]] = [
        {"amount": 1e20, "rate": 0.1, "tiny": 5e-324},
        {"nested": {"b": [1, (2, 3)], "a": None}, 7: "int key"},
        {"text": '中文 \\ "quoted" \u2028', "when": datetime(2026, 12, 3, tzinfo=UTC)},
        {},
    ]
    try:
        async with pool.connection() as conn:
            await audit.append(conn, AuditEvent("system", "test", "test.first", "success"))
            await audit.append_many(
                conn, [AuditEvent("system", "test", "test.many", "success", detail=d) for d in awkward]
            )
        async with pool.connection() as conn:
            cur = await conn.execute("SELECT detail FROM audit_log WHERE action = 'test.many' ORDER BY seq")
            stored = [row[0] for row in await cur.fetchall()]
    finally:
        await pool.close()
    assert stored[0] == {"amount": "1e+20", "rate": "0.1", "tiny": "5e-324"}
    assert stored[1] == {"nested": {"b": [1, [2, 3]], "a": None}, "7": "int key"}
    report = await verify_url(url)
    assert report.ok and report.rows == 5, report


async def test_an_anchor_catches_rows_deleted_from_the_end(
    fresh_database: Callable[[], str], keys: Keys
) -> None:
    url = fresh_database()
    seqs = await write_history(url, keys)
    before = await verify_url(url)
    assert before.ok and before.head_seq == seqs[-1] and before.head_hash is not None
    anchor = audit.Anchor.parse(f"{before.head_seq}:{before.head_hash}")

    tamper(url, "DELETE FROM audit_log WHERE seq >= %s", (seqs[-2],))

    # What is left still links up: the chain alone cannot tell.
    alone = await verify_url(url)
    assert alone.ok and alone.head_seq == seqs[-3]
    async with await psycopg.AsyncConnection.connect(url) as conn:
        anchored = await audit.verify(conn, anchors=[anchor])
    assert not anchored.ok and anchored.first_broken_seq == seqs[-1]
    assert anchored.reason is not None and "deleted from the end" in anchored.reason
    assert anchored.rows == len(seqs) - 2


async def test_an_anchor_with_another_hash_means_the_log_was_rewritten(
    fresh_database: Callable[[], str], keys: Keys
) -> None:
    url = fresh_database()
    seqs = await write_history(url, keys)
    async with await psycopg.AsyncConnection.connect(url) as conn:
        fine = await audit.verify(conn, anchors=[audit.Anchor(seqs[2], bytes(range(32)))])
        gap = await audit.verify(conn, anchors=[audit.Anchor(0, bytes(32))])
    assert (fine.ok, fine.first_broken_seq, fine.rows) == (False, seqs[2], 2)
    assert fine.reason is not None and "rewritten" in fine.reason
    assert not gap.ok and gap.reason == "no row has the anchored seq"


@pytest.mark.parametrize(
    "text", ["", "12", "12:", ":" + "a" * 64, "-1:" + "a" * 64, "3:" + "g" * 64, "3:abc"]
)
def test_anchor_text_must_be_seq_and_64_hex_digits(text: str) -> None:
    with pytest.raises(ValueError, match=r"SEQ:HASH|64 hex"):
        audit.Anchor.parse(text)


def test_anchor_text_parses() -> None:
    assert audit.Anchor.parse(" 42:" + "ab" * 32 + "\n") == audit.Anchor(42, bytes([0xAB]) * 32)


# --- the command line ----------------------------------------------------------------------------------


def test_cli_creates_an_administrator_from_stdin_and_verifies_the_chain(cli_database) -> None:
    run, url = cli_database, cli_database.url
    result = run(
        "staff",
        "create",
        "--username",
        "root.admin",
        "--display-name",
        "首席管理员",
        "--password-stdin",
        input="Root-pass-2026!\n",
    )
    assert result.exit_code == 0, result.output
    assert "root.admin" in result.flat and "administrator" in result.flat
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT id, role, outlet_id, status, password_hash, display_name FROM staff WHERE username = 'root.admin'"
        ).fetchone()
    assert row is not None
    staff_id, role, outlet_id, status, password_hash, display_name = row
    assert (role, outlet_id, status, display_name) == ("administrator", None, "active", "首席管理员")
    assert str(staff_id) in result.flat
    assert "Root-pass-2026!" not in password_hash and verify_secret(password_hash, "Root-pass-2026!")
    entry, issued = sync_rows(url)
    assert (entry["actor_type"], entry["actor_id"], entry["action"], entry["outcome"]) == (
        "system",
        "cli",
        "staff.create",
        "success",
    )
    assert (entry["target_type"], entry["target_id"]) == ("staff", str(staff_id))
    assert entry["detail"] == {"username": "root.admin", "role": "administrator"}
    assert bytes(entry["prev_hash"]) == GENESIS and recomputed_hash(entry) == bytes(entry["hash"])
    # The bootstrap path also hands out the first TOTP enrollment code: printed alone on standard output,
    # stored only as its hash, and audited (without the code).
    code = result.stdout.split()[-1]
    assert (issued["actor_id"], issued["action"], issued["target_id"]) == (
        "cli",
        "staff.enrollment_code.issue",
        str(staff_id),
    )
    assert code not in str(issued["detail"])
    with psycopg.connect(url) as conn:
        stored = conn.execute(
            "SELECT code_hash FROM staff_enrollment_codes WHERE staff_id = %s", (staff_id,)
        ).fetchone()
    assert stored is not None and bytes(stored[0]) == hashlib.sha256(code.encode()).digest()

    result = run("audit", "verify")
    assert result.exit_code == 0, result.output
    assert "intact" in result.flat and "2 rows" in result.flat


def test_cli_issues_a_new_enrollment_code_for_a_member_not_enrolled(cli_database) -> None:
    """The bootstrap path for a lost or expired code: a new one replaces the old; audited as the system."""
    run, url = cli_database, cli_database.url
    made = run(
        "staff",
        "create",
        "--username",
        "new.admin",
        "--display-name",
        "x",
        "--password-stdin",
        input="Good-pass-2026!\n",
    )
    assert made.exit_code == 0, made.output
    first = made.stdout.split()[-1]
    again = run("staff", "enrollment-code", "--username", "new.admin")
    assert again.exit_code == 0, again.output
    second = again.stdout.split()[-1]
    assert second != first and len(second) >= 40
    with psycopg.connect(url) as conn:
        stored = conn.execute("SELECT code_hash FROM staff_enrollment_codes").fetchall()
    assert [bytes(r[0]) for r in stored] == [hashlib.sha256(second.encode()).digest()]
    assert [r["action"] for r in sync_rows(url)][-1] == "staff.enrollment_code.issue"
    unknown = run("staff", "enrollment-code", "--username", "nobody.here")
    assert unknown.exit_code == 1 and "no staff member with that username" in unknown.flat


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("Sh0rt!", "at least 8 characters"),
        ("alllowercaseletters", "at least two of"),
        ("password00", "too common"),
    ],
)
def test_cli_refuses_a_weak_password(cli_database, password: str, message: str) -> None:
    run, url = cli_database, cli_database.url
    result = run(
        "staff",
        "create",
        "--username",
        "weak.admin",
        "--display-name",
        "x",
        "--password-stdin",
        input=f"{password}\n",
    )
    assert result.exit_code != 0, result.output
    assert message in result.flat, result.output
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM staff").fetchone() == (0,)
    assert sync_rows(url) == []


def test_cli_refuses_bad_placements_and_duplicates(cli_database) -> None:
    run = cli_database
    base = ("staff", "create", "--display-name", "x", "--password-stdin")
    ok = run(*base, "--username", "first.admin", input="Good-pass-2026!\n")
    assert ok.exit_code == 0, ok.output
    again = run(*base, "--username", "first.admin", input="Good-pass-2026!\n")
    assert again.exit_code == 1 and "username is taken" in again.flat, again.output
    no_outlet = run(
        *base,
        "--username",
        "op.one",
        "--role",
        "outlet_operator",
        "--outlet-code",
        "NOPE",
        input="Good-pass-2026!\n",
    )
    assert no_outlet.exit_code == 1 and "no outlet with that code" in no_outlet.flat, no_outlet.output
    needs_outlet = run(*base, "--username", "op.two", "--role", "outlet_operator", input="Good-pass-2026!\n")
    assert needs_outlet.exit_code == 1 and "needs an outlet" in needs_outlet.flat, needs_outlet.output
    bad_role = run(*base, "--username", "op.three", "--role", "root", input="Good-pass-2026!\n")
    assert bad_role.exit_code == 1 and "root" in bad_role.flat, bad_role.output
    with psycopg.connect(cli_database.url) as conn:
        assert conn.execute("SELECT username FROM staff").fetchall() == [("first.admin",)]
    assert [r["action"] for r in sync_rows(cli_database.url)] == [
        "staff.create",
        "staff.enrollment_code.issue",
    ]


def test_cli_verify_names_the_first_broken_row(cli_database) -> None:
    run, url = cli_database, cli_database.url
    for i in range(4):
        result = run(
            "staff",
            "create",
            "--username",
            f"admin.{i}",
            "--display-name",
            f"管理员{i}",
            "--password-stdin",
            input="Good-pass-2026!\n",
        )
        assert result.exit_code == 0, result.output
    seqs = [r["seq"] for r in sync_rows(url)]
    assert len(seqs) == 8  # each creation and its enrollment code
    assert run("audit", "verify").exit_code == 0

    tamper(
        url,
        "UPDATE audit_log SET detail = jsonb_set(detail, '{role}', '\"finance\"') WHERE seq = %s",
        (seqs[2],),
    )
    result = run("audit", "verify")
    assert result.exit_code == 1, result.output
    assert f"seq {seqs[2]}" in result.flat and "broken" in result.flat and "intact" not in result.flat

    tamper(url, "DELETE FROM audit_log WHERE seq = %s", (seqs[1],))
    result = run("audit", "verify")
    assert result.exit_code == 1, result.output
    assert f"seq {seqs[2]}" in result.flat and "removed" in result.flat


def test_cli_verify_prints_the_head_and_checks_anchors(cli_database) -> None:
    run, url = cli_database, cli_database.url
    for i in range(3):
        result = run(
            "staff",
            "create",
            "--username",
            f"admin.{i}",
            "--display-name",
            f"管理员{i}",
            "--password-stdin",
            input="Good-pass-2026!\n",
        )
        assert result.exit_code == 0, result.output
    seqs = [r["seq"] for r in sync_rows(url)]
    result = run("audit", "verify")
    assert result.exit_code == 0, result.output
    match = re.search(r"head: (\d+:[0-9a-f]{64})", result.flat)
    assert match is not None, result.output
    head = match.group(1)
    assert head.startswith(f"{seqs[-1]}:")
    assert run("audit", "verify", "--anchor", head).exit_code == 0

    tamper(url, "DELETE FROM audit_log WHERE seq = %s", (seqs[-1],))
    assert run("audit", "verify").exit_code == 0  # the shortened chain still links up
    result = run("audit", "verify", "--anchor", head)
    assert result.exit_code == 1, result.output
    assert f"seq {seqs[-1]}" in result.flat and "deleted from the end" in result.flat

    bad = run("audit", "verify", "--anchor", "not-an-anchor")
    assert bad.exit_code == 2 and "SEQ:HASH" in bad.flat, bad.output
