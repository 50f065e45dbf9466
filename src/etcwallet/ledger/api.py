"""The ledger's HTTP API for finance staff: accounts, transfers, holds and history."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, Response, status

from etcwallet.core.bodies import body_limit
from etcwallet.core.deps import ClientDep, LedgerDep, get_ledger
from etcwallet.core.http import body_schema, parse_body
from etcwallet.core.i18n import negotiate
from etcwallet.core.ids import new_id
from etcwallet.core.money import SignedMoney
from etcwallet.core.openapi import problems
from etcwallet.identity.authz import Permission, Principal, actor, actor_of, require
from etcwallet.ledger import schemas as s
from etcwallet.ledger.errors import LedgerError
from etcwallet.ledger.service import AccountSpec
from etcwallet.platform.audit import Actor

router = APIRouter(prefix="/api/v1/ledger", tags=["ledger"])
can_read = require(Permission.LEDGER_READ)
can_write = require(Permission.LEDGER_WRITE)
READ = [Depends(can_read)]
# The busiest route, served by the fast lane (etcwallet.core.http.HotRoutes): it checks the token itself
# rather than through dependency solving; the authorization tests cover it like every other route.
hot_router = APIRouter(prefix="/api/v1/ledger", tags=["ledger"])


async def writer(principal: Annotated[Principal, Depends(can_write)], client: ClientDep) -> Actor:
    """Finance staff allowed to write to the ledger, as the actor of the audit entries."""
    return actor_of(principal, client)


WriterDep = Annotated[Actor, Depends(writer)]


@router.post(
    "/accounts",
    status_code=status.HTTP_201_CREATED,
    response_model=s.AccountOut,
    responses=problems(409),
)
async def create_account(body: s.AccountCreate, ledger: LedgerDep, who: WriterDep) -> s.AccountOut:
    account = await ledger.create_account(
        AccountSpec(
            id=body.id or new_id(),
            currency=body.currency,
            code=body.code.value,
            owner=body.owner,
            debits_must_not_exceed_credits=body.debits_must_not_exceed_credits,
            credits_must_not_exceed_debits=body.credits_must_not_exceed_debits,
            metadata=body.metadata,
        ),
        actor=who,
    )
    return s.AccountOut.of(account)


@router.get("/accounts/{account_id}", response_model=s.AccountOut, dependencies=READ)
async def read_account(account_id: UUID, ledger: LedgerDep) -> s.AccountOut:
    return s.AccountOut.of(await ledger.get_account_or_raise(account_id))


@router.put("/accounts/{account_id}/frozen", response_model=s.AccountOut)
async def freeze_account(
    account_id: UUID, body: s.FreezeRequest, ledger: LedgerDep, who: WriterDep
) -> s.AccountOut:
    return s.AccountOut.of(await ledger.set_frozen(account_id, body.frozen, actor=who))


@router.get("/accounts/{account_id}/transfers", response_model=s.HistoryPage, dependencies=READ)
async def list_transfers(
    account_id: UUID,
    ledger: LedgerDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(pattern=r"^[1-9][0-9]{0,18}$")] = None,
) -> s.HistoryPage:
    entries, next_seq = await ledger.history(
        account_id, before_seq=int(cursor) if cursor else None, limit=limit
    )
    return s.HistoryPage(
        items=[s.HistoryItem.of(e) for e in entries], next_cursor=str(next_seq) if next_seq else None
    )


@router.get("/accounts/{account_id}/balance", response_model=s.BalanceAsOf, dependencies=READ)
async def balance_as_of(account_id: UUID, at: s.AsOf, ledger: LedgerDep) -> s.BalanceAsOf:
    if at.tzinfo is None:
        raise LedgerError("timezone_required")
    account, balance = await ledger.balance_as_of(account_id, at)
    return s.BalanceAsOf(
        account_id=account_id, at=at, balance=SignedMoney(amount=balance, currency=account.currency)
    )


@hot_router.post(
    "/transfers",
    status_code=status.HTTP_201_CREATED,
    response_model=s.TransferOut,
    openapi_extra={**body_schema(s.TransferCreate), "security": [{"bearer": []}]},
    responses=problems(401, 403, 404, 409),
)
async def create_transfer(request: Request) -> Response:
    """Create one transfer. The busiest endpoint: it parses and answers without FastAPI's machinery."""
    who = actor(request, await can_write(request))
    body = await parse_body(request, s.TransferCreate)
    ledger = get_ledger(request)  # no dependency solving on the hot route
    transfer = await ledger.create_transfer(body.request(), actor=who)
    return Response(
        s.TransferOut.of(transfer).model_dump_json(), status_code=201, media_type="application/json"
    )


@router.post(
    "/transfers/linked",
    status_code=status.HTTP_201_CREATED,
    response_model=s.LinkedOut,
    responses=problems(404, 409),
)
async def create_linked(body: s.LinkedCreate, ledger: LedgerDep, who: WriterDep) -> s.LinkedOut:
    transfers = await ledger.create_linked([t.request() for t in body.transfers], actor=who)
    return s.LinkedOut(transfers=[s.TransferOut.of(t) for t in transfers])


@router.post(
    "/transfers/batch",
    response_model=s.BatchOut,
    openapi_extra=body_limit(s.MAX_BATCH_BODY),
)
async def create_batch(
    body: s.BatchCreate, request: Request, ledger: LedgerDep, who: WriterDep
) -> s.BatchOut:
    lang = negotiate(request.headers.get("accept-language"))
    results = await ledger.create_transfers([t.request(linked=t.linked) for t in body.transfers], actor=who)
    items = [
        s.BatchResult(index=i, status="refused", error=r.problem(lang))
        if isinstance(r, LedgerError)
        else s.BatchResult(index=i, status="ok", transfer=s.TransferOut.of(r))
        for i, r in enumerate(results)
    ]
    accepted = sum(1 for item in items if item.status == "ok")
    return s.BatchOut(accepted=accepted, refused=len(items) - accepted, results=items)


@router.post(
    "/transfers/{pending_id}/post",
    status_code=status.HTTP_201_CREATED,
    response_model=s.TransferOut,
    responses=problems(409),
)
async def post_pending(
    pending_id: UUID, body: s.PostPending, ledger: LedgerDep, who: WriterDep
) -> s.TransferOut:
    transfer = await ledger.create_transfer(body.request(pending_id), actor=who)
    return s.TransferOut.of(transfer)


@router.post(
    "/transfers/{pending_id}/void",
    status_code=status.HTTP_201_CREATED,
    response_model=s.TransferOut,
    responses=problems(409),
)
async def void_pending(
    pending_id: UUID, body: s.VoidPending, ledger: LedgerDep, who: WriterDep
) -> s.TransferOut:
    transfer = await ledger.create_transfer(body.request(pending_id), actor=who)
    return s.TransferOut.of(transfer)


@router.get("/transfers/{transfer_id}", response_model=s.TransferOut, dependencies=READ)
async def read_transfer(transfer_id: UUID, ledger: LedgerDep) -> s.TransferOut:
    transfer = await ledger.get_transfer(transfer_id)
    if transfer is None:
        raise LedgerError("transfer_not_found")
    return s.TransferOut.of(transfer)
