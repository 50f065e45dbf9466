"""The outlet's counter: an operator (``issuance.operate``: outlet operators, supervisors and bank
operators, each placed at an outlet) finds a customer by phone or by ID document, opens an account from
the real-name data the customer shows, or verifies an existing customer's profile by their ID document.

A thin router over :mod:`etcwallet.identity.customers.outlet`: answers are masked as the staff customer
view is; the service audits each find and change with the operator and the outlet.
"""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, status

from etcwallet.core.deps import ClientDep, KeysDep, UnitOfWorkDep
from etcwallet.core.openapi import problems
from etcwallet.identity.authz import Permission, Principal, forbidden, require
from etcwallet.identity.customers import outlet
from etcwallet.identity.customers import schemas as s
from etcwallet.identity.customers.api import staff_view
from etcwallet.identity.customers.schemas import IdDocument, OutletCustomerRequest
from etcwallet.identity.customers.types import OutletOperator
from etcwallet.platform.idempotency import idempotent

router = APIRouter(prefix="/api/v1/outlet/customers", tags=["outlet"])

Operator = Annotated[Principal, Depends(require(Permission.ISSUANCE_OPERATE))]
KeyedOperator = Annotated[Principal, Depends(idempotent(require(Permission.ISSUANCE_OPERATE)))]


def _at_outlet(principal: Principal) -> OutletOperator:
    """The operator and their outlet (every holder of ``issuance.operate`` is placed at one)."""
    if principal.outlet_id is None:
        raise forbidden(Permission.ISSUANCE_OPERATE.value)
    return OutletOperator(principal.id, principal.outlet_id)


@router.post("/search/phone", response_model=s.StaffCustomerOut, responses=problems(404))
async def find_by_phone(
    body: s.PhoneLookup, uow: UnitOfWorkDep, keys: KeysDep, client: ClientDep, staff: Operator
) -> s.StaffCustomerOut:
    """The customer with this phone, masked (404 ``customer_not_found``); the look-up is audited. A POST
    so that the phone number travels in the body, never in a URL (proxies and browsers keep URLs)."""
    found = await outlet.find_at_outlet_by_phone(
        uow=uow, keys=keys, operator=_at_outlet(staff), phone=body.phone, client=client
    )
    return staff_view(found)


@router.post("/search", response_model=s.StaffCustomerOut, responses=problems(404))
async def find_by_id_document(
    body: IdDocument, uow: UnitOfWorkDep, keys: KeysDep, client: ClientDep, staff: Operator
) -> s.StaffCustomerOut:
    """The customer whose real-name profile holds this ID document, masked (404 ``customer_not_found``);
    the look-up is audited. A POST so that the ID number travels in the body, never in a URL."""
    found = await outlet.find_at_outlet_by_id_number(
        uow=uow,
        keys=keys,
        operator=_at_outlet(staff),
        id_type=body.id_type,
        id_number=body.id_number,
        client=client,
    )
    return staff_view(found)


@router.post(
    "", status_code=status.HTTP_201_CREATED, response_model=s.StaffCustomerOut, responses=problems(409)
)
async def create_customer(
    body: OutletCustomerRequest, uow: UnitOfWorkDep, keys: KeysDep, client: ClientDep, staff: KeyedOperator
) -> s.StaffCustomerOut:
    """Open an account from the real-name data the customer shows (verified by this ID check), with no
    password: the customer claims it by registering the phone with an SMS code. 409
    ``customer_phone_exists`` / ``customer_id_number_exists`` when either is taken."""
    created = await outlet.create_at_outlet(
        uow=uow,
        keys=keys,
        operator=_at_outlet(staff),
        phone=body.phone,
        name=body.name,
        id_type=body.id_type,
        id_number=body.id_number,
        client=client,
    )
    return staff_view(created)


@router.post("/{customer_id}/verify", response_model=s.ProfileOut, responses=problems(404, 409))
async def verify_customer(
    customer_id: UUID,
    body: IdDocument,
    uow: UnitOfWorkDep,
    keys: KeysDep,
    client: ClientDep,
    staff: Operator,
) -> s.ProfileOut:
    """The operator checked the customer's ID document: their profile is verified (``outlet_id_check``)
    when it is the one on file, else 422 ``id_number_mismatch``."""
    profile = await outlet.verify_at_outlet(
        uow=uow,
        keys=keys,
        operator=_at_outlet(staff),
        customer_id=customer_id,
        id_type=body.id_type,
        id_number=body.id_number,
        client=client,
    )
    return s.ProfileOut.of(profile)
