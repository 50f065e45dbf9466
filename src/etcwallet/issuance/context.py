"""What issuance needs of the running process: the issuer's identity, its key service and the desks.

Built once at start-up from the settings (:func:`issuance_context_from`) and held by the runtime; the
issuance services take it as an argument, so a test builds one over its own chip store.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from etcwallet.core.config import Settings
from etcwallet.issuance.chip.desk import Desks, EmulatedDesks, PcscDesks
from etcwallet.issuance.chip.emulator import ChipStore
from etcwallet.issuance.chip.files import IssuerId
from etcwallet.issuance.chip.keys import KeyService

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

    @property
    def emulated(self) -> EmulatedDesks | None:
        """The emulated desks, when chips are emulated (their store is where blank stock is made)."""
        return self.desks if isinstance(self.desks, EmulatedDesks) else None


def issuer_from(settings: Settings) -> Issuer:
    """The issuer the settings name (``ETCW_ISSUER_NAME``, ``ETCW_ISSUER_CODE``)."""
    return Issuer(IssuerId(settings.issuer_name, settings.issuer_code), settings.card_validity_years)


def issuance_context_from(settings: Settings, keys: KeyService) -> IssuanceContext:
    """The context of a running service: emulated chips in ``<data_dir>/chips``, or PC/SC readers."""
    desks: Desks
    if settings.chip_reader == "pcsc":
        desks = PcscDesks(settings.pcsc_card_reader, settings.pcsc_tag_reader)
    else:
        desks = EmulatedDesks(ChipStore(settings.data_dir / CHIPS_DIRECTORY))
    return IssuanceContext(issuer=issuer_from(settings), keys=keys, desks=desks)
