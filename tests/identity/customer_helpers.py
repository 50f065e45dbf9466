"""Helpers for the customer identity tests: fresh phones and ID numbers, codes from the dev outbox, sign-up."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import httpx
from psycopg_pool import AsyncConnectionPool

from etcwallet.identity.validators import id_check_char

BASE = "/api/v1/customers"
PASSWORD = "Etc-wallet-2026"
EN = {"Accept-Language": "en"}
_CODE = re.compile(r"验证码为 ([0-9]{6})")


def new_phone() -> str:
    """A random mobile number no other test uses."""
    return "139" + f"{secrets.randbelow(10**8):08d}"


def new_resident_id() -> str:
    """A random valid resident ID number (Beijing Dongcheng, born 1960-1999)."""
    birth = date(1960, 1, 1) + timedelta(days=secrets.randbelow(14_600))
    body = f"110101{birth:%Y%m%d}{secrets.randbelow(1000):03d}"
    return body + id_check_char(body)


def with_wrong_check(number: str) -> str:
    """The same ID number with a check character that does not fit."""
    right = number[-1]
    return number[:-1] + next(c for c in "0123456789X" if c != right)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def outbox(client: httpx.AsyncClient, phone: str) -> list[str]:
    """Texts the development SMS sink holds for a phone, newest first."""
    r = await client.get("/api/v1/dev/sms-outbox", params={"phone": phone})
    assert r.status_code == 200, r.text
    return [m["text"] for m in r.json()]


async def codes(client: httpx.AsyncClient, phone: str) -> list[str]:
    """The codes sent to a phone, newest first."""
    return [m.group(1) for t in await outbox(client, phone) if (m := _CODE.search(t))]


async def send_code(client: httpx.AsyncClient, phone: str, purpose: str) -> str:
    """Ask for a code (before sign-in) and read it from the outbox."""
    r = await client.post(f"{BASE}/sms-codes", json={"phone": phone, "purpose": purpose})
    assert r.status_code == 202, r.text
    return (await codes(client, phone))[0]


async def send_own_code(client: httpx.AsyncClient, headers: dict[str, str], phone: str, purpose: str) -> str:
    """Ask for a code to the signed-in customer's own phone and read it from the outbox."""
    r = await client.post(f"{BASE}/me/sms-codes", json={"purpose": purpose}, headers=headers)
    assert r.status_code == 202, r.text
    return (await codes(client, phone))[0]


async def skip_cooldown(pool: AsyncConnectionPool, phone: str) -> None:
    """Pretend the 60-second resend cooldown has passed for every code of this phone."""
    async with pool.connection() as conn:
        await conn.execute(
            "UPDATE sms_codes SET created_at = created_at - interval '61 seconds' WHERE phone = %s", (phone,)
        )


@dataclass
class Signed:
    """A registered customer and one live session."""

    phone: str
    id: str
    access: str
    refresh: str
    password: str = PASSWORD

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.access)


async def register(client: httpx.AsyncClient, phone: str | None = None, password: str = PASSWORD) -> Signed:
    """Register a fresh customer over HTTP (SMS code from the outbox)."""
    phone = phone or new_phone()
    code = await send_code(client, phone, "register")
    r = await client.post(f"{BASE}/register", json={"phone": phone, "password": password, "sms_code": code})
    assert r.status_code == 201, r.text
    body = r.json()
    return Signed(phone, body["customer"]["id"], body["access_token"], body["refresh_token"], password)


async def login(client: httpx.AsyncClient, phone: str, password: str = PASSWORD, **kw: Any) -> httpx.Response:
    return await client.post(f"{BASE}/login", json={"phone": phone, "password": password}, **kw)


async def sign_in(client: httpx.AsyncClient, who: Signed) -> Signed:
    """Another session (device) for the same customer."""
    r = await login(client, who.phone, who.password)
    assert r.status_code == 200 and r.json()["status"] == "signed_in", r.text
    return Signed(who.phone, who.id, r.json()["access_token"], r.json()["refresh_token"], who.password)


async def scalar(pool: AsyncConnectionPool, sql: str, *params: Any) -> Any:
    async with pool.connection() as conn:
        cur = await conn.execute(sql, params)
        row = await cur.fetchone()
        return None if row is None else row[0]


async def step_up(client: httpx.AsyncClient, who: Signed) -> None:
    """Step the session up with an SMS code to the customer's phone (for a customer without TOTP or passkey)."""
    r = await client.post("/api/v1/me/factors/step-up/sms/send", headers=who.headers)
    assert r.status_code == 202, r.text
    r = await client.post(
        "/api/v1/me/factors/step-up/sms/verify",
        json={"code": (await codes(client, who.phone))[0]},
        headers=who.headers,
    )
    assert r.status_code == 200 and r.json()["stepped_up"], r.text


def assert_problem(r: httpx.Response, status: int, code: str, field: str | None = None) -> dict[str, Any]:
    """A problem+json answer with this status and code (top-level or first field error) naming ``field``."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    body: dict[str, Any] = r.json()
    codes_seen = {body.get("code")} | {e.get("code") for e in body.get("errors", [])}
    assert code in codes_seen, body
    if field is not None:
        assert body.get("field") == field, body
    return body


def has_cjk(text: str) -> bool:
    return any("\u4e00" <= ch <= "\u9fff" for ch in text)
