"""Security headers on every answer (the fast lane's, refusals and unknown paths included), and the API
document, its viewers and the metrics absent in production."""

from __future__ import annotations

from collections.abc import AsyncIterator
from uuid import UUID, uuid4

import httpx
import pytest
from fastapi import FastAPI
from psycopg_pool import AsyncConnectionPool

from etcwallet.app import Runtime, create_app, keys_from
from etcwallet.core.config import Settings
from etcwallet.ledger.service import Ledger

EVERY_ANSWER = {
    "x-content-type-options": "nosniff",
    "content-security-policy": "frame-ancestors 'none'",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}


def assert_security_headers(r: httpx.Response, *, api: bool) -> None:
    for name, value in EVERY_ANSWER.items():
        assert r.headers.get_list(name) == [value], (r.request.url, name, r.headers)
    if api:
        assert r.headers.get_list("cache-control") == ["no-store"], (r.request.url, r.headers)


def transfer_body(debit: UUID | None = None, credit: UUID | None = None) -> dict[str, object]:
    return {
        "id": str(uuid4()),
        "debit_account_id": str(debit or uuid4()),
        "credit_account_id": str(credit or uuid4()),
        "amount": {"amount": 1, "currency": "CNY"},
        "code": "headers",
    }


async def test_every_kind_of_answer_carries_the_headers(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    debit, credit = uuid4(), uuid4()
    for account_id in (debit, credit):
        r = await client.post(
            "/api/v1/ledger/accounts",
            json={"id": str(account_id), "currency": "CNY", "code": "general", "owner": "headers"},
        )
        assert r.status_code == 201, r.text
    answers = {
        # the fast lane: a transfer, a refusal (unknown accounts), no token, a bad body
        "fast lane, applied": await client.post(
            "/api/v1/ledger/transfers", json=transfer_body(debit, credit)
        ),
        "fast lane, refused": await client.post("/api/v1/ledger/transfers", json=transfer_body()),
        "fast lane, no token": await anonymous.post("/api/v1/ledger/transfers", json=transfer_body()),
        "fast lane, bad body": await client.post("/api/v1/ledger/transfers", json={"id": "x"}),
        # FastAPI routes: a success that carries a token-bound answer, a 401, a 404 problem, a 422
        "account created": await client.post(
            "/api/v1/ledger/accounts",
            json={"id": str(uuid4()), "currency": "CNY", "code": "general", "owner": "headers"},
        ),
        "no token": await anonymous.get(f"/api/v1/ledger/accounts/{uuid4()}"),
        "unknown account": await client.get(f"/api/v1/ledger/accounts/{uuid4()}"),
        "bad id": await client.get("/api/v1/ledger/accounts/not-a-uuid"),
        "unknown api path": await anonymous.get("/api/v1/nothing-here"),
        "wrong method": await anonymous.delete("/api/v1/staff/auth/login"),
        "staff sign-in refused": await anonymous.post(
            "/api/v1/staff/auth/login", json={"username": "nobody", "password": "Nobody-2026!"}
        ),
    }
    statuses = {name: r.status_code for name, r in answers.items()}
    assert statuses == {
        "fast lane, applied": 201,
        "fast lane, refused": 404,
        "fast lane, no token": 401,
        "fast lane, bad body": 422,
        "account created": 201,
        "no token": 401,
        "unknown account": 404,
        "bad id": 422,
        "unknown api path": 404,
        "wrong method": 405,
        "staff sign-in refused": 401,
    }
    for r in answers.values():
        assert_security_headers(r, api=True)
    # Outside /api/ the same headers, without the no-store rule.
    for path in ("/healthz", "/no-such-page", "/docs", "/openapi.json"):
        assert_security_headers(await anonymous.get(path), api=False)


@pytest.fixture
async def production(pool: AsyncConnectionPool, ledger: Ledger, settings: Settings) -> AsyncIterator[FastAPI]:
    prod = settings.model_copy(update={"env": "production"})
    yield create_app(prod, runtime=Runtime(pool=pool, ledger=ledger, keys=keys_from(settings)))


@pytest.mark.parametrize("path", ["/docs", "/redoc", "/openapi.json", "/metrics", "/docs/oauth2-redirect"])
async def test_documents_and_metrics_are_served_outside_production_only(
    anonymous: httpx.AsyncClient, production: FastAPI, path: str
) -> None:
    assert (await anonymous.get(path)).status_code == 200
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=production), base_url="http://test") as c:
        r = await c.get(path)
        assert r.status_code == 404, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert_security_headers(r, api=False)
        assert (await c.get("/healthz")).status_code == 200  # the application itself is up
