"""Customers signing in: password or SMS code first, then a second factor when one is enrolled (TOTP, a
recovery code or a passkey, finished with the login ticket), session refresh and sign-out.

A wrong password or code counts even when the answer is a refusal: the unit that checks it commits, with
the refused attempt's audit entry, and the refusal is raised after. Each session opened names its device
in the audit entry (``IssuedTokens.audit_detail``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from etcwallet.core.crypto import FieldCipher, hash_token, new_token
from etcwallet.core.deps import Client
from etcwallet.core.errors import DomainError
from etcwallet.core.masking import mask_phone
from etcwallet.identity import lockout, sms
from etcwallet.identity.authz import refresh_token_reused, unauthenticated
from etcwallet.identity.customers import store
from etcwallet.identity.customers.actions import claimant, event, record
from etcwallet.identity.customers.credentials import check_password
from etcwallet.identity.customers.errors import status_refusal
from etcwallet.identity.customers.types import (
    CUSTOMER,
    TICKET_ATTEMPTS,
    TICKET_LIFETIME,
    Customer,
    CustomerAction,
    SignIn,
)
from etcwallet.identity.errors import IdentityError
from etcwallet.identity.factors import passkeys, totp
from etcwallet.identity.sessions import service as sessions
from etcwallet.identity.sms import Purpose
from etcwallet.platform.unit import Unit, UnitOfWork, utcnow

Conn = AsyncConnection[Any]


async def second_factors(conn: Conn, *, customer_id: UUID) -> tuple[str, ...]:
    """The second factors a customer has enrolled, as the login answer names them."""
    factors: list[str] = []
    if await totp.is_enrolled(conn, principal_type=CUSTOMER, principal_id=customer_id):
        factors += ["totp", "recovery_code"]
    if await passkeys.has_passkey(conn, principal_type=CUSTOMER, principal_id=customer_id):
        factors.append("passkey")
    return tuple(factors)


def _session_detail(result: SignIn | None) -> dict[str, object]:
    """The audit detail of the session a sign-in opened (its device, and whether it is new): none without."""
    return result.tokens.audit_detail() if result and result.tokens else {}


async def _after_first_factor(unit: Unit, customer_id: UUID, client: Client) -> SignIn:
    """Tokens, or a login ticket when the customer has a second factor."""
    factors = await second_factors(unit.conn, customer_id=customer_id)
    if factors:
        ticket = new_token()
        expires = unit.now + TICKET_LIFETIME
        await store.insert_ticket(
            unit.conn, ticket_hash=hash_token(ticket), customer_id=customer_id, expires_at=expires
        )
        return SignIn(customer_id, None, ticket, expires, factors)
    await lockout.record_success(unit.conn, table="customers", principal_id=customer_id)
    tokens = await sessions.issue(
        unit.conn, principal_type=CUSTOMER, principal_id=customer_id, client=client, now=unit.now
    )
    return SignIn(customer_id, tokens)


async def login_password(*, uow: UnitOfWork, phone: str, password: str, client: Client) -> SignIn:
    """Sign in with phone and password (lockout, frozen accounts refused, second factor when enrolled)."""

    async def step(unit: Unit) -> tuple[SignIn | None, IdentityError | None]:
        result: SignIn | None = None
        customer, failure = await check_password(unit.conn, phone=phone, password=password, now=unit.now)
        if failure is None:
            assert customer is not None
            result = await _after_first_factor(unit, customer.id, client)
        customer_id = customer.id if customer else None
        factors = {"factors": list(result.factors)} if result else {}
        unit.audit(
            event(
                client,
                CustomerAction.LOGIN_PASSWORD,
                customer_id=customer_id,
                failure=failure,
                actor=claimant(customer_id, failure is None),
                detail={"phone": mask_phone(phone)} | factors | _session_detail(result),
            )
        )
        return result, failure

    result, failure = await uow.run(step)
    if failure is not None:
        raise failure
    assert result is not None
    return result


async def login_sms(
    *, uow: UnitOfWork, lookup_key: bytes, phone: str, sms_code: str, client: Client
) -> SignIn:
    """Sign in with an SMS code (purpose login) instead of the password; the same rules otherwise."""

    async def step(unit: Unit) -> tuple[SignIn | None, IdentityError | None]:
        result: SignIn | None = None
        customer: Customer | None = None
        failure = await sms.check_code(
            unit.conn, lookup_key=lookup_key, phone=phone, purpose=Purpose.LOGIN, code=sms_code, now=unit.now
        )
        if failure is None:
            customer = await store.get_by_phone(unit.conn, phone)
            if customer is None:
                # only reachable by guessing a code nobody was sent
                failure = IdentityError("sms_code_invalid")
            else:
                failure = lockout.lock_in_force(customer.locked_until, now=unit.now) or status_refusal(
                    customer
                )
                if failure is None:
                    result = await _after_first_factor(unit, customer.id, client)
        customer_id = customer.id if customer else None
        unit.audit(
            event(
                client,
                CustomerAction.LOGIN_SMS,
                customer_id=customer_id,
                failure=failure,
                actor=claimant(customer_id, failure is None),
                detail={"phone": mask_phone(phone)} | _session_detail(result),
            )
        )
        return result, failure

    result, failure = await uow.run(step)
    if failure is not None:
        raise failure
    assert result is not None
    return result


async def login_second_factor(
    *,
    uow: UnitOfWork,
    cipher: FieldCipher,
    lookup_key: bytes,
    ticket: str,
    code: str,
    client: Client,
) -> sessions.IssuedTokens:
    """Finish a sign-in with a TOTP code or a recovery code; a wrong code counts toward the lockout."""
    ticket_hash = hash_token(ticket)

    async def step(unit: Unit) -> tuple[sessions.IssuedTokens | None, IdentityError | None]:
        conn = unit.conn
        failure: IdentityError | None = None
        tokens: sessions.IssuedTokens | None = None
        factor = "totp"
        customer_id = await store.get_live_ticket(
            conn, ticket_hash, now=unit.now, attempts=TICKET_ATTEMPTS, lock=True
        )
        if customer_id is None:
            failure = IdentityError("login_ticket_invalid")
        else:
            customer = await store.lock_customer(conn, customer_id)  # count failures one at a time
            failure = lockout.lock_in_force(customer.locked_until, now=unit.now) or status_refusal(customer)
        if failure is None and customer_id is not None:
            ok = await totp.verify(
                conn,
                cipher=cipher,
                principal_type=CUSTOMER,
                principal_id=customer_id,
                code=code,
                now=unit.now,
            )
            if not ok and not (len(code.strip()) == 6 and code.strip().isdigit()):
                factor = "recovery_code"
                ok = await totp.use_recovery_code(
                    conn,
                    lookup_key=lookup_key,
                    principal_type=CUSTOMER,
                    principal_id=customer_id,
                    code=code,
                    now=unit.now,
                )
            if ok:
                await store.spend_ticket(conn, ticket_hash, now=unit.now)
                await lockout.record_success(conn, table="customers", principal_id=customer_id)
                tokens = await sessions.issue(
                    conn, principal_type=CUSTOMER, principal_id=customer_id, client=client, now=unit.now
                )
                await sessions.record_step_up(conn, session_id=tokens.session_id, factor=factor, now=unit.now)
            else:
                await store.count_ticket_attempt(conn, ticket_hash)
                until = await lockout.record_failure(
                    conn, table="customers", principal_id=customer_id, now=unit.now
                )
                failure = lockout.failed("second_factor_invalid", until)
        unit.audit(
            event(
                client,
                CustomerAction.LOGIN_SECOND_FACTOR,
                customer_id=customer_id,
                failure=failure,
                actor=claimant(customer_id, failure is None),
                detail={"factor": factor} | (tokens.audit_detail() if tokens else {}),
            )
        )
        return tokens, failure

    tokens, failure = await uow.run(step)
    if failure is not None:
        raise failure
    assert tokens is not None
    return tokens


async def passkey_second_factor_options(
    pool: AsyncConnectionPool, *, ticket: str, rp_id: str, now: datetime | None = None
) -> passkeys.Ceremony:
    """Options to finish a password sign-in with one of the ticket's customer's passkeys.

    It writes only the factors' challenge (their module's own statement), so it takes the pool.
    """
    async with pool.connection() as conn, conn.transaction():
        customer_id = await store.get_live_ticket(
            conn, hash_token(ticket), now=now or utcnow(), attempts=TICKET_ATTEMPTS
        )
        if customer_id is None:
            raise IdentityError("login_ticket_invalid")
        return await passkeys.authentication_options(
            conn, purpose="login", rp_id=rp_id, principal=(CUSTOMER, customer_id), now=now
        )


async def login_second_factor_passkey(
    *,
    uow: UnitOfWork,
    ticket: str,
    challenge_id: UUID,
    credential: dict[str, Any],
    rp_id: str,
    origin: str,
    client: Client,
) -> sessions.IssuedTokens:
    """Finish a password sign-in with a passkey assertion answering :func:`passkey_second_factor_options`."""
    ticket_hash = hash_token(ticket)
    detail = {"factor": "passkey"}
    action = CustomerAction.LOGIN_SECOND_FACTOR
    async with uow.pool.connection() as conn:
        customer_id = await store.get_live_ticket(
            conn, ticket_hash, now=uow.clock(), attempts=TICKET_ATTEMPTS
        )
    if customer_id is None:
        failure = IdentityError("login_ticket_invalid")
        await record(uow, event(client, action, customer_id=None, failure=failure, detail=detail))
        raise failure
    known: UUID = customer_id

    async def step(unit: Unit) -> sessions.IssuedTokens:
        conn = unit.conn
        live = await store.get_live_ticket(
            conn, ticket_hash, now=unit.now, attempts=TICKET_ATTEMPTS, lock=True
        )
        if live is None:
            raise IdentityError("login_ticket_invalid")  # spent by a concurrent attempt
        customer = await store.get_customer_or_raise(conn, known)
        refusal = lockout.lock_in_force(customer.locked_until, now=unit.now) or status_refusal(customer)
        if refusal is not None:
            raise refusal
        await passkeys.verify_assertion(
            conn,
            challenge=challenge,
            credential=credential,
            rp_id=rp_id,
            origin=origin,
            principal=(CUSTOMER, known),
            principal_type=CUSTOMER,
            now=unit.now,
        )
        await store.spend_ticket(conn, ticket_hash, now=unit.now)
        await lockout.record_success(conn, table="customers", principal_id=known)
        tokens = await sessions.issue(
            conn, principal_type=CUSTOMER, principal_id=known, client=client, now=unit.now
        )
        await sessions.record_step_up(conn, session_id=tokens.session_id, factor="passkey", now=unit.now)
        unit.audit(event(client, action, customer_id=known, detail=detail | tokens.audit_detail()))
        return tokens

    async def count_refused(refused: DomainError) -> None:
        # The refused attempt counts against the ticket, and is audited with that count.
        async def counted(unit: Unit) -> None:
            await store.count_ticket_attempt(unit.conn, ticket_hash)
            unit.audit(
                event(
                    client,
                    action,
                    customer_id=known,
                    failure=refused,
                    actor=claimant(known, False),
                    detail=detail,
                )
            )

        await uow.run(counted)

    try:
        challenge, _ = await passkeys.take_challenge(
            uow.pool, challenge_id=challenge_id, purpose="login", principal=(CUSTOMER, known), now=uow.clock()
        )
        return await uow.run(step)
    except DomainError as refused:
        await count_refused(refused)
        raise


async def refresh(*, uow: UnitOfWork, refresh_token: str, client: Client) -> sessions.IssuedTokens:
    """Rotate a customer session's tokens (the old pair stops working); 401 if it is not live."""

    async def step(unit: Unit) -> tuple[sessions.IssuedTokens | None, IdentityError | None]:
        rotation = await sessions.rotate_refresh(
            unit.conn, principal_type=CUSTOMER, refresh_token=refresh_token, now=unit.now
        )
        tokens, customer_id = rotation.tokens, rotation.principal_id
        failure = None
        if tokens is None:
            failure = refresh_token_reused() if rotation.reused else unauthenticated()
        unit.audit(
            event(
                client,
                CustomerAction.SESSION_REFRESH,
                customer_id=customer_id,
                failure=failure,
                actor=claimant(customer_id, failure is None),
                detail={"session_id": str(rotation.session_id)} if rotation.session_id else {},
            )
        )
        return tokens, failure

    tokens, failure = await uow.run(step)
    if failure is not None:
        raise failure
    assert tokens is not None
    return tokens


async def logout(*, uow: UnitOfWork, customer_id: UUID, session_id: UUID, client: Client) -> None:
    """End the current session."""

    async def step(unit: Unit) -> None:
        await sessions.end_session(unit.conn, session_id=session_id, reason="logout", now=unit.now)
        detail = {"session_id": str(session_id)}
        unit.audit(event(client, CustomerAction.LOGOUT, customer_id=customer_id, detail=detail))

    await uow.run(step)
