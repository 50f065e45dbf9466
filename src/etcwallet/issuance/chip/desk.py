"""An operator's desk: the card slot and the OBU antenna their issuance steps talk through.

Seed 001's operator holds a handset with a card slot on its back and a DSRC antenna for tags. Each
operator (by staff id) has a :class:`Desk` of two :class:`~etcwallet.issuance.chip.reader.Reader`: with the
emulator (the default) each is an :class:`~etcwallet.issuance.chip.emulator.EmulatedReader` over the
:class:`~etcwallet.issuance.chip.emulator.ChipStore` in ``<data_dir>/chips``, and a card or tag is put in by
number, as a person takes one from the drawer; with PC/SC they are the readers attached to this machine.
The issuance services see only the two readers and never know which backend carries the APDUs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol
from uuid import UUID

from etcwallet.issuance.chip.emulator import ChipStore, EmulatedReader
from etcwallet.issuance.chip.reader import PcscReader, Reader


@dataclass(frozen=True)
class Desk:
    """One operator's readers: ``card`` (the slot for user cards) and ``tag`` (the OBU antenna)."""

    card: Reader
    tag: Reader


class Desks(Protocol):
    """Finds the desk of an operator."""

    def desk(self, operator_id: UUID) -> Desk:
        """The operator's readers (the same ones on every call while the process lives)."""
        ...


class EmulatedDesks:
    """Every operator's desk over emulated chips: a card slot and an antenna per operator, in memory; the
    chips themselves persist in the store."""

    def __init__(self, store: ChipStore) -> None:
        self.store = store
        self._desks: dict[UUID, tuple[EmulatedReader, EmulatedReader]] = {}

    def readers(self, operator_id: UUID) -> tuple[EmulatedReader, EmulatedReader]:
        """The operator's emulated card slot and tag antenna, made on first use."""
        if operator_id not in self._desks:
            self._desks[operator_id] = (EmulatedReader(self.store.get), EmulatedReader(self.store.get))
        return self._desks[operator_id]

    def desk(self, operator_id: UUID) -> Desk:
        card, tag = self.readers(operator_id)
        return Desk(card=card, tag=tag)


class PcscDesks:
    """The desk of a machine with real PC/SC readers: every operator on it shares the two readers."""

    def __init__(self, card_reader: str | None, tag_reader: str | None) -> None:
        self._card_name, self._tag_name = card_reader, tag_reader
        self._desk: Desk | None = None

    def desk(self, operator_id: UUID) -> Desk:
        if self._desk is None:
            self._desk = Desk(card=PcscReader(self._card_name), tag=PcscReader(self._tag_name))
        return self._desk
