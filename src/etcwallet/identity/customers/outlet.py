"""Customers served at an outlet's counter (seed 001: an operator handles ETC for a car owner).

An operator finds the customer by phone, or by ID type and number, or opens an account from the real-name
data the customer shows: phone, name and ID document, checked as a customer's own profile is. Such an
account has no password ("unclaimed") until its owner registers the phone with an SMS code
(:mod:`.claiming`). The operator's check of the ID document verifies the profile (``outlet_id_check``),
on opening the account or later for an existing customer (the number shown must be the one on file).

Every find (a read of personal data) and every change is audited with the operator as actor and the
outlet in ``detail["outlet_id"]`` (the key the audit search scopes outlets by). A refusal for bad input
(a malformed phone or ID, an existing customer, an ID that does not match) writes nothing, audit included.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Mapping
from datetime import date
from uuid import UUID, uuid4

from etcwallet.core.crypto import Keys
from etcwallet.core.deps import Client
from etcwallet.core.errors import DomainError, InvalidValue
from etcwallet.core.masking import mask_id_number, mask_name, mask_phone
from etcwallet.identity import sms
from etcwallet.identity.customers import service, store
from etcwallet.identity.customers.actions import event
from etcwallet.identity.customers.errors import customer_not_found
from etcwallet.identity.customers.profile import check_id_number, check_name, get_profile, id_number_hash
from etcwallet.identity.customers.types import (
    ID_NUMBER_CONTEXT,
    NAME_CONTEXT,
    Customer,
    CustomerAction,
    CustomerDetail,
    OutletOperator,
    Profile,
    VerificationMethod,
)
from etcwallet.identity.customers.verification import verify_in
from etcwallet.identity.errors import IdentityError
from etcwallet.identity.sms import Purpose, SentCode, SmsGateway
from etcwallet.identity.validators import validate_mobile
from etcwallet.platform.audit import AuditEvent
from etcwallet.platform.unit import Unit, UnitOfWork


def _phone(phone: str) -> str:
    try:
        return validate_mobile(phone)
    except InvalidValue as exc:
        raise exc.at("phone") from None


def _id_document(id_type: str, id_number: str) -> tuple[str, date | None]:
    """The normalized ID number and (for a resident ID) the birth date; 422 naming the field otherwise."""
    try:
        return check_id_number(id_type, id_number)
    except InvalidValue as exc:
        raise exc.at("id_type" if exc.code == "id_type" else "id_number") from None


Lookup = Callable[[Unit], Awaitable[Customer | None]]


def _staff(operator: OutletOperator) -> tuple[str, str]:
    return ("staff", str(operator.staff_id))


def _at(operator: OutletOperator, detail: Mapping[str, object]) -> dict[str, object]:
    return {"outlet_id": str(operator.outlet_id), **detail}


async def _find(
    uow: UnitOfWork,
    keys: Keys,
    operator: OutletOperator,
    client: Client,
    detail: dict[str, object],
    lookup: Lookup,
) -> CustomerDetail:
    """Run a look-up and audit it (found or not) in one unit; the customer's masked picture, else 404."""

    async def step(unit: Unit) -> CustomerDetail | None:
        customer = await lookup(unit)
        found = None
        if customer is not None:
            found = await service.detail(unit.conn, cipher=keys.cipher, customer_id=customer.id, now=unit.now)
        unit.audit(
            event(
                client,
                CustomerAction.OUTLET_FIND,
                customer_id=customer.id if customer else None,
                actor=_staff(operator),
                detail=_at(operator, detail | {"found": customer is not None}),
            )
        )
        return found

    found = await uow.run(step)
    if found is None:
        raise customer_not_found()
    return found


async def find_at_outlet_by_phone(
    *, uow: UnitOfWork, keys: Keys, operator: OutletOperator, phone: str, client: Client
) -> CustomerDetail:
    """The customer with this phone, masked as the staff view is; 404 ``customer_not_found`` when none.
    The look-up is audited either way (the operator, the outlet, the masked phone, whether found)."""
    number = _phone(phone)

    async def lookup(unit: Unit) -> Customer | None:
        return await service.find_by_phone(unit.conn, phone=number)

    detail: dict[str, object] = {"by": "phone", "phone": mask_phone(number)}
    return await _find(uow, keys, operator, client, detail, lookup)


async def find_at_outlet_by_id_number(
    *, uow: UnitOfWork, keys: Keys, operator: OutletOperator, id_type: str, id_number: str, client: Client
) -> CustomerDetail:
    """The customer whose real-name profile holds this ID, masked as the staff view is; 404 when none.
    The look-up is audited either way (the operator, the outlet, the masked number, whether found)."""
    number, _ = _id_document(id_type, id_number)

    async def lookup(unit: Unit) -> Customer | None:
        return await service.find_by_id_number(
            unit.conn, id_type=id_type, id_number=number, lookup_key=keys.lookup_key
        )

    detail: dict[str, object] = {"by": "id_number", "id_type": id_type, "id_number": mask_id_number(number)}
    return await _find(uow, keys, operator, client, detail, lookup)


async def create_at_outlet(
    *,
    uow: UnitOfWork,
    keys: Keys,
    operator: OutletOperator,
    phone: str,
    name: str,
    id_type: str,
    id_number: str,
    client: Client,
) -> CustomerDetail:
    """Open an unclaimed account (no password) from the real-name data shown at the counter: the profile
    is recorded as a customer's own is, and verified by this ID check (``outlet_id_check``).

    409 ``customer_phone_exists`` or ``customer_id_number_exists`` when a customer has the phone or the ID
    already (find them instead); 422 naming the field for a malformed phone, name or ID. Either way nothing
    is written. A concurrent opening with the same ID re-runs the unit, which then finds it taken."""
    number = _phone(phone)
    try:
        clean_name = check_name(name)
    except InvalidValue as exc:
        raise exc.at("name") from None
    id_value, birth = _id_document(id_type, id_number)
    digest = id_number_hash(id_value, keys.lookup_key)
    masked = mask_id_number(id_value)

    async def step(unit: Unit) -> CustomerDetail:
        conn = unit.conn
        if await store.get_by_phone(conn, number) is not None:
            raise IdentityError("customer_phone_exists")
        if await store.find_id_by_id_number(conn, id_type=id_type, id_number_hash=digest) is not None:
            raise IdentityError("customer_id_number_exists")
        customer = await store.insert_unclaimed_customer(
            conn,
            customer_id=uuid4(),
            phone=number,
            outlet_id=operator.outlet_id,
            staff_id=operator.staff_id,
            now=unit.now,
        )
        if customer is None:  # opened by a concurrent request since the look-up
            raise IdentityError("customer_phone_exists")
        write = store.ProfileWrite(
            keys.cipher.encrypt(clean_name, context=NAME_CONTEXT),
            id_type,
            keys.cipher.encrypt(id_value, context=ID_NUMBER_CONTEXT),
            digest,
            masked,
            birth,
        )
        await store.put_profile(conn, customer.id, write, now=unit.now)
        method = VerificationMethod.OUTLET_ID_CHECK
        await verify_in(unit, customer_id=customer.id, method=method)
        detail = {
            "phone": mask_phone(number),
            "id_type": id_type,
            "id_number": masked,
            "verified_by": method.value,
        }
        unit.audit(
            event(
                client,
                CustomerAction.OUTLET_CREATE,
                customer_id=customer.id,
                actor=_staff(operator),
                detail=_at(operator, detail),
            )
        )
        return await service.detail(conn, cipher=keys.cipher, customer_id=customer.id, now=unit.now)

    return await uow.run(step)


async def verify_at_outlet(
    *,
    uow: UnitOfWork,
    keys: Keys,
    operator: OutletOperator,
    customer_id: UUID,
    id_type: str,
    id_number: str,
    client: Client,
) -> Profile:
    """An operator checked the customer's ID document: the profile is verified (``outlet_id_check``) when
    the document is the one on file. 422 ``id_number_mismatch`` (naming ``id_number``) when its type or
    number differs, 404 when there is no such customer or no profile; nothing written on a refusal."""
    id_value, _ = _id_document(id_type, id_number)
    digest = id_number_hash(id_value, keys.lookup_key)

    async def step(unit: Unit) -> Profile:
        await store.lock_customer(unit.conn, customer_id)  # the customer before the profile, as profile.py
        current = await store.get_profile(unit.conn, customer_id, lock=True)
        if current is None:
            raise IdentityError("profile_missing")
        if current.id_type != id_type or not hmac.compare_digest(current.id_number_hash, digest):
            raise IdentityError("id_number_mismatch")
        method = VerificationMethod.OUTLET_ID_CHECK
        await verify_in(unit, customer_id=customer_id, method=method)
        detail = {"id_type": id_type, "id_number": mask_id_number(id_value), "method": method.value}
        unit.audit(
            event(
                client,
                CustomerAction.VERIFY,
                customer_id=customer_id,
                actor=_staff(operator),
                detail=_at(operator, detail),
            )
        )
        profile = await get_profile(unit.conn, cipher=keys.cipher, customer_id=customer_id)
        assert profile is not None
        return profile

    def refused(error: DomainError) -> AuditEvent:
        # A mismatch answers whether an ID number is this customer's: a read of personal data, on record.
        detail = {"id_type": id_type, "id_number": mask_id_number(id_value)}
        return event(
            client,
            CustomerAction.VERIFY,
            customer_id=customer_id,
            failure=error,
            actor=_staff(operator),
            detail=_at(operator, detail),
        )

    return await uow.run(step, refusal=refused)


# --- changes at the counter (seed 001: 用户信息变更, 变更银行卡) -------------------------------------------

OUTLET_CODE_PURPOSES = frozenset({Purpose.PROFILE_CHANGE, Purpose.BANK_CARD_CHANGE})
"""The codes an operator may have sent to a customer's own phone: the customer's consent to a change."""


async def request_code_at_outlet(
    *,
    uow: UnitOfWork,
    gateway: SmsGateway,
    lookup_key: bytes,
    operator: OutletOperator,
    customer_id: UUID,
    purpose: Purpose,
    client: Client,
) -> SentCode:
    """Send a code to the customer's own phone for a change an operator makes at the counter; the customer
    reads it to the operator as their consent. Audited with the operator, the outlet and the masked phone."""
    if purpose not in OUTLET_CODE_PURPOSES:
        raise InvalidValue("purpose", "不支持的验证码用途", "unsupported code purpose").at("purpose")
    async with uow.pool.connection() as conn:
        phone = await service.get_phone_or_raise(conn, customer_id=customer_id)
    detail = _at(operator, {"phone": mask_phone(phone), "purpose": purpose.value})

    async def step(unit: Unit) -> SentCode:
        sent = await sms.send_code(
            unit.conn,
            gateway=gateway,
            lookup_key=lookup_key,
            phone=phone,
            purpose=purpose,
            ip=client.ip,
            now=unit.now,
        )
        unit.audit(
            event(
                client,
                CustomerAction.OUTLET_CODE,
                customer_id=customer_id,
                actor=_staff(operator),
                detail=detail,
            )
        )
        return sent

    def refused(error: DomainError) -> AuditEvent:
        return event(
            client,
            CustomerAction.OUTLET_CODE,
            customer_id=customer_id,
            failure=error,
            actor=_staff(operator),
            detail=detail,
        )

    return await uow.run(step, refusal=refused)


async def check_code_at_outlet(
    *,
    uow: UnitOfWork,
    lookup_key: bytes,
    operator: OutletOperator,
    customer_id: UUID,
    purpose: Purpose,
    sms_code: str,
    client: Client,
) -> None:
    """Spend the code sent to the customer's own phone for ``purpose`` (another domain's change at the
    counter, e.g. a bank card change). The try is counted and audited even when refused (then raised)."""

    async def step(unit: Unit) -> IdentityError | None:
        customer = await store.get_customer_or_raise(unit.conn, customer_id)
        failure = await sms.check_code(
            unit.conn,
            lookup_key=lookup_key,
            phone=customer.phone,
            purpose=purpose,
            code=sms_code,
            now=unit.now,
        )
        detail = _at(operator, {"purpose": purpose.value, "code_checked": True})
        unit.audit(
            event(
                client,
                CustomerAction.OUTLET_CODE,
                customer_id=customer_id,
                failure=failure,
                actor=_staff(operator),
                detail=detail,
            )
        )
        return failure

    failure = await uow.run(step)
    if failure is not None:
        raise failure


async def change_at_outlet(
    *,
    uow: UnitOfWork,
    keys: Keys,
    operator: OutletOperator,
    customer_id: UUID,
    sms_code: str,
    phone: str | None = None,
    name: str | None = None,
    client: Client,
) -> CustomerDetail:
    """用户信息变更: change the customer's phone and/or the name on their real-name profile, at the counter,
    proved by a code (purpose ``profile_change``) sent to the customer's current phone.

    The code is checked first and the try counted even on refusal; a wrong or expired code, a phone another
    customer holds (409 ``customer_phone_exists``), or no profile for a name change (404) change nothing.
    Audited with the old and the new values masked. The ID document is not changed here: a different
    person is a different customer."""
    new_phone = None if phone is None else _phone(phone)
    new_name: str | None = None
    if name is not None:
        try:
            new_name = check_name(name)
        except InvalidValue as exc:
            raise exc.at("name") from None
    if new_phone is None and new_name is None:
        raise InvalidValue("nothing_to_change", "没有要变更的信息", "nothing to change").at("phone")

    async def step(unit: Unit) -> tuple[CustomerDetail | None, DomainError | None]:
        customer = await store.lock_customer(unit.conn, customer_id)
        current = await store.get_profile(unit.conn, customer_id, lock=True)
        failure: DomainError | None = await sms.check_code(
            unit.conn,
            lookup_key=keys.lookup_key,
            phone=customer.phone,
            purpose=Purpose.PROFILE_CHANGE,
            code=sms_code,
            now=unit.now,
        )
        changes: dict[str, object] = {}
        if failure is None and new_name is not None and current is None:
            failure = IdentityError("profile_missing")
        if failure is None and new_phone is not None and new_phone != customer.phone:
            if not await store.set_phone(unit.conn, customer_id, new_phone):
                failure = IdentityError("customer_phone_exists")
            else:
                changes["phone"] = {"old": mask_phone(customer.phone), "new": mask_phone(new_phone)}
        if failure is None and new_name is not None and current is not None:
            old_name = keys.cipher.decrypt(current.name_enc, context=NAME_CONTEXT)
            if old_name != new_name:
                sealed = keys.cipher.encrypt(new_name, context=NAME_CONTEXT)
                await store.set_profile_name(unit.conn, customer_id, name_enc=sealed, now=unit.now)
                changes["name"] = {"old": mask_name(old_name), "new": mask_name(new_name)}
        unit.audit(
            event(
                client,
                CustomerAction.OUTLET_CHANGE,
                customer_id=customer_id,
                failure=failure,
                actor=_staff(operator),
                detail=_at(operator, {"changes": changes if failure is None else {}}),
            )
        )
        if failure is not None:
            return None, failure
        return await service.detail(
            unit.conn, cipher=keys.cipher, customer_id=customer_id, now=unit.now
        ), None

    found, failure = await uow.run(step)
    if failure is not None:
        raise failure
    assert found is not None
    return found
