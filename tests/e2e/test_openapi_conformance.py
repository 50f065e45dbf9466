"""The OpenAPI document tells the truth: schemathesis calls every operation and checks each answer against it.

For each operation, a few generated requests (valid ones and invalid ones) are sent as each kind of caller:
finance staff, an administrator and a customer (public operations once, with no token). Every answer must
have a status the document lists for the operation, a media type it lists for that status, a body that
fits the documented schema, and never a 5xx. Operations that end the caller's own session are left out
(they would sign the rest of the run out).

The run is reproducible (``derandomize``) and small: a few examples per operation and caller, no
shrinking. Schemathesis's own clients run the application on another event loop; this application's
runtime (the pool, the ledger) lives on the test session's loop, so the cases are generated in a worker
thread and sent through ``httpx.ASGITransport`` on the session's loop, then checked by schemathesis.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import traceback
from collections.abc import Callable
from typing import Any
from uuid import uuid4

import httpx
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.strategies import from_regex
from psycopg_pool import AsyncConnectionPool
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from etcwallet.core.deps import Client
from etcwallet.core.errors import PROBLEM_JSON as PROBLEM
from etcwallet.core.money import CURRENCIES
from etcwallet.identity.audit.api import ANCHOR_PATTERN
from etcwallet.identity.authz import Role
from etcwallet.identity.sessions import service as sessions
from etcwallet.identity.staff import service as staff
from etcwallet.identity.validators import MOBILE_PATTERN, PASSWORD_PATTERN, validate_mobile, validate_password
from etcwallet.platform.audit import Anchor
from tests.e2e.conftest import staff_token
from tests.identity.software_authenticator import random_phone

BASE = "http://test"
C = "/api/v1/customers"
EXAMPLES = int(os.environ.get("ETCW_CONFORMANCE_EXAMPLES", "8"))

# Calls that end the caller's own session (or lock the caller out), which would spoil the rest of the run.
LEFT_OUT = frozenset(
    {
        ("POST", "/api/v1/staff/auth/logout"),
        ("POST", f"{C}/auth/logout"),
        ("DELETE", f"{C}/me/sessions/{{session_id}}"),
        ("POST", f"{C}/me/freeze"),
    }
)
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


async def customer_token(pool: AsyncConnectionPool) -> str:
    """A live, stepped-up session of a new customer (opened in the database, as the matrix does)."""
    customer_id = uuid4()
    async with pool.connection() as conn:
        await conn.execute(
            "INSERT INTO customers (id, phone, password_hash) VALUES (%s, %s, %s)",
            (customer_id, random_phone(), "!unusable"),
        )
        issued = await sessions.issue(
            conn,
            principal_type="customer",
            principal_id=customer_id,
            client=Client("127.0.0.1", "conformance"),
        )
        await sessions.record_step_up(conn, session_id=issued.session_id, factor="test")
    return issued.access_token


def _httpx_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """schemathesis's request (``requests`` style) as ``httpx.AsyncClient.request`` arguments."""
    out = {k: kwargs[k] for k in ("method", "url", "headers", "params", "cookies") if kwargs.get(k)}
    if "json" in kwargs:
        out["json"] = kwargs["json"]
    elif isinstance(kwargs.get("data"), bytes | str):
        out["content"] = kwargs["data"]
    elif kwargs.get("data") is not None:
        out["data"] = kwargs["data"]
    out["method"] = kwargs["method"]
    return out


def run_mode(
    operation: Any,
    mode: GenerationMode,
    headers: dict[str, str],
    send: Callable[[dict[str, Any]], httpx.Response],
) -> list[str]:
    """Send a few generated requests of one kind (valid or invalid) for one operation; the failures."""
    failures: list[str] = []

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def check(case: Any) -> None:
        kwargs = case.as_transport_kwargs(base_url=BASE, headers=headers)
        response = send(_httpx_kwargs(kwargs))
        try:
            case.validate_response(response, checks=CHECKS)
        except (Exception, BaseExceptionGroup) as exc:
            sent = f"{case.method} {case.formatted_path} query={case.query} body={case.body!r}"[:600]
            failures.append(
                f"{operation.label} [{mode.value}]: {sent}\n  -> {response.status_code} "
                f"{response.headers.get('content-type')} {response.text[:300]}\n  {exc}"
            )

    try:
        check()
    except Exception:  # a failure to generate: report it rather than stop the run
        failures.append(f"{operation.label} [{mode.value}]: {traceback.format_exc(limit=3)}")
    return failures


def run_operation(
    operation: Any, headers: dict[str, str], send: Callable[[dict[str, Any]], httpx.Response]
) -> list[str]:
    """Valid requests, and invalid ones where the operation takes anything that can be wrong."""
    raw = operation.definition.raw
    failures = run_mode(operation, GenerationMode.POSITIVE, headers, send)
    if raw.get("parameters") or raw.get("requestBody"):
        failures += run_mode(operation, GenerationMode.NEGATIVE, headers, send)
    return failures


def run_all(
    schema: Any, callers: dict[str, dict[str, str]], send: Callable[[dict[str, Any]], httpx.Response]
) -> list[str]:
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if (operation.method.upper(), operation.path) in LEFT_OUT:
            continue
        public = "security" not in operation.definition.raw
        for who, headers in callers.items():
            if who in OUTLET_CALLERS and not operation.path.startswith(OUTLET_PATHS):
                continue  # their answers elsewhere are the 403 the other staff callers already check
            if public and who != "anonymous":
                continue
            if not public and who == "anonymous":
                continue
            failures += [f"({who}) {f}" for f in run_operation(operation, headers, send)]
    return failures


OUTLET_CALLERS = frozenset({"outlet_supervisor", "bank_operator"})
OUTLET_PATHS = ("/api/v1/issuance", "/api/v1/outlet")


async def outlet_callers(pool: AsyncConnectionPool) -> dict[str, dict[str, str]]:
    """A supervisor at a self-operated outlet and a bank operator at a bank outlet: the counter's routes
    answer them with their real work, not a 403."""
    callers = {}
    for who, role, kind, bank in (
        ("outlet_supervisor", Role.OUTLET_SUPERVISOR, "self_operated", None),
        ("bank_operator", Role.BANK_OPERATOR, "bank", "gansu_bank"),
    ):
        async with pool.connection() as conn:
            place = await staff.create_outlet(
                conn, code=f"OA-{secrets.token_hex(5)}", name="一致性网点", kind=kind, bank=bank
            )
        callers[who] = {"Authorization": f"Bearer {await staff_token(pool, role, place.id)}"}
    return callers


@pytest.mark.timeout(600)
async def test_every_answer_is_documented(app: FastAPI, pool: AsyncConnectionPool) -> None:
    document = app.openapi()
    schema = schemathesis.openapi.from_dict(document)
    callers = {
        "anonymous": {},
        "finance": {"Authorization": f"Bearer {await staff_token(pool, Role.FINANCE)}"},
        "administrator": {"Authorization": f"Bearer {await staff_token(pool, Role.ADMINISTRATOR)}"},
        "customer": {"Authorization": f"Bearer {await customer_token(pool)}"},
        **await outlet_callers(pool),
    }
    loop = asyncio.get_running_loop()
    transport = httpx.ASGITransport(
        app=app, client=(f"10.88.{secrets.randbelow(250)}.{secrets.randbelow(250)}", 1)
    )
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as http:

        def send(kwargs: dict[str, Any]) -> httpx.Response:
            return asyncio.run_coroutine_threadsafe(http.request(**kwargs), loop).result(timeout=60)

        failures = await asyncio.to_thread(run_all, schema, callers, send)
    assert not failures, f"{len(failures)} answers disagree with the document:\n\n" + "\n\n".join(failures)


async def test_a_wrong_method_is_answered_405_with_every_method_the_path_has(
    app: FastAPI, anonymous: httpx.AsyncClient
) -> None:
    """``Allow`` lists every method of the path, not only those of the first route that matched it."""
    for path, operations in app.openapi()["paths"].items():
        documented = {m.upper() for m in operations}
        url = re.sub(r"\{\w+\}", lambda _: str(uuid4()), path)
        wrong = next(m for m in ("PATCH", "DELETE", "PUT", "POST", "GET") if m not in documented)
        resp = await anonymous.request(wrong, url)
        assert resp.status_code == 405, (wrong, path, resp.text)
        assert resp.headers["content-type"] == PROBLEM
        allowed = {m.strip() for m in resp.headers["allow"].split(",")}
        assert allowed - {"HEAD"} == documented, (wrong, path, resp.headers["allow"])


def test_the_document_carries_the_rules(app: FastAPI) -> None:
    """Currency codes, mobile numbers, the password policy and anchors are in the schema, not only in code."""
    document = app.openapi()
    schemas = document["components"]["schemas"]
    assert schemas["Money"]["properties"]["currency"]["enum"] == list(CURRENCIES)
    register = schemas["RegisterRequest"]["properties"]
    assert register["phone"]["pattern"] == MOBILE_PATTERN
    assert (register["password"]["minLength"], register["password"]["pattern"]) == (8, PASSWORD_PATTERN)
    assert register["sms_code"]["pattern"] == r"^\s*[0-9]{6}\s*$"
    assert schemas["StaffCreate"]["properties"]["password"]["pattern"] == PASSWORD_PATTERN
    (anchor,) = document["paths"]["/api/v1/admin/audit/verify"]["get"]["parameters"]
    assert anchor["schema"]["anyOf"][0]["items"]["pattern"] == ANCHOR_PATTERN
    assert "HTTPValidationError" not in schemas
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for status, answer in operation["responses"].items():
                if status.startswith(("4", "5")):
                    assert list(answer["content"]) == [PROBLEM], (method, path, status)


@settings(max_examples=200, derandomize=True, database=None, deadline=None)
@given(
    phone=from_regex(MOBILE_PATTERN), password=from_regex(PASSWORD_PATTERN), anchor=from_regex(ANCHOR_PATTERN)
)
def test_what_the_patterns_allow_the_validators_take(phone: str, password: str, anchor: str) -> None:
    """The patterns promise no more than the code keeps: whatever matches one passes its validator."""
    validate_mobile(phone)
    if len(password) <= 128:
        validate_password(password, phone=None)
    Anchor.parse(anchor)
