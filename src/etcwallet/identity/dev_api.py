"""Development-only endpoints: the SMS outbox a real gateway would have sent.

Mounted only with ``ETCW_DEV_OUTBOX=1`` and never in production (``Settings.serves_dev_outbox``): the
outbox holds every code sent, so anyone who can read it can sign in as anyone or reset their password.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel

from etcwallet.core.deps import PoolDep
from etcwallet.core.errors import InvalidValue
from etcwallet.identity import sms
from etcwallet.identity.validators import validate_mobile

router = APIRouter(prefix="/api/v1/dev", tags=["development"])


class OutboxMessage(BaseModel):
    id: int
    phone: str
    text: str
    sent_at: datetime


@router.get("/sms-outbox", response_model=list[OutboxMessage])
async def sms_outbox(
    pool: PoolDep, phone: Annotated[str, Query(min_length=11, max_length=20)]
) -> list[OutboxMessage]:
    """Messages the development SMS sink holds for a phone number, newest first."""
    try:
        number = validate_mobile(phone)
    except InvalidValue as exc:
        raise exc.at("phone") from None
    async with pool.connection() as conn:
        rows = await sms.outbox(conn, phone=number)
    return [OutboxMessage(id=r[0], phone=r[1], text=r[2], sent_at=r[3]) for r in rows]
