"""What issuance needs of the running process: the issuer's identity, its key service and the desks.

Built once at start-up from the settings (:func:`issuance_context_from`) and held by the runtime; the
issuance services take it as an argument, so a test builds one over its own chip store.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Annotated

from fastapi import Depends, Request

from etcwallet.core.config import Settings
from etcwallet.issuance.chip.desk import Desks, EmulatedDesks, PcscDesks
from etcwallet.issuance.chip.factory import EmulatedFactory, chip_store
from etcwallet.issuance.chip.files import IssuerId
from etcwallet.issuance.chip.keys import KeyService, issuer_keys_from
from etcwallet.issuance.errors import IssuanceError

CHIPS_DIRECTORY = "chips"


@dataclass(frozen=True)
class Issuer:
    """The card issuer: its identifier (on every card and tag), network number and card validity."""

    id: IssuerId
    validity_years: int = 10

    @property
    def network(self) -> str:
        """The card network number (4 digits: province code + 01) every card and OBU number starts with."""
        return self.id.code[:4]

    def expiry_from(self, start: date) -> date:
        """The day a card issued or renewed on ``start`` stops being valid (29 February → 28 February)."""
        year = start.year + self.validity_years
        try:
            return start.replace(year=year)
        except ValueError:
            return start.replace(year=year, day=28)


@dataclass
class IssuanceContext:
    """The issuer, its key service and the operators' desks (card slot and tag antenna)."""

    issuer: Issuer
    keys: KeyService
    desks: Desks
    factory: EmulatedFactory | None = None
    """Makes blank emulated chips as stock arrives (emulated chips only)."""

    @property
    def emulated(self) -> EmulatedDesks | None:
        """The emulated desks, when chips are emulated (their store is where blank stock is made)."""
        return self.desks if isinstance(self.desks, EmulatedDesks) else None


def get_issuance(request: Request) -> IssuanceContext:
    """The running service's issuance context, for a route (as ``SmsDep`` is identity's): a route asks for
    it rather than reaching into the application's state."""
    context: IssuanceContext | None = request.app.state.runtime.issuance
    if context is None:
        raise IssuanceError("reader_unavailable", text={"reason_zh": "未配置", "reason_en": "not configured"})
    return context


IssuanceDep = Annotated[IssuanceContext, Depends(get_issuance)]


def issuer_from(settings: Settings) -> Issuer:
    """The issuer the settings name (``ETCW_ISSUER_NAME``, ``ETCW_ISSUER_CODE``)."""
    return Issuer(IssuerId(settings.issuer_name, settings.issuer_code), settings.card_validity_years)


def issuance_context_from(settings: Settings, keys: KeyService) -> IssuanceContext:
    """The context of a running service: emulated chips in ``<data_dir>/chips`` (made by the emulated
    factory from the issuer master keys), or PC/SC readers."""
    issuer = issuer_from(settings)
    if settings.chip_reader == "pcsc":
        desks = PcscDesks(settings.pcsc_card_reader, settings.pcsc_tag_reader)
        return IssuanceContext(issuer=issuer, keys=keys, desks=desks)
    store = chip_store(settings.data_dir / CHIPS_DIRECTORY)
    factory = EmulatedFactory(store, issuer.id, issuer_keys_from(settings))
    return IssuanceContext(issuer=issuer, keys=keys, desks=EmulatedDesks(store), factory=factory)
