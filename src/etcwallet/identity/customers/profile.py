"""The real-name profile (name and ID document, encrypted, the number findable by its keyed hash) and the
6-digit payment password (five wrong tries lock it; a reset needs an SMS code and the ID number).
"""

from __future__ import annotations

import hmac
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from uuid import UUID

from psycopg import AsyncConnection

from etcwallet.core.crypto import FieldCipher, Keys, keyed_hash
from etcwallet.core.deps import Client
from etcwallet.core.errors import InvalidValue
from etcwallet.core.masking import mask_id_number, mask_name
from etcwallet.identity import sms
from etcwallet.identity.customers import store
from etcwallet.identity.customers.actions import event
from etcwallet.identity.customers.errors import pin_locked, pin_wrong
from etcwallet.identity.customers.types import (
    CUSTOMER,
    ID_NUMBER_CONTEXT,
    NAME_CONTEXT,
    PIN_MAX_FAILURES,
    Customer,
    CustomerAction,
    PinState,
    Profile,
)
from etcwallet.identity.errors import IdentityError
from etcwallet.identity.factors import stepup
from etcwallet.identity.factors.types import is_fresh
from etcwallet.identity.passwords import hash_secret_async, verify_secret_async
from etcwallet.identity.sms import Purpose
from etcwallet.identity.validators import validate_payment_password, validate_resident_id
from etcwallet.platform.unit import Unit, UnitOfWork, utcnow

Conn = AsyncConnection[Any]

# --- ID numbers and names --------------------------------------------------------------------------------

_SEPARATORS = re.compile(r"[\s\-]+")
_NAME = re.compile(r"[^\W\d_](?:[^\W\d_]|[ ·・.'\-])*")
_ID_FORMATS: dict[str, tuple[re.Pattern[str], str, str]] = {
    "passport": (
        re.compile(r"[A-Z0-9]{5,17}"),
        "护照号码应为5–17位字母或数字",
        "a passport number has 5 to 17 letters or digits",
    ),
    "hk_macao_permit": (
        re.compile(r"[HM][0-9]{8}(?:[0-9]{2})?"),
        "港澳居民来往内地通行证号码应为H或M加8位或10位数字",
        "a Hong Kong/Macao permit number is H or M followed by 8 or 10 digits",
    ),
    "taiwan_permit": (
        re.compile(r"[0-9]{8}|[0-9A-Z]{10}"),
        "台湾居民来往大陆通行证号码应为8位数字或10位字母数字",
        "a Taiwan permit number has 8 digits or 10 letters and digits",
    ),
    "military_id": (
        re.compile(r"[\u4e00-\u9fffA-Z0-9]{4,20}"),
        "军官证号码应为4–20位汉字、字母或数字",
        "a military ID number has 4 to 20 Chinese characters, letters or digits",
    ),
}


def normalize_id_number(number: str) -> str:
    """The stored form of an ID number: full-width folded, no spaces or hyphens, upper case."""
    return _SEPARATORS.sub("", unicodedata.normalize("NFKC", number)).upper()


def check_id_number(id_type: str, number: str) -> tuple[str, date | None]:
    """The normalized number and (for a resident ID) its birth date; InvalidValue when it is not valid."""
    if id_type == "resident_id":
        rid = validate_resident_id(number)
        return rid.number, rid.birth_date
    if id_type not in _ID_FORMATS:
        raise InvalidValue("id_type", "不支持的证件类型", "unsupported ID type")
    value = normalize_id_number(number)
    pattern, zh, en = _ID_FORMATS[id_type]
    if not pattern.fullmatch(value):
        raise InvalidValue("id_format", zh, en)
    return value, None


def check_name(name: str) -> str:
    """A person's name: letters (any script), with the middle dot, spaces, periods, apostrophes, hyphens."""
    value = " ".join(unicodedata.normalize("NFKC", name).split())
    if not value or len(value) > 64 or not _NAME.fullmatch(value):
        raise InvalidValue(
            "name_format",
            "姓名只能包含文字和间隔号（·），不能有数字或符号",
            "a name has letters and separators (·, space, hyphen) only, no digits or symbols",
        )
    return value


def id_number_hash(number: str, lookup_key: bytes) -> bytes:
    """The keyed hash an ID number is found by (the type is a column of its own, not part of the hash)."""
    return keyed_hash(normalize_id_number(number), lookup_key)


# --- look-ups --------------------------------------------------------------------------------------------


async def find_by_id_number(
    conn: Conn, *, id_type: str, id_number: str, lookup_key: bytes
) -> Customer | None:
    """The customer whose real-name profile holds this ID number; one keyed-hash look-up, no decryption."""
    customer_id = await store.find_id_by_id_number(
        conn, id_type=id_type, id_number_hash=id_number_hash(id_number, lookup_key)
    )
    return None if customer_id is None else await store.get_customer(conn, customer_id)


async def find_customer_by_id_number(
    conn: Conn, *, lookup_key: bytes, id_type: str, number: str
) -> UUID | None:
    """The id of the customer whose real-name profile holds this ID number (see :func:`find_by_id_number`)."""
    return await store.find_id_by_id_number(
        conn, id_type=id_type, id_number_hash=id_number_hash(number, lookup_key)
    )


def _profile(cipher: FieldCipher, row: store.ProfileRow) -> Profile:
    name = cipher.decrypt(row.name_enc, context=NAME_CONTEXT)
    return Profile(
        mask_name(name),
        row.id_type,
        row.id_number_masked,
        row.birth_date,
        row.verified_at,
        row.updated_at,
        row.verified_by,
    )


async def get_profile(conn: Conn, *, cipher: FieldCipher, customer_id: UUID) -> Profile | None:
    """The customer's real-name profile, masked; None when none is on file."""
    row = await store.get_profile(conn, customer_id)
    return None if row is None else _profile(cipher, row)


async def get_profile_or_raise(conn: Conn, *, cipher: FieldCipher, customer_id: UUID) -> Profile:
    """The customer's real-name profile, masked; 404 ``profile_missing`` when none is on file."""
    profile = await get_profile(conn, cipher=cipher, customer_id=customer_id)
    if profile is None:
        raise IdentityError("profile_missing")
    return profile


@dataclass(frozen=True)
class Cardholder:
    """The real-name data an ETC card's holder file (0016) carries, in clear: only for writing the chip,
    never for an answer or a log line (``repr`` hides it)."""

    name: str = field(repr=False)
    id_type: str
    id_number: str = field(repr=False)


async def cardholder_of(conn: Conn, *, cipher: FieldCipher, customer_id: UUID) -> Cardholder | None:
    """The customer's name and ID number in clear, for the card issuance that writes them onto the chip
    as the national card layout requires; None when no real-name profile is on file."""
    sealed = await store.get_sealed_holder(conn, customer_id)
    if sealed is None:
        return None
    name_enc, id_type, id_number_enc = sealed
    return Cardholder(
        name=cipher.decrypt(name_enc, context=NAME_CONTEXT),
        id_type=id_type,
        id_number=cipher.decrypt(id_number_enc, context=ID_NUMBER_CONTEXT),
    )


# --- recording the profile -------------------------------------------------------------------------------


async def set_profile(
    *,
    uow: UnitOfWork,
    keys: Keys,
    customer_id: UUID,
    name: str,
    id_type: str,
    id_number: str,
    sms_code: str | None,
    stepped_up_at: datetime | None,
    client: Client,
) -> Profile:
    """Record (or, with an SMS code, change) the real-name profile: encrypted, keyed-hashed, one ID per customer.

    Recording or changing it needs a fresh step-up (the session's ``stepped_up_at``, judged by the unit's
    clock), checked before the ID number is
    looked up: otherwise the answer (409 ``id_number_registered`` or 200) would tell anyone signed in
    whether an ID number belongs to another customer. Saving what is already on file needs none.
    A concurrent registration of the same number makes the unit run again, and find it registered."""
    try:
        clean_name = check_name(name)
    except InvalidValue as exc:
        raise exc.at("name") from None
    try:
        number, birth = check_id_number(id_type, id_number)
    except InvalidValue as exc:
        raise exc.at("id_number") from None
    digest = id_number_hash(number, keys.lookup_key)
    masked = mask_id_number(number)

    async def step(unit: Unit) -> tuple[Profile | None, IdentityError | None]:
        customer = await store.lock_customer(unit.conn, customer_id)
        current = await store.get_profile(unit.conn, customer_id, lock=True)
        same = current is not None and (
            current.id_type == id_type
            and hmac.compare_digest(current.id_number_hash, digest)
            and keys.cipher.decrypt(current.name_enc, context=NAME_CONTEXT) == clean_name
        )
        failure = None if same else await _change_refusal(unit, customer, current is not None)
        if failure is None and not same:
            write = store.ProfileWrite(
                keys.cipher.encrypt(clean_name, context=NAME_CONTEXT),
                id_type,
                keys.cipher.encrypt(number, context=ID_NUMBER_CONTEXT),
                digest,
                masked,
                birth,
            )
            await store.put_profile(unit.conn, customer_id, write, now=unit.now)
        profile = await get_profile(unit.conn, cipher=keys.cipher, customer_id=customer_id)
        changed = failure is None and not same
        detail = {"id_type": id_type, "id_number": masked, "changed": changed}
        unit.audit(
            event(client, CustomerAction.PROFILE_SET, customer_id=customer_id, failure=failure, detail=detail)
        )
        return profile, failure

    async def _change_refusal(unit: Unit, customer: Customer, on_file: bool) -> IdentityError | None:
        """Why this new profile may not be recorded: no step-up, no or a wrong SMS code, number taken."""
        if not is_fresh(stepped_up_at, now=unit.now, max_age=stepup.STEP_UP_WINDOW):
            factors = await stepup.accepted_factors(
                unit.conn, principal_type=CUSTOMER, principal_id=customer_id
            )
            return stepup.step_up_required(CUSTOMER, factors, stepup.STEP_UP_WINDOW)
        if on_file:
            if sms_code is None:
                return IdentityError("sms_code_required")
            failure = await sms.check_code(
                unit.conn,
                lookup_key=keys.lookup_key,
                phone=customer.phone,
                purpose=Purpose.PROFILE_CHANGE,
                code=sms_code,
                now=unit.now,
            )
            if failure is not None:
                return failure
        other = await store.find_id_by_id_number(unit.conn, id_type=id_type, id_number_hash=digest)
        if other is not None and other != customer_id:
            return IdentityError("id_number_registered")
        return None

    profile, failure = await uow.run(step)
    if failure is not None:
        raise failure
    assert profile is not None
    return profile


# --- payment password ------------------------------------------------------------------------------------


async def pin_state(conn: Conn, *, customer_id: UUID) -> PinState:
    """Whether a payment password is set, locked, and how many wrong tries it has seen."""
    return await store.get_pin_state(conn, customer_id)


def _check_pin(pin: str, field: str, phone: str, birth: date | None) -> None:
    try:
        validate_payment_password(pin, birth_date=birth, phone=phone)
    except InvalidValue as exc:
        raise exc.at(field) from None


async def set_payment_password(
    *,
    uow: UnitOfWork,
    lookup_key: bytes,
    customer_id: UUID,
    pin: str,
    sms_code: str,
    client: Client,
) -> None:
    """Set the 6-digit payment password the first time, proved by an SMS code (purpose reset_payment_password)."""

    async def step(unit: Unit) -> IdentityError | None:
        phone, birth = await store.get_phone_and_birth_date(unit.conn, customer_id)
        _check_pin(pin, "pin", phone, birth)
        if (await store.get_pin_state(unit.conn, customer_id)).set:
            raise IdentityError("payment_password_exists")
        failure = await sms.check_code(
            unit.conn,
            lookup_key=lookup_key,
            phone=phone,
            purpose=Purpose.RESET_PAYMENT_PASSWORD,
            code=sms_code,
            now=unit.now,
        )
        if failure is None:
            password_hash = await hash_secret_async(pin)
            if not await store.insert_pin(unit.conn, customer_id, password_hash=password_hash):
                failure = IdentityError("payment_password_exists")
        action = CustomerAction.PAYMENT_PASSWORD_SET
        unit.audit(event(client, action, customer_id=customer_id, failure=failure))
        return failure

    failure = await uow.run(step)
    if failure is not None:
        raise failure


async def verify_payment_password(
    conn: Conn, *, customer_id: UUID, pin: str, now: datetime | None = None
) -> IdentityError | None:
    """Check a payment password: None when right, else the refusal (wrong with tries left, locked, or not set).

    A wrong try is counted and the 5th locks it (at ``now``, the unit's time), so run this in a
    transaction that commits even when the answer is a refusal (or use :func:`check_payment_password`,
    which does).
    """
    found = await store.lock_pin(conn, customer_id)
    if found is None:
        return IdentityError("payment_password_not_set")
    stored, state = found
    if state.locked:
        return pin_locked()
    if await verify_secret_async(stored, pin):
        if state.failed_attempts:
            await store.clear_pin_failures(conn, customer_id)
        return None
    counted = await store.count_pin_failure(conn, customer_id, now=now or utcnow())
    remaining = PIN_MAX_FAILURES - counted
    return pin_locked() if remaining <= 0 else pin_wrong(remaining)


async def check_payment_password(
    *, uow: UnitOfWork, customer_id: UUID, pin: str, client: Client, purpose: str = "verify"
) -> None:
    """Verify a payment password in a unit of its own (tries always counted); raises the refusal."""

    async def step(unit: Unit) -> IdentityError | None:
        failure = await verify_payment_password(unit.conn, customer_id=customer_id, pin=pin, now=unit.now)
        detail = {"purpose": purpose}
        action = CustomerAction.PAYMENT_PASSWORD_VERIFY
        unit.audit(event(client, action, customer_id=customer_id, failure=failure, detail=detail))
        return failure

    failure = await uow.run(step)
    if failure is not None:
        raise failure


async def reset_payment_password(
    *,
    uow: UnitOfWork,
    keys: Keys,
    customer_id: UUID,
    sms_code: str,
    id_number: str,
    new_pin: str,
    client: Client,
) -> None:
    """Reset (and unlock) the payment password with an SMS code plus the ID number on the real-name profile."""

    async def step(unit: Unit) -> IdentityError | None:
        phone, birth = await store.get_phone_and_birth_date(unit.conn, customer_id)
        profile = await store.get_profile(unit.conn, customer_id)
        if profile is None:
            raise IdentityError("profile_required")
        _check_pin(new_pin, "new_pin", phone, birth)
        failure = await sms.check_code(
            unit.conn,
            lookup_key=keys.lookup_key,
            phone=phone,
            purpose=Purpose.RESET_PAYMENT_PASSWORD,
            code=sms_code,
            now=unit.now,
        )
        # The code is spent even when the ID number is wrong: each guess at the number costs a new SMS.
        if failure is None and not hmac.compare_digest(
            profile.id_number_hash, id_number_hash(id_number, keys.lookup_key)
        ):
            failure = IdentityError("id_number_mismatch")
        if failure is None:
            password_hash = await hash_secret_async(new_pin)
            await store.put_pin(unit.conn, customer_id, password_hash=password_hash, now=unit.now)
        detail = {"id_number": mask_id_number(normalize_id_number(id_number))}
        action = CustomerAction.PAYMENT_PASSWORD_RESET
        unit.audit(event(client, action, customer_id=customer_id, failure=failure, detail=detail))
        return failure

    failure = await uow.run(step)
    if failure is not None:
        raise failure
