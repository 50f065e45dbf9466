"""Request bodies of the outlet's customer routes (:mod:`.outlet_api`); the answers are the staff view's
(:class:`~etcwallet.identity.customers.schemas.StaffCustomerOut`) and the masked profile."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from etcwallet.core.schemas import RequestModel
from etcwallet.identity.customers.schemas import IdNumber, IdType, Phone


class IdDocument(RequestModel):
    """The ID document the customer shows at the counter (in a body, never in a URL)."""

    id_type: IdType
    id_number: IdNumber


class OutletCustomerRequest(IdDocument):
    """Open an account from the real-name data the customer shows: no password (they claim it by SMS)."""

    phone: Phone
    name: Annotated[str, Field(min_length=1, max_length=64)]
