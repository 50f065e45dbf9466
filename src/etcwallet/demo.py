"""Demo data for ``make run``: outlets, staff and a few customer wallets, created idempotently.

Demo staff share one password, printed at start; they enroll TOTP at first sign-in like everyone else,
with a one-time enrollment code: each start issues a fresh one to every demo member not enrolled yet and
logs it (demo data is the bootstrap path, like the command line). Refused in production.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING
from uuid import NAMESPACE_URL, UUID, uuid5

from etcwallet.core.errors import DomainError
from etcwallet.identity.authz import Role
from etcwallet.identity.factors import totp
from etcwallet.identity.staff import service as staff
from etcwallet.ledger.chart import TransferCode, platform_account_id
from etcwallet.ledger.service import wallet_spec
from etcwallet.ledger.types import TransferRequest

if TYPE_CHECKING:
    from etcwallet.app import Runtime

log = logging.getLogger(__name__)

DEMO_STAFF_PASSWORD = "Demo-etc-2026"
DEMO_STOCK = 20
"""Blank cards of each type and tags in each demo outlet's drawer."""
DEMO_CUSTOMERS = {"张伟": 50_000, "李娜": 12_345, "王芳": 800}
DEMO_OUTLETS = [
    ("GS-LZ-001", "兰州城关自营网点", "self_operated", None),
    ("LZB-001", "兰州银行庆阳路网点", "bank", "lanzhou_bank"),
    ("ICBC-001", "工商银行兰州分行网点", "bank", "icbc"),
]
DEMO_STAFF = [
    ("admin", "演示管理员", Role.ADMINISTRATOR, None),
    ("finance", "演示财务", Role.FINANCE, None),
    ("operator1", "城关网点操作员", Role.OUTLET_OPERATOR, "GS-LZ-001"),
    ("bank1", "兰州银行操作员", Role.BANK_OPERATOR, "LZB-001"),
]


async def load_demo_data(runtime: Runtime) -> None:
    """Open demo outlets, staff and wallets (each once) and top the wallets up from cash clearing."""
    async with runtime.pool.connection() as conn:
        outlets = {}
        for code, name, kind, bank in DEMO_OUTLETS:
            try:
                outlets[code] = (
                    await staff.create_outlet(conn, code=code, name=name, kind=kind, bank=bank)
                ).id
            except DomainError:
                cur = await conn.execute("SELECT id FROM outlets WHERE code = %s", (code,))
                row = await cur.fetchone()
                assert row is not None
                outlets[code] = row[0]
        enrollment_codes = {}
        for username, display, role, outlet in DEMO_STAFF:
            try:
                await staff.create_staff(
                    conn,
                    username=username,
                    display_name=display,
                    password=DEMO_STAFF_PASSWORD,
                    role=role,
                    outlet_id=outlets[outlet] if outlet else None,
                )
            except DomainError as exc:
                if exc.code != "username_taken":
                    raise
            staff_id = await staff.get_staff_id_or_raise(conn, username=username)
            if not await totp.is_enrolled(conn, principal_type="staff", principal_id=staff_id):
                issued = await staff.issue_enrollment_code(conn, staff_id=staff_id, issued_by=None)
                enrollment_codes[username] = issued.code
    log.info(
        "demo staff",
        extra={
            "usernames": [s[0] for s in DEMO_STAFF],
            "password": DEMO_STAFF_PASSWORD,
            "enrollment_codes": enrollment_codes,
        },
    )

    cash = platform_account_id("clearing.cash")
    for name, amount in DEMO_CUSTOMERS.items():
        account_id = uuid5(NAMESPACE_URL, f"etcwallet-demo:wallet:{name}")
        await runtime.ledger.create_account(wallet_spec(account_id, f"demo:{name}"))
        topup_id = uuid5(NAMESPACE_URL, f"etcwallet-demo:topup:{name}")
        if await runtime.ledger.get_transfer(topup_id) is not None:
            continue  # topped up at an earlier start (before issue 17, with the code "demo_topup")
        await runtime.ledger.create_transfer(
            TransferRequest(
                id=topup_id,
                debit_account_id=cash,
                credit_account_id=account_id,
                amount=amount,
                currency="CNY",
                code=TransferCode.DEMO_TOPUP.value,
                metadata={"customer": name},
            )
        )

    await _demo_stock(runtime, outlets)


async def _demo_stock(runtime: Runtime, outlets: dict[str, UUID]) -> None:
    """Blank cards and tags in each demo outlet's drawer (made once; a second start finds them taken)."""
    from etcwallet.issuance import stock
    from etcwallet.issuance.codes import CardType
    from etcwallet.issuance.errors import IssuanceError
    from etcwallet.issuance.types import ChipKind
    from etcwallet.platform.audit import Actor

    context = runtime.issuance
    if context is None:
        return
    network = context.issuer.network
    for index, outlet_id in enumerate(outlets.values(), 1):
        batches = [
            (ChipKind.CARD, CardType.STORED_VALUE, f"{network}{index:02d}01{0:012d}"),
            (ChipKind.CARD, CardType.ACCOUNT, f"{network}{index:02d}02{0:012d}"),
            (ChipKind.TAG, None, f"{network}{index:02d}03{0:08d}"),
        ]
        for kind, card_type, first in batches:
            try:
                await stock.add_stock(
                    runtime.uow,
                    issuer=context.issuer,
                    kind=kind,
                    card_type=card_type,
                    outlet_id=outlet_id,
                    first_number=first[:-1] + "1",
                    count=DEMO_STOCK,
                    actor=Actor.system("demo"),
                    factory=context.factory,
                )
            except IssuanceError as taken:
                if taken.code != "stock_number_taken":
                    raise
