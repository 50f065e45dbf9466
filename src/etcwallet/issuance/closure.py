"""What issuance asks before a customer's account closes: no card or tag of theirs is still in use.

A live card (issued or active) or tag would go on charging tolls to an account that is gone, and a card
reported lost but not cancelled may still turn up at a lane: the customer cancels them (注销) first.
Registered with identity's closure checks as ``issuance.live_cards``.
"""

from __future__ import annotations

from uuid import UUID

from etcwallet.identity.customers.closure_checks import ClosureRefusal
from etcwallet.issuance import store
from etcwallet.issuance.types import ChipStatus
from etcwallet.platform.unit import Unit

LIVE_CARDS = "issuance.live_cards"
STILL_OPEN = (ChipStatus.ISSUED, ChipStatus.ACTIVE, ChipStatus.LOST)


async def live_cards_check(unit: Unit, customer_id: UUID) -> ClosureRefusal | None:
    """Refuse the closure while the customer holds a card or tag that is issued, active or lost."""
    chips = [
        chip for chip in await store.chips_of_customer(unit.conn, customer_id) if chip.status in STILL_OPEN
    ]
    if not chips:
        return None
    return ClosureRefusal(
        "issuance_chips_live",
        "客户名下仍有在用或挂失未注销的ETC卡或电子标签，请先办理注销",
        "the customer still holds ETC cards or tags in use or reported lost: cancel them first",
        {
            "chips": [
                {"kind": chip.kind.value, "number": chip.number, "status": chip.status.value}
                for chip in chips
            ]
        },
    )
