"""SMS verification codes and the gateway that sends them.

A code is 6 random digits, stored only as a keyed hash, valid 5 minutes, for one purpose, with 5 tries.
A number can be sent a new code once a minute and at most ``DAILY_PER_PHONE`` times a day; an IP at most
``DAILY_PER_IP`` times a day. The gateway is an interface: the development sink writes what would have
been sent to the ``sms_outbox`` table, readable (outside production only) at ``/api/v1/dev/sms-outbox``
and with ``etcwallet dev sms-outbox``.

Expiry and cooldown are judged at the caller's ``now`` (a reading of the runtime's clock; the system clock
when omitted), so tests move a clock past a code's five minutes instead of sleeping.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Protocol
from uuid import uuid4

from fastapi import Depends, Request
from psycopg import AsyncConnection

from etcwallet.core.clock import system_clock
from etcwallet.core.crypto import keyed_hash
from etcwallet.identity.errors import IdentityError
from etcwallet.identity.ratelimit import Limit, hit

LIFETIME = timedelta(minutes=5)
MAX_ATTEMPTS = 5
COOLDOWN = timedelta(seconds=60)
DAILY_PER_PHONE = 10
DAILY_PER_IP = 50


class Purpose(StrEnum):
    """What a code may be used for: a code for one purpose never works for another."""

    REGISTER = "register"
    LOGIN = "login"
    RESET_PASSWORD = "reset_password"
    STEP_UP = "step_up"
    RESET_PAYMENT_PASSWORD = "reset_payment_password"
    CHANGE_PHONE = "change_phone"
    PROFILE_CHANGE = "profile_change"
    BANK_CARD = "bank_card"
    UNFREEZE = "unfreeze"
    BANK_CARD_CHANGE = "bank_card_change"


PURPOSE_TEXT: dict[Purpose, str] = {
    Purpose.REGISTER: "注册",
    Purpose.LOGIN: "登录",
    Purpose.RESET_PASSWORD: "重置登录密码",
    Purpose.STEP_UP: "安全验证",
    Purpose.RESET_PAYMENT_PASSWORD: "重置支付密码",
    Purpose.CHANGE_PHONE: "更换手机号",
    Purpose.PROFILE_CHANGE: "修改用户信息",
    Purpose.BANK_CARD: "绑定银行卡",
    Purpose.UNFREEZE: "账户解冻",
    Purpose.BANK_CARD_CHANGE: "变更ETC绑定银行卡",
}


class SmsGateway(Protocol):
    """Sends one text message; the real provider lives outside the bank."""

    async def send(self, conn: AsyncConnection[Any], phone: str, text: str) -> None: ...


class OutboxGateway:
    """The development and demo gateway: keeps each message in ``sms_outbox`` instead of sending it."""

    async def send(self, conn: AsyncConnection[Any], phone: str, text: str) -> None:
        await conn.execute("INSERT INTO sms_outbox (phone, body) VALUES (%s, %s)", (phone, text))


@dataclass(frozen=True)
class SentCode:
    phone: str
    purpose: Purpose
    expires_at: datetime
    resend_after: datetime


def _code_hash(lookup_key: bytes, phone: str, purpose: Purpose, code: str) -> bytes:
    # Keyed: six digits are a million guesses, so a plain hash of a leaked table would give them away.
    return keyed_hash(f"{phone}:{purpose.value}:{code}", lookup_key)


def cooldown_error(seconds: int) -> IdentityError:
    return IdentityError("sms_cooldown", retry_after=seconds)


async def send_code(
    conn: AsyncConnection[Any],
    *,
    gateway: SmsGateway,
    lookup_key: bytes,
    phone: str,
    purpose: Purpose,
    ip: str | None,
    now: datetime | None = None,
) -> SentCode:
    """Create and send a fresh code (the previous unused one for this purpose stops working).

    Run it in a transaction of its own: the limits count even when the caller's work fails.
    """
    now = now or system_clock()
    cur = await conn.execute(
        "SELECT created_at FROM sms_codes WHERE phone = %s AND purpose = %s ORDER BY created_at DESC LIMIT 1",
        (phone, purpose.value),
    )
    last = await cur.fetchone()
    if last is not None and now - last[0] < COOLDOWN:
        raise cooldown_error(max(1, int((last[0] + COOLDOWN - now).total_seconds()) + 1))
    await hit(conn, key=f"sms:phone:{phone}", limit=Limit(DAILY_PER_PHONE, timedelta(days=1)), now=now)
    if ip:
        await hit(conn, key=f"sms:ip:{ip}", limit=Limit(DAILY_PER_IP, timedelta(days=1)), now=now)
    code = f"{secrets.randbelow(1_000_000):06d}"
    await conn.execute(
        "UPDATE sms_codes SET consumed_at = %s WHERE phone = %s AND purpose = %s AND consumed_at IS NULL",
        (now, phone, purpose.value),
    )
    await conn.execute(
        "INSERT INTO sms_codes (id, phone, purpose, code_hash, created_at, expires_at, ip) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (
            uuid4(),
            phone,
            purpose.value,
            _code_hash(lookup_key, phone, purpose, code),
            now,
            now + LIFETIME,
            ip,
        ),
    )
    text = f"【ETC服务钱包】您的{PURPOSE_TEXT[purpose]}验证码为 {code}，5分钟内有效。请勿告诉他人。"
    await gateway.send(conn, phone, text)
    return SentCode(phone, purpose, now + LIFETIME, now + COOLDOWN)


async def check_code(
    conn: AsyncConnection[Any],
    *,
    lookup_key: bytes,
    phone: str,
    purpose: Purpose,
    code: str,
    now: datetime | None = None,
) -> IdentityError | None:
    """Spend ``code`` if it is the live code for phone and purpose; otherwise count a try and say why.

    Returns None on success. Run it in a transaction that commits even when the answer is a refusal,
    so that tries are counted.
    """
    now = now or system_clock()
    cur = await conn.execute(
        "SELECT id, code_hash, attempts, expires_at FROM sms_codes WHERE phone = %s AND purpose = %s "
        "AND consumed_at IS NULL ORDER BY created_at DESC LIMIT 1 FOR UPDATE",
        (phone, purpose.value),
    )
    row = await cur.fetchone()
    if row is None or row[3] <= now or row[2] >= MAX_ATTEMPTS:
        return IdentityError("sms_code_expired")
    candidate = code.strip()
    well_formed = len(candidate) == 6 and candidate.isdigit()
    if well_formed and hmac.compare_digest(bytes(row[1]), _code_hash(lookup_key, phone, purpose, candidate)):
        await conn.execute("UPDATE sms_codes SET consumed_at = %s WHERE id = %s", (now, row[0]))
        return None
    await conn.execute("UPDATE sms_codes SET attempts = attempts + 1 WHERE id = %s", (row[0],))
    return IdentityError("sms_code_invalid")


async def outbox(
    conn: AsyncConnection[Any], *, phone: str | None, limit: int = 20
) -> list[tuple[int, str, str, datetime]]:
    """What the development sink holds, newest first: (id, phone, text, time)."""
    if phone:
        cur = await conn.execute(
            "SELECT id, phone, body, created_at FROM sms_outbox WHERE phone = %s ORDER BY id DESC LIMIT %s",
            (phone, limit),
        )
    else:
        cur = await conn.execute(
            "SELECT id, phone, body, created_at FROM sms_outbox ORDER BY id DESC LIMIT %s", (limit,)
        )
    return [(r[0], r[1], r[2], r[3]) for r in await cur.fetchall()]


def get_sms(request: Request) -> SmsGateway:
    """The application's SMS gateway (a route dependency; core/deps.py says why it lives here)."""
    sms: SmsGateway = request.app.state.runtime.sms
    return sms


SmsDep = Annotated[SmsGateway, Depends(get_sms)]
