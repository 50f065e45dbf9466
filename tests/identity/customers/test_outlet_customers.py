"""Customers served at an outlet's counter: found by phone or ID (masked, audited with the outlet), opened
from the ID shown (unclaimed, verified by that check), claimed by SMS; and the two ways a customer is
verified (an outlet's ID check, a bank card), shown to the customer and staff, cleared by a profile change.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from etcwallet.app import Runtime
from etcwallet.core.masking import mask_id_number, mask_phone
from etcwallet.identity.authz import Role
from etcwallet.identity.customers.types import VerificationMethod
from etcwallet.identity.customers.verification import (
    is_verified,
    mark_verified_by_bank_card,
    verification_of,
)
from etcwallet.identity.errors import IdentityError
from etcwallet.platform.audit import Actor
from tests.conftest import StaffFactory
from tests.idempotency_keys import keyed
from tests.identity.customer_helpers import (
    BASE,
    PASSWORD,
    assert_problem,
    login,
    new_phone,
    new_resident_id,
    register,
    scalar,
    send_code,
    send_own_code,
    skip_cooldown,
    step_up,
    with_wrong_check,
)
from tests.identity.staff_helpers import audit_rows, me

OUTLET = "/api/v1/outlet/customers"
NAME = "王小明"


class Operator:
    """A signed-in outlet operator: headers, staff id, outlet id."""

    def __init__(self, headers: dict[str, str], who: dict[str, Any]) -> None:
        self.headers = headers
        self.id = who["id"]
        self.outlet_id = who["outlet_id"]


@pytest.fixture
async def operator(make_staff: StaffFactory, client: httpx.AsyncClient) -> Operator:
    headers = await make_staff(Role.OUTLET_OPERATOR)
    return Operator(headers, await me(client, headers))


async def open_at_outlet(
    client: httpx.AsyncClient, operator: Operator, *, phone: str, id_number: str, key: str | None = None
) -> httpx.Response:
    body = {"phone": phone, "name": NAME, "id_type": "resident_id", "id_number": id_number}
    return await client.post(OUTLET, json=body, headers=keyed(operator.headers, key))


async def counts(pool: AsyncConnectionPool, operator: Operator) -> tuple[int, int, int]:
    """Customers, profiles, and audit entries by the operator: what a refusal must leave as it was."""
    return (
        int(await scalar(pool, "SELECT count(*) FROM customers")),
        int(await scalar(pool, "SELECT count(*) FROM customer_profiles")),
        int(await scalar(pool, "SELECT count(*) FROM audit_log WHERE actor_id = %s", operator.id)),
    )


# --- opened at the outlet, claimed by SMS ----------------------------------------------------------------


async def test_operator_opens_an_account_the_customer_claims_by_registering(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, operator: Operator
) -> None:
    phone, number, key = new_phone(), new_resident_id(), "open-at-counter-1"
    r = await open_at_outlet(client, operator, phone=phone, id_number=number, key=key)
    assert r.status_code == 201, r.text
    opened = r.json()
    assert opened["claimed"] is False and opened["status"] == "active"
    assert opened["phone_masked"] == mask_phone(phone) and phone not in r.text
    profile = opened["profile"]
    assert profile["name_masked"] == "王**" and profile["id_number_masked"] == mask_id_number(number)
    assert profile["verified_by"] == "outlet_id_check" and profile["verified_at"] is not None
    assert number not in r.text and NAME not in r.text
    customer_id = opened["id"]
    # A retry with the same key answers the first answer; nothing is opened twice.
    again = await open_at_outlet(client, operator, phone=phone, id_number=number, key=key)
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == customer_id
    assert await scalar(pool, "SELECT count(*) FROM customers WHERE phone = %s", phone) == 1
    row = await scalar(
        pool,
        "SELECT row(password_hash IS NULL, created_at_outlet::text, created_by_staff::text)::text "
        "FROM customers WHERE id = %s",
        customer_id,
    )
    assert row == f"(t,{operator.outlet_id},{operator.id})"
    # The audit names the operator and the outlet, with the phone and number masked.
    [entry] = await audit_rows(pool, action="customer.outlet.create", target_id=customer_id)
    assert (entry["actor_type"], entry["actor_id"]) == ("staff", operator.id)
    assert entry["detail"]["outlet_id"] == operator.outlet_id
    assert entry["detail"]["verified_by"] == "outlet_id_check"
    assert phone not in str(entry["detail"]) and number not in str(entry["detail"])

    # Unclaimed: no password signs in.
    r = await login(client, phone, PASSWORD)
    assert_problem(r, 401, "invalid_credentials")
    # The customer registers the phone with an SMS code: the account is claimed and signed in.
    claimed = await register(client, phone)
    assert claimed.id == customer_id
    [entry] = await audit_rows(pool, action="customer.register", target_id=customer_id)
    assert entry["detail"]["claimed_outlet_account"] is True and entry["outcome"] == "success"
    r = await client.get(f"{BASE}/me", headers=claimed.headers)
    assert r.status_code == 200, r.text
    mine = r.json()
    assert mine["profile_set"] is True and mine["verified_by"] == "outlet_id_check"
    assert mine["verified_at"] == profile["verified_at"]
    r = await client.get(f"{BASE}/me/profile", headers=claimed.headers)
    assert r.status_code == 200 and r.json() == profile, r.text
    r = await login(client, phone, PASSWORD)
    assert r.status_code == 200 and r.json()["status"] == "signed_in", r.text


async def test_a_claimed_phone_stays_phone_registered(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, operator: Operator
) -> None:
    """A register code sent while the account was unclaimed does not claim it twice: once its owner has
    set a password (here with the forgot-password flow, which also claims it), registering is refused."""
    phone = new_phone()
    r = await open_at_outlet(client, operator, phone=phone, id_number=new_resident_id())
    assert r.status_code == 201, r.text
    register_code = await send_code(client, phone, "register")  # sent: the phone is unclaimed
    await skip_cooldown(pool, phone)
    reset_code = await send_code(client, phone, "reset_password")
    r = await client.post(
        f"{BASE}/password/forgot",
        json={"phone": phone, "sms_code": reset_code, "new_password": PASSWORD},
    )
    assert r.status_code == 200, r.text
    r = await login(client, phone, PASSWORD)
    assert r.status_code == 200 and r.json()["status"] == "signed_in", r.text
    stored = await scalar(pool, "SELECT password_hash FROM customers WHERE phone = %s", phone)
    r = await client.post(
        f"{BASE}/register",
        json={"phone": phone, "password": "Another-pass-2026", "sms_code": register_code},
    )
    assert_problem(r, 409, "phone_registered", "phone")
    assert await scalar(pool, "SELECT password_hash FROM customers WHERE phone = %s", phone) == stored
    assert await scalar(pool, "SELECT count(*) FROM customers WHERE phone = %s", phone) == 1


async def test_an_unclaimed_customer_signs_in_by_sms(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, operator: Operator
) -> None:
    """The SMS code proves the phone, as registering does: an unclaimed customer may sign in with it
    (and set a password later by registering or with the forgot-password flow)."""
    phone = new_phone()
    r = await open_at_outlet(client, operator, phone=phone, id_number=new_resident_id())
    assert r.status_code == 201, r.text
    opened = r.json()["id"]
    code = await send_code(client, phone, "login")
    r = await client.post(f"{BASE}/login/sms", json={"phone": phone, "sms_code": code})
    assert r.status_code == 200 and r.json()["status"] == "signed_in", r.text
    headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
    mine = (await client.get(f"{BASE}/me", headers=headers)).json()
    assert mine["id"] == opened and mine["verified_by"] == "outlet_id_check"
    # Still unclaimed: there is no password to change (409, pointing to forgot password), and the attempt
    # is no failed guess: it does not count toward the lockout.
    for _ in range(2):
        r = await client.post(
            f"{BASE}/me/password",
            json={"old_password": PASSWORD, "new_password": "Another-pass-2026"},
            headers=keyed(headers),
        )
        assert_problem(r, 409, "password_not_set", "old_password")
    assert await scalar(pool, "SELECT password_hash IS NULL FROM customers WHERE phone = %s", phone) is True
    assert await scalar(pool, "SELECT failed_logins FROM customers WHERE phone = %s", phone) == 0


# --- bad input: nothing written --------------------------------------------------------------------------


async def test_an_existing_customer_or_bad_data_is_refused_and_nothing_is_written(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, operator: Operator
) -> None:
    registered = await register(client)
    number = new_resident_id()
    assert (await open_at_outlet(client, operator, phone=new_phone(), id_number=number)).status_code == 201
    before = await counts(pool, operator)
    r = await open_at_outlet(client, operator, phone=registered.phone, id_number=new_resident_id())
    assert_problem(r, 409, "customer_phone_exists", "phone")
    r = await open_at_outlet(client, operator, phone=new_phone(), id_number=number)
    assert_problem(r, 409, "customer_id_number_exists", "id_number")
    r = await open_at_outlet(client, operator, phone="12345", id_number=new_resident_id())
    assert_problem(r, 422, "mobile_format", "phone")
    r = await open_at_outlet(
        client, operator, phone=new_phone(), id_number=with_wrong_check(new_resident_id())
    )
    assert r.status_code == 422 and r.json()["field"] == "id_number", r.text
    body = {"phone": new_phone(), "name": "王2", "id_type": "resident_id", "id_number": new_resident_id()}
    r = await client.post(OUTLET, json=body, headers=keyed(operator.headers))
    assert r.status_code == 422 and r.json()["field"] == "name", r.text
    assert await counts(pool, operator) == before


# --- finding a customer ----------------------------------------------------------------------------------


async def test_find_by_phone_and_by_id_number_is_masked_and_audited_with_the_outlet(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, operator: Operator
) -> None:
    phone, number = new_phone(), new_resident_id()
    customer_id = (await open_at_outlet(client, operator, phone=phone, id_number=number)).json()["id"]
    r = await client.post(f"{OUTLET}/search/phone", json={"phone": phone}, headers=operator.headers)
    assert r.status_code == 200, r.text
    assert r.json()["id"] == customer_id and r.json()["phone_masked"] == mask_phone(phone)
    r = await client.post(
        f"{OUTLET}/search",
        json={"id_type": "resident_id", "id_number": number.lower()},
        headers=operator.headers,
    )
    assert r.status_code == 200 and r.json()["id"] == customer_id, r.text
    for text in (r.text,):
        assert phone not in text and number not in text and NAME not in text
    found = await audit_rows(pool, action="customer.outlet.find", target_id=customer_id)
    assert [e["detail"]["by"] for e in found] == ["phone", "id_number"]
    for entry in found:
        assert (entry["actor_type"], entry["actor_id"]) == ("staff", operator.id)
        assert entry["detail"]["outlet_id"] == operator.outlet_id and entry["detail"]["found"] is True
        assert phone not in str(entry["detail"]) and number not in str(entry["detail"])
    # Nobody with that phone: 404, and the look-up is audited all the same.
    nobody = new_phone()
    r = await client.post(f"{OUTLET}/search/phone", json={"phone": nobody}, headers=operator.headers)
    assert_problem(r, 404, "customer_not_found")
    [miss] = await audit_rows(pool, action="customer.outlet.find", detail_phone=mask_phone(nobody))
    assert miss["detail"]["found"] is False and miss["detail"]["outlet_id"] == operator.outlet_id
    # A malformed phone is refused before anything is looked up or written.
    before = await counts(pool, operator)
    r = await client.post(f"{OUTLET}/search/phone", json={"phone": "1234"}, headers=operator.headers)
    assert_problem(r, 422, "mobile_format", "phone")
    assert await counts(pool, operator) == before


# --- verification ----------------------------------------------------------------------------------------


async def test_an_operator_verifies_an_existing_profile_and_a_change_clears_it(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, operator: Operator, make_staff: StaffFactory
) -> None:
    customer = await register(client)
    await step_up(client, customer)
    number = new_resident_id()
    r = await client.put(
        f"{BASE}/me/profile",
        json={"name": NAME, "id_type": "resident_id", "id_number": number},
        headers=customer.headers,
    )
    assert r.status_code == 200 and r.json()["verified_at"] is None and r.json()["verified_by"] is None
    mine = (await client.get(f"{BASE}/me", headers=customer.headers)).json()
    assert mine["verified_at"] is None and mine["verified_by"] is None

    # The document shown is not the one on file: 422, nothing written but the refusal's own audit entry
    # (it tells the operator whether an ID number is this customer's: a read of personal data).
    customers_before, profiles_before, audit_before = await counts(pool, operator)
    r = await client.post(
        f"{OUTLET}/{customer.id}/verify",
        json={"id_type": "resident_id", "id_number": new_resident_id()},
        headers=operator.headers,
    )
    assert_problem(r, 422, "id_number_mismatch", "id_number")
    assert await counts(pool, operator) == (customers_before, profiles_before, audit_before + 1)
    refusals = await audit_rows(pool, target_id=str(customer.id), action="customer.verify", outcome="refused")
    assert [(x["detail"]["reason"], x["detail"]["outlet_id"]) for x in refusals] == [
        ("id_number_mismatch", operator.outlet_id)
    ]
    assert (
        await scalar(pool, "SELECT verified_at FROM customer_profiles WHERE customer_id = %s", customer.id)
        is None
    )

    r = await client.post(
        f"{OUTLET}/{customer.id}/verify",
        json={"id_type": "resident_id", "id_number": number},
        headers=operator.headers,
    )
    assert r.status_code == 200 and r.json()["verified_by"] == "outlet_id_check", r.text
    [entry] = await audit_rows(pool, action="customer.verify", target_id=customer.id, outcome="success")
    assert entry["actor_id"] == operator.id and entry["detail"]["outlet_id"] == operator.outlet_id
    mine = (await client.get(f"{BASE}/me", headers=customer.headers)).json()
    assert mine["verified_by"] == "outlet_id_check" and mine["verified_at"] is not None
    support = await make_staff(Role.SUPPORT_AGENT)
    seen = (await client.get(f"{BASE}/{customer.id}", headers=support)).json()
    assert seen["profile"]["verified_by"] == "outlet_id_check" and seen["claimed"] is True

    # Saving the same data keeps the verification; changing the real-name data clears it.
    r = await client.put(
        f"{BASE}/me/profile",
        json={"name": NAME, "id_type": "resident_id", "id_number": number},
        headers=customer.headers,
    )
    assert r.status_code == 200 and r.json()["verified_by"] == "outlet_id_check", r.text
    code = await send_own_code(client, customer.headers, customer.phone, "profile_change")
    r = await client.put(
        f"{BASE}/me/profile",
        json={"name": "王大明", "id_type": "resident_id", "id_number": number, "sms_code": code},
        headers=customer.headers,
    )
    assert r.status_code == 200 and r.json()["verified_at"] is None and r.json()["verified_by"] is None
    mine = (await client.get(f"{BASE}/me", headers=customer.headers)).json()
    assert mine["verified_at"] is None and mine["verified_by"] is None
    async with pool.connection() as conn:
        assert await verification_of(conn, customer_id=UUID(customer.id)) is None


async def test_verifying_a_customer_with_no_profile_or_no_account_is_refused(
    client: httpx.AsyncClient, operator: Operator
) -> None:
    customer = await register(client)
    body = {"id_type": "resident_id", "id_number": new_resident_id()}
    r = await client.post(f"{OUTLET}/{customer.id}/verify", json=body, headers=operator.headers)
    assert_problem(r, 404, "profile_missing")
    r = await client.post(f"{OUTLET}/{UUID(int=7)}/verify", json=body, headers=operator.headers)
    assert_problem(r, 404, "customer_not_found")


async def test_a_bank_card_verifies_a_customer(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, runtime: Runtime, make_staff: StaffFactory
) -> None:
    customer = await register(client)
    customer_id = UUID(customer.id)
    actor = Actor.system("payments.bank_card")

    async def audited() -> int:
        return int(await scalar(pool, "SELECT count(*) FROM audit_log WHERE target_id = %s", customer.id))

    # No real-name profile: there is nothing a bank could have matched; nothing written.
    before = await audited()
    with pytest.raises(IdentityError) as refused:
        await mark_verified_by_bank_card(runtime.uow, customer_id=customer_id, card_last4="1234", actor=actor)
    assert refused.value.code == "profile_required"
    assert await audited() == before
    await step_up(client, customer)
    r = await client.put(
        f"{BASE}/me/profile",
        json={"name": NAME, "id_type": "resident_id", "id_number": new_resident_id()},
        headers=customer.headers,
    )
    assert r.status_code == 200, r.text
    before = await audited()
    with pytest.raises(IdentityError) as refused:
        await mark_verified_by_bank_card(runtime.uow, customer_id=customer_id, card_last4="12a4", actor=actor)
    assert refused.value.code == "card_last4_format" and refused.value.field == "card_last4"
    assert await audited() == before
    async with pool.connection() as conn:
        assert not await is_verified(conn, customer_id=customer_id)

    verification = await mark_verified_by_bank_card(
        runtime.uow, customer_id=customer_id, card_last4="6789", actor=actor
    )
    assert verification.method is VerificationMethod.BANK_CARD
    async with pool.connection() as conn:
        assert await verification_of(conn, customer_id=customer_id) == verification
        assert await is_verified(conn, customer_id=customer_id)
    [entry] = await audit_rows(pool, action="customer.verify", target_id=customer.id)
    assert (entry["actor_type"], entry["actor_id"]) == ("system", "payments.bank_card")
    assert entry["detail"] == {"method": "bank_card", "card_last4": "6789"}
    assert await audited() == before + 1
    mine = (await client.get(f"{BASE}/me", headers=customer.headers)).json()
    assert mine["verified_by"] == "bank_card"
    support = await make_staff(Role.SUPPORT_AGENT)
    seen = (await client.get(f"{BASE}/{customer.id}", headers=support)).json()
    assert seen["profile"]["verified_by"] == "bank_card"
