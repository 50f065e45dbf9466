"""Account services at the outlet through the service: the account query (hit, miss, masked, audited), the
bank card change (happy path and each refusal, nothing changed on a refusal) and the information change."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool

from etcwallet.core.config import Settings
from etcwallet.core.crypto import Keys
from etcwallet.identity.customers import service as customers
from etcwallet.identity.sms import OutboxGateway
from etcwallet.issuance import services
from etcwallet.issuance.codes import CardType
from etcwallet.issuance.types import ChipKind
from etcwallet.ledger.service import Ledger
from etcwallet.payments import service as payments
from tests.identity.customer_helpers import new_phone, skip_cooldown
from tests.issuance.builders import CLIENT, Counter, counter
from tests.issuance.test_cards import refused, rows
from tests.payments.builders import card_number as bank_card_number

GATEWAY = OutboxGateway()
_CODE = re.compile(r"验证码为 ([0-9]{6})")


@pytest.fixture
async def desk(
    pool: AsyncConnectionPool, keys: Keys, ledger: Ledger, settings: Settings, tmp_path: Path
) -> Counter:
    return await counter(pool, keys, ledger, settings, tmp_path)


@pytest.fixture
async def bank_desk(
    pool: AsyncConnectionPool, keys: Keys, ledger: Ledger, settings: Settings, tmp_path: Path
) -> Counter:
    return await counter(pool, keys, ledger, settings, tmp_path, bank=True)


async def phone_of(desk: Counter) -> str:
    async with desk.pool.connection() as conn:
        return await customers.get_phone_or_raise(conn, customer_id=desk.customer_id)


async def last_code(pool: AsyncConnectionPool, phone: str) -> tuple[str, str]:
    (text,) = [
        t
        for (t,) in await rows(
            pool, "SELECT body FROM sms_outbox WHERE phone = %s ORDER BY id DESC LIMIT 1", phone
        )
    ]
    match = _CODE.search(text)
    assert match is not None
    return match.group(1), text


async def actions(pool: AsyncConnectionPool, prefix: str, actor_id: str) -> list[tuple[str, str]]:
    found = await rows(
        pool,
        "SELECT action, outcome FROM audit_log WHERE action LIKE %s AND actor_id = %s ORDER BY seq",
        prefix + "%",
        actor_id,
    )
    return [(a, o) for a, o in found]


# --- 用户账号查询 --------------------------------------------------------------------------------------------


async def test_the_account_query_answers_the_customer_masked_with_cards_and_balances_and_is_audited(
    desk: Counter, pool: AsyncConnectionPool, ledger: Ledger, tmp_path: Path, settings: Settings, keys: Keys
) -> None:
    application, number = await desk.issue_card()
    phone = await phone_of(desk)
    # an operator of another outlet may query: customers belong to no outlet
    other = await counter(pool, keys, ledger, settings, tmp_path / "other")
    view = await services.query_account(
        other.uow,
        keys=keys,
        ledger=ledger,
        operator=other.operator,
        phone=phone,
        actor=other.actor,
        client=CLIENT,
    )
    assert view.customer.customer.id == desk.customer_id
    assert view.customer.profile is not None and view.customer.profile.name_masked != desk.customer_name
    assert desk.customer_id_number not in view.customer.profile.id_number_masked
    assert [a.id for a in view.applications] == [application.id]
    assert [(c.kind, c.number, c.status.value) for c in view.chips] == [(ChipKind.CARD, number, "issued")]
    purse = [a for a in view.accounts if a.metadata.get("instance") == number]
    assert len(purse) == 1 and purse[0].balance == 0

    by_id = await services.query_account(
        other.uow,
        keys=keys,
        ledger=ledger,
        operator=other.operator,
        id_type="resident_id",
        id_number=desk.customer_id_number,
        actor=other.actor,
        client=CLIENT,
    )
    assert by_id.customer.customer.id == desk.customer_id
    assert await actions(pool, "issuance.account.query", other.actor.id or "") == [
        ("issuance.account.query", "success"),
        ("issuance.account.query", "success"),
    ]


async def test_a_query_that_finds_nobody_is_a_404_and_audited(
    desk: Counter, pool: AsyncConnectionPool
) -> None:
    await refused(
        services.query_account(
            desk.uow,
            keys=desk.keys,
            ledger=desk.ledger,
            operator=desk.operator,
            phone=new_phone(),
            actor=desk.actor,
            client=CLIENT,
        ),
        "customer_not_found",
    )
    assert await actions(pool, "issuance.account.query", desk.actor.id or "") == [
        ("issuance.account.query", "refused")
    ]
    finds = await actions(pool, "customer.outlet.find", desk.actor.id or "")
    assert len(finds) == 1


# --- 变更银行卡 ----------------------------------------------------------------------------------------------


async def start(bank_desk: Counter, new: str, confirm: str | None = None) -> services.BankCardChangeStarted:
    return await services.start_bank_card_change(
        bank_desk.uow,
        context=bank_desk.context,
        keys=bank_desk.keys,
        gateway=GATEWAY,
        operator=bank_desk.operator,
        bank_card_number=new,
        confirm_number=confirm or new,
        actor=bank_desk.actor,
        client=CLIENT,
    )


async def confirm(bank_desk: Counter, card: str, new: str, token: str, code: str) -> services.BankCardChanged:
    return await services.confirm_bank_card_change(
        bank_desk.uow,
        keys=bank_desk.keys,
        operator=bank_desk.operator,
        card_number=card,
        bank_card_number=new,
        change_token=token,
        sms_code=code,
        actor=bank_desk.actor,
        client=CLIENT,
    )


async def bound_now(bank_desk: Counter, application_id: Any) -> tuple[Any, list[str]]:
    (bank_card_id,) = [
        r[0]
        for r in await rows(
            bank_desk.pool, "SELECT bank_card_id FROM issuance_applications WHERE id = %s", application_id
        )
    ]
    async with bank_desk.pool.connection() as conn:
        live = await payments.list_cards(conn, customer_id=bank_desk.customer_id)
    return bank_card_id, [c.masked for c in live]


async def test_a_bank_operator_changes_the_bank_card_with_the_customers_code(bank_desk: Counter) -> None:
    application, number = await bank_desk.issue_card(card_type=CardType.ACCOUNT)
    old_card_id, old_live = await bound_now(bank_desk, application.id)
    new = bank_card_number("622202")
    started = await start(bank_desk, new)
    code, text = await last_code(bank_desk.pool, await phone_of(bank_desk))
    assert "变更ETC绑定银行卡" in text and new not in text
    assert started.owner.chip.number == number and new not in started.change_token

    changed = await confirm(bank_desk, number, new, started.change_token, code)

    new_card_id, live = await bound_now(bank_desk, application.id)
    assert new_card_id == changed.new_bank_card.id != old_card_id
    assert live == [changed.new_bank_card.masked] and changed.old_bank_card_masked == old_live[0]
    assert changed.new_bank_card.is_default
    audit = await rows(
        bank_desk.pool,
        "SELECT detail->>'old', detail->>'new' FROM audit_log WHERE action = 'issuance.bank_card.change' AND actor_id = %s",
        bank_desk.actor.id,
    )
    assert audit == [(old_live[0], changed.new_bank_card.masked)]
    assert all(
        new not in str(row)
        for row in await rows(
            bank_desk.pool, "SELECT detail FROM audit_log WHERE actor_id = %s", bank_desk.actor.id
        )
    )


async def test_a_self_operated_outlet_cannot_change_a_bank_card(desk: Counter) -> None:
    await refused(start(desk, bank_card_number("622202")), "bank_outlet_only")


async def test_no_card_in_the_slot_or_a_card_not_issued_is_refused(bank_desk: Counter) -> None:
    await refused(start(bank_desk, bank_card_number("622202")), "no_card_in_reader")
    (blank,) = await bank_desk.stock(ChipKind.CARD)
    bank_desk.insert_card(blank)
    await refused(start(bank_desk, bank_card_number("622202")), "card_not_in_use")


async def test_refusals_of_the_bank_card_change_change_nothing(bank_desk: Counter) -> None:
    application, number = await bank_desk.issue_card(card_type=CardType.ACCOUNT)
    before = await bound_now(bank_desk, application.id)
    new = bank_card_number("622202")
    error = await refused(
        start(bank_desk, new, new[:-1] + str((int(new[-1]) + 1) % 10)), "card_number_mismatch"
    )
    assert error.field == "confirm_number"
    assert bank_desk.bank_card is not None
    await refused(start(bank_desk, bank_desk.bank_card), "bank_card_unchanged")
    started = await start(bank_desk, new)
    code, _ = await last_code(bank_desk.pool, await phone_of(bank_desk))
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    await refused(confirm(bank_desk, number, new, started.change_token, wrong), "sms_code_invalid")
    other = bank_card_number("622202")
    await refused(confirm(bank_desk, number, other, started.change_token, code), "bank_card_change_invalid")
    await refused(confirm(bank_desk, number, new, "1." + "0" * 64, code), "bank_card_change_invalid")
    assert await bound_now(bank_desk, application.id) == before
    # the right code still confirms: the refusals spent nothing but a try
    await confirm(bank_desk, number, new, started.change_token, code)
    assert await bound_now(bank_desk, application.id) != before


# --- 用户信息变更 --------------------------------------------------------------------------------------------


async def test_information_change_by_phone_and_id_with_the_customers_code(
    desk: Counter, pool: AsyncConnectionPool
) -> None:
    phone = await phone_of(desk)
    ident = {"phone": phone, "id_type": "resident_id", "id_number": desk.customer_id_number}
    form = await services.find_for_info_change(
        desk.uow, keys=desk.keys, operator=desk.operator, actor=desk.actor, client=CLIENT, **ident
    )
    assert [(f.field, f.required) for f in form.fields] == [("phone", True), ("name", True)]
    assert phone not in str(form.fields)
    await services.send_info_change_code(
        desk.uow,
        keys=desk.keys,
        gateway=GATEWAY,
        operator=desk.operator,
        actor=desk.actor,
        client=CLIENT,
        **ident,
    )
    code, _ = await last_code(pool, phone)
    moved = new_phone()
    changed = await services.change_info(
        desk.uow,
        keys=desk.keys,
        operator=desk.operator,
        actor=desk.actor,
        client=CLIENT,
        sms_code=code,
        new_phone=moved,
        new_name="李四",
        **ident,
    )
    assert changed.customer.customer.phone == moved
    async with pool.connection() as conn:
        assert await customers.find_by_phone(conn, phone=phone) is None
    ((detail,),) = await rows(
        pool,
        "SELECT detail FROM audit_log WHERE action = 'customer.outlet.change' AND target_id = %s",
        str(desk.customer_id),
    )
    assert detail["changes"]["phone"] == {
        "old": phone[:3] + "****" + phone[-4:],
        "new": moved[:3] + "****" + moved[-4:],
    }
    assert set(detail["changes"]) == {"phone", "name"} and "李四" not in str(detail)


async def test_information_change_refusals_change_nothing(
    desk: Counter, pool: AsyncConnectionPool, ledger: Ledger, settings: Settings, tmp_path: Path
) -> None:
    phone = await phone_of(desk)
    ident = {"phone": phone, "id_type": "resident_id", "id_number": desk.customer_id_number}
    other = await counter(pool, desk.keys, ledger, settings, tmp_path / "other")
    mismatched = ident | {"id_number": other.customer_id_number}
    await refused(
        services.find_for_info_change(
            desk.uow, keys=desk.keys, operator=desk.operator, actor=desk.actor, client=CLIENT, **mismatched
        ),
        "customer_not_matched",
    )
    await services.send_info_change_code(
        desk.uow,
        keys=desk.keys,
        gateway=GATEWAY,
        operator=desk.operator,
        actor=desk.actor,
        client=CLIENT,
        **ident,
    )
    code, _ = await last_code(pool, phone)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"

    async def change(sms_code: str, new_phone: str) -> Any:
        return await services.change_info(
            desk.uow,
            keys=desk.keys,
            operator=desk.operator,
            actor=desk.actor,
            client=CLIENT,
            sms_code=sms_code,
            new_phone=new_phone,
            new_name=None,
            **ident,
        )

    await refused(change(wrong, new_phone()), "sms_code_invalid")
    other_phone = await phone_of(other)
    await refused(change(code, other_phone), "customer_phone_exists")
    async with pool.connection() as conn:
        still = await customers.find_by_phone(conn, phone=phone)
    assert still is not None and still.id == desk.customer_id
    # the code was spent by the refused change: a new code is needed
    await skip_cooldown(pool, phone)
    await refused(change(code, new_phone()), "sms_code_expired")
    refusals = await actions(pool, "issuance.info_change", desk.actor.id or "")
    assert ("issuance.info_change.find", "refused") in refusals and (
        "issuance.info_change.change",
        "refused",
    ) in refusals
