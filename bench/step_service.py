"""The service of phase (e): ``etcwallet serve``'s application plus one hot domain step, as the wallet's
payments and transfers will be.

``POST /bench/v1/steps`` books a step: one transfer, and with it in the same commit one row of the step's
own table, one event and one audit entry (the fast path, ``Along``). The table lives in a schema of its
own (``bench``), which the benchmark creates; the service's privilege map covers ``public`` only.

Run by ``ledger_bench.py`` as ``python bench/step_service.py`` with the same environment as phase (c).
"""

from __future__ import annotations

import os
from uuid import UUID

import uvicorn
from fastapi import APIRouter, FastAPI, Request, Response

from etcwallet.app import create_app_from_env
from etcwallet.core.http import parse_body
from etcwallet.core.money import Money
from etcwallet.core.schemas import RequestModel
from etcwallet.identity.authz import actor
from etcwallet.ledger.api import can_write
from etcwallet.ledger.service import Ledger
from etcwallet.ledger.types import TransferRequest
from etcwallet.platform.events import Event
from etcwallet.platform.unit import Along

SCHEMA = "bench"
DDL = f"""
CREATE SCHEMA IF NOT EXISTS {SCHEMA};
CREATE TABLE IF NOT EXISTS {SCHEMA}.steps (
    id uuid PRIMARY KEY,
    payer uuid NOT NULL,
    payee uuid NOT NULL,
    amount bigint NOT NULL,
    booked_at timestamptz NOT NULL DEFAULT now()
);
"""
_INSERT = f"INSERT INTO {SCHEMA}.steps (id, payer, payee, amount) VALUES (%s, %s, %s, %s) ON CONFLICT (id) DO NOTHING"

router = APIRouter(prefix="/bench/v1", tags=["bench"])


class StepCreate(RequestModel):
    id: UUID
    payer: UUID
    payee: UUID
    amount: Money


@router.post("/steps", status_code=201)
async def book_step(request: Request) -> Response:
    """One transfer with its row, its event and its audit entry, committed together."""
    who = actor(request, await can_write(request))
    body = await parse_body(request, StepCreate)
    ledger: Ledger = request.app.state.ledger
    along = Along(
        statements=[(_INSERT, (body.id, body.payer, body.payee, body.amount.amount))],
        audit=[who.event("bench.step_booked", target=("bench_step", str(body.id)))],
        events=[Event("bench.step_booked", str(body.id), {"amount": body.amount.amount, "currency": "CNY"})],
    )
    transfer = await ledger.create_transfer(
        TransferRequest(
            body.id,
            debit_account_id=body.payer,
            credit_account_id=body.payee,
            amount=body.amount.amount,
            currency=body.amount.currency,
            code="bench.step",
        ),
        along=along,
    )
    return Response(f'{{"id":"{transfer.id}","seq":{transfer.seq}}}', 201, media_type="application/json")


def create_step_app() -> FastAPI:
    app = create_app_from_env()
    assert hasattr(app, "include_hot_router")
    app.include_hot_router(router)
    return app


if __name__ == "__main__":
    uvicorn.run(
        create_step_app(),
        host="127.0.0.1",
        port=int(os.environ["ETCW_PORT"]),
        log_config=None,
        access_log=False,
        proxy_headers=False,
        server_header=False,
    )
