"""The card and tag factory of the emulator: blank chips made into the chip store as stock arrives.

A real issuer receives cards already personalised at the factory (一发: issuer, card type, number, keys
diversified from the issuer master keys) and tags with their OBU number set. With emulated chips, this
factory plays that part: it holds the issuer master keys (as a factory's personalisation machine does)
and makes each blank chip a stock batch names. A number already in the store is left as it is, so making
a batch again after a crash changes no chip that was issued in between.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

from etcwallet.issuance.chip.card_emulator import UserCardEmulator
from etcwallet.issuance.chip.emulator import ChipStore
from etcwallet.issuance.chip.files import IssuerId, ObuNumber
from etcwallet.issuance.chip.keys import IssuerMasterKeys
from etcwallet.issuance.chip.obu_emulator import ObuEmulator
from etcwallet.issuance.codes import CardType


def chip_store(directory: Path) -> ChipStore:
    """A chip store that loads emulated user cards and OBU tags."""
    return ChipStore(directory, [UserCardEmulator, ObuEmulator])


class EmulatedFactory:
    """Makes blank emulated cards and tags of one issuer into a chip store."""

    def __init__(self, store: ChipStore, issuer: IssuerId, master: IssuerMasterKeys) -> None:
        self._store, self._issuer, self._master = store, issuer, master

    def __repr__(self) -> str:  # never show key material
        return f"EmulatedFactory(issuer={self._issuer.code})"

    def make_blanks(
        self,
        kind: Literal["card", "tag"],
        numbers: Sequence[str],
        *,
        card_type: CardType | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Make the blank chips not yet in the store; answers how many were made."""
        made = 0
        for done, number in enumerate(numbers, 1):
            if self._store.get(number) is None:
                self._store.add(self._blank(kind, number, card_type))
                made += 1
            if progress is not None and done % 200 == 0:
                progress(done)
        if progress is not None:
            progress(len(numbers))
        return made

    def _blank(self, kind: str, number: str, card_type: CardType | None) -> UserCardEmulator | ObuEmulator:
        if kind == "card":
            if card_type is None:
                raise ValueError("a card is made with its card type")
            return UserCardEmulator.manufacture(number, card_type, self._issuer, self._master)
        return ObuEmulator.manufacture(ObuNumber.parse(number), issuer=self._issuer, master=self._master)
