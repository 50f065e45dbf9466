"""Identity's changes at the counter (outlet.request_code_at_outlet, check_code_at_outlet, change_at_outlet):
a code sent to the customer's own phone, for its purpose only, proves the change; nothing else changes."""

from __future__ import annotations

import re
import secrets

import pytest
from psycopg_pool import AsyncConnectionPool

from etcwallet.core.crypto import Keys
from etcwallet.core.deps import Client
from etcwallet.core.errors import DomainError
from etcwallet.identity.authz import Role
from etcwallet.identity.customers import outlet
from etcwallet.identity.customers.profile import cardholder_of
from etcwallet.identity.customers.types import OutletOperator
from etcwallet.identity.sms import OutboxGateway, Purpose
from etcwallet.identity.staff import service as staff
from etcwallet.platform.unit import UnitOfWork
from tests.identity.customer_helpers import new_phone, new_resident_id, skip_cooldown

CLIENT = Client("192.0.2.7", "pytest")
_CODE = re.compile(r"验证码为 ([0-9]{6})")


async def _code(pool: AsyncConnectionPool, phone: str) -> str:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT body FROM sms_outbox WHERE phone = %s ORDER BY id DESC LIMIT 1", (phone,)
        )
        row = await cur.fetchone()
    assert row is not None
    match = _CODE.search(row[0])
    assert match is not None
    return match.group(1)


async def test_a_name_change_at_the_counter_needs_the_profile_change_code_of_the_customers_phone(
    pool: AsyncConnectionPool, keys: Keys
) -> None:
    uow = UnitOfWork(pool)
    async with pool.connection() as conn:
        place = await staff.create_outlet(
            conn, code=f"C-{secrets.token_hex(5)}", name="网点", kind="self_operated", bank=None
        )
        member = await staff.create_staff(
            conn,
            username=f"chg.{secrets.token_hex(5)}",
            display_name="柜员",
            password="Staff-pass-2026!",
            role=Role.OUTLET_OPERATOR,
            outlet_id=place.id,
        )
    operator = OutletOperator(member.id, place.id)
    phone = new_phone()
    made = await outlet.create_at_outlet(
        uow=uow,
        keys=keys,
        operator=operator,
        phone=phone,
        name="赵六",
        id_type="resident_id",
        id_number=new_resident_id(),
        client=CLIENT,
    )
    customer_id = made.customer.id
    gateway = OutboxGateway()
    # a code for another purpose does not prove this change
    await outlet.request_code_at_outlet(
        uow=uow,
        gateway=gateway,
        lookup_key=keys.lookup_key,
        operator=operator,
        customer_id=customer_id,
        purpose=Purpose.BANK_CARD_CHANGE,
        client=CLIENT,
    )
    other_purpose = await _code(pool, phone)
    with pytest.raises(DomainError) as caught:
        await outlet.change_at_outlet(
            uow=uow,
            keys=keys,
            operator=operator,
            customer_id=customer_id,
            sms_code=other_purpose,
            name="赵七",
            client=CLIENT,
        )
    assert caught.value.code == "sms_code_expired"
    with pytest.raises(DomainError):
        await outlet.request_code_at_outlet(
            uow=uow,
            gateway=gateway,
            lookup_key=keys.lookup_key,
            operator=operator,
            customer_id=customer_id,
            purpose=Purpose.LOGIN,
            client=CLIENT,
        )
    await skip_cooldown(pool, phone)
    await outlet.request_code_at_outlet(
        uow=uow,
        gateway=gateway,
        lookup_key=keys.lookup_key,
        operator=operator,
        customer_id=customer_id,
        purpose=Purpose.PROFILE_CHANGE,
        client=CLIENT,
    )
    changed = await outlet.change_at_outlet(
        uow=uow,
        keys=keys,
        operator=operator,
        customer_id=customer_id,
        sms_code=await _code(pool, phone),
        name="赵七",
        client=CLIENT,
    )
    assert changed.profile is not None and made.profile is not None
    async with pool.connection() as conn:
        holder = await cardholder_of(conn, cipher=keys.cipher, customer_id=customer_id)
    assert holder is not None and holder.name == "赵七"
    assert changed.profile.verified_at == made.profile.verified_at  # the ID document did not change
    assert changed.customer.phone == phone
    # the code of the bank card change is checked for its purpose only, and spent
    await skip_cooldown(pool, phone)
    await outlet.request_code_at_outlet(
        uow=uow,
        gateway=gateway,
        lookup_key=keys.lookup_key,
        operator=operator,
        customer_id=customer_id,
        purpose=Purpose.BANK_CARD_CHANGE,
        client=CLIENT,
    )
    code = await _code(pool, phone)
    await outlet.check_code_at_outlet(
        uow=uow,
        lookup_key=keys.lookup_key,
        operator=operator,
        customer_id=customer_id,
        purpose=Purpose.BANK_CARD_CHANGE,
        sms_code=code,
        client=CLIENT,
    )
    with pytest.raises(DomainError):
        await outlet.check_code_at_outlet(
            uow=uow,
            lookup_key=keys.lookup_key,
            operator=operator,
            customer_id=customer_id,
            purpose=Purpose.BANK_CARD_CHANGE,
            sms_code=code,
            client=CLIENT,
        )
