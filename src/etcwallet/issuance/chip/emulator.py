"""What the emulated user card and the emulated OBU share: tears on demand and the emulated reader.

An emulated chip answers APDU bytes with response bytes (:meth:`EmulatedChip.transmit`). A test or the
console can ask it to leave the reader after a given command (:meth:`EmulatedChip.tear_after`,
:meth:`EmulatedChip.tear_on`); as on a real card, that command may or may not have taken effect (the
``applied`` switch), and the reader raises :class:`~etcwallet.issuance.chip.reader.CardRemoved` instead of
answering. :class:`EmulatedReader` is the default backend of the
:class:`~etcwallet.issuance.chip.reader.Reader` protocol: a chip is inserted (as an object, or by its number
from the sources the reader was given, such as a :class:`ChipStore`) and removed. Chips persist as JSON
files in the store's directory; the emulator never touches the platform's database.
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

from etcwallet.issuance.chip.reader import CardRemoved, ReaderError


class ChipTorn(Exception):
    """Raised by :meth:`EmulatedChip.transmit` when the chip left the field during the command."""


@dataclass(frozen=True)
class TearFault:
    """A tear waiting to happen: after ``after`` more commands, or on the next command with ``ins``."""

    after: int | None
    ins: int | None
    applied: bool


class EmulatedChip(ABC):
    """A chip that answers APDUs; subclasses keep the state, this class runs the faults around them.

    Subclasses implement :meth:`process` (one command, answered as bytes), :meth:`snapshot` and
    :meth:`restore` (so a torn command can be undone), :meth:`power_up` and :meth:`power_down` (what a
    chip forgets when it loses power: selection, challenge, PIN status, open session), and
    :meth:`to_state` / :meth:`from_state` (what the :class:`ChipStore` keeps).
    """

    kind: ClassVar[str]
    """What the chip is (``card`` or ``tag``): the :class:`ChipStore` loads it by this name."""

    store: ChipStore | None = None
    """Where the chip saves itself after each command; ``None`` keeps it in memory only."""

    def __init__(self) -> None:
        self._tear: TearFault | None = None
        self._counted = 0

    @property
    @abstractmethod
    def number(self) -> str:
        """The chip's number: the 20-digit card number or the 16-digit OBU number."""

    @abstractmethod
    def to_state(self) -> dict[str, Any]:
        """The persistent state as JSON-ready data (bytes as hex); volatile state (selection,
        challenge, open session) is not part of it."""

    @classmethod
    @abstractmethod
    def from_state(cls, state: dict[str, Any]) -> Self:
        """A chip from what :meth:`to_state` gave, powered down."""

    # --- faults ---------------------------------------------------------------------------------------

    def tear_after(self, commands: int, *, applied: bool = True) -> None:
        """Leave the reader right after the ``commands``-th command from now (1: the next one); that command
        takes effect when ``applied`` and not otherwise, and its answer is lost either way."""
        if commands < 1:
            raise ValueError("a tear comes after at least one command")
        self._tear = TearFault(after=commands, ins=None, applied=applied)
        self._counted = 0

    def tear_on(self, ins: int, *, applied: bool = True) -> None:
        """Leave the reader during the next command whose instruction byte is ``ins`` (e.g. ``0x52``, CREDIT
        FOR LOAD); the command takes effect when ``applied``, and its answer is lost either way."""
        if not 0 <= ins <= 0xFF:
            raise ValueError("an instruction is one byte")
        self._tear = TearFault(after=None, ins=ins, applied=applied)

    def clear_faults(self) -> None:
        """No tear pending any more."""
        self._tear = None

    def _tear_due(self, apdu: bytes) -> TearFault | None:
        tear = self._tear
        if tear is None:
            return None
        if tear.after is not None:
            self._counted += 1
            due = self._counted >= tear.after
        else:
            due = len(apdu) >= 2 and apdu[1] == tear.ins
        if due:
            self._tear = None
            return tear
        return None

    # --- the exchange ---------------------------------------------------------------------------------

    def transmit(self, apdu: bytes) -> bytes:
        """Answer one command APDU; raises :class:`ChipTorn` when a planned tear happens on it."""
        apdu = bytes(apdu)
        tear = self._tear_due(apdu)
        if tear is None:
            answer = self.process(apdu)
            self.save()
            return answer
        before = self.snapshot()
        self.process(apdu)
        if not tear.applied:
            self.restore(before)
        self.power_down()
        self.save()
        raise ChipTorn(self.number)

    @abstractmethod
    def process(self, apdu: bytes) -> bytes:
        """The chip's answer (data ‖ SW1 SW2) to one command, changing its state as the command says."""

    @abstractmethod
    def snapshot(self) -> object:
        """A copy of the whole state, to undo a torn command that did not take effect."""

    @abstractmethod
    def restore(self, snapshot: object) -> None:
        """Put back a state :meth:`snapshot` made."""

    @abstractmethod
    def power_up(self) -> None:
        """The chip enters a field: it starts with nothing selected and no session open."""

    @abstractmethod
    def power_down(self) -> None:
        """The chip leaves the field: it forgets its selection, challenge, PIN status and open session."""

    def save(self) -> None:
        """Persist the state through the store (nothing for a chip without one)."""
        if self.store is not None:
            self.store.save(self)


class ChipStore:
    """Emulated chips kept as JSON files, one per chip, in a directory (``<data_dir>/chips`` by default), so
    a card issued today is the same card tomorrow. The files hold each chip's keys, as the chip does: they
    are the emulator's secret data, never the platform's.

    Chip classes register their ``kind`` (``card``, ``tag``) with :meth:`register`; a chip loaded or added
    here saves itself back after every command.
    """

    def __init__(self, directory: Path, kinds: Iterable[type[EmulatedChip]] = ()) -> None:
        self._directory = directory
        self._kinds: dict[str, type[EmulatedChip]] = {}
        self._open: dict[str, EmulatedChip] = {}
        for kind in kinds:
            self.register(kind)

    def register(self, kind: type[EmulatedChip]) -> None:
        """Let the store load chips of this class (by its ``kind``)."""
        self._kinds[kind.kind] = kind

    def _path(self, number: str) -> Path:
        if not number.isdigit():
            raise ValueError("a chip number is digits")
        return self._directory / f"{number}.json"

    def add(self, chip: EmulatedChip) -> None:
        """Keep a new chip (a blank from the factory); a chip with the same number is replaced."""
        chip.store = self
        self._open[chip.number] = chip
        self.save(chip)

    def save(self, chip: EmulatedChip) -> None:
        """Write the chip's state, atomically (a crash leaves the old file or the new one, never half)."""
        self._directory.mkdir(parents=True, exist_ok=True)
        path = self._path(chip.number)
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps({"kind": chip.kind, "state": chip.to_state()}, sort_keys=True))
        os.replace(temporary, path)

    def get(self, number: str) -> EmulatedChip | None:
        """The chip with this number, or ``None``; the same object while this store lives."""
        if number in self._open:
            return self._open[number]
        try:
            path = self._path(number)
            stored = json.loads(path.read_text())
        except (FileNotFoundError, ValueError):
            return None
        kind = self._kinds.get(stored.get("kind"))
        if kind is None:
            return None
        chip = kind.from_state(stored["state"])
        chip.store = self
        self._open[number] = chip
        return chip

    def numbers(self) -> list[str]:
        """The numbers of every chip kept here, sorted."""
        if not self._directory.exists():
            return []
        return sorted(path.stem for path in self._directory.glob("*.json"))


ChipSource = Callable[[str], EmulatedChip | None]
"""Finds a chip by its number (card number or OBU number), or ``None`` when it holds no such chip."""


class EmulatedReader:
    """The emulator backend of :class:`~etcwallet.issuance.chip.reader.Reader`: a card slot or a DSRC field.

    Chips come in as objects or by number from ``sources`` (e.g. ``ChipStore.get``). :meth:`insert` puts a
    chip in alone (the one there before is taken out, as in a card slot); :meth:`enter` adds one beside the
    others (a second tag in the OBU field). With several chips in the field the newest to enter answers
    (it sits nearest the antenna). A torn chip leaves the field.
    """

    def __init__(self, *sources: ChipSource) -> None:
        self._sources = sources
        self._chips: list[EmulatedChip] = []

    @property
    def chip(self) -> EmulatedChip | None:
        """The chip that answers the next command, if any."""
        return self._chips[-1] if self._chips else None

    @property
    def chips(self) -> tuple[EmulatedChip, ...]:
        """Every chip in the field, oldest first."""
        return tuple(self._chips)

    def _find(self, chip: EmulatedChip | str) -> EmulatedChip:
        if not isinstance(chip, str):
            return chip
        found = next((c for c in (source(chip) for source in self._sources) if c is not None), None)
        if found is None:
            raise ReaderError(
                "chip_not_found",
                f"没有编号为 {chip} 的卡片或标签",
                f"there is no card or tag numbered {chip}",
            )
        return found

    def insert(self, chip: EmulatedChip | str) -> EmulatedChip:
        """Put a chip in the field alone (a number is looked up in the sources) and power it up."""
        found = self._find(chip)
        self.remove()
        return self.enter(found)

    def enter(self, chip: EmulatedChip | str) -> EmulatedChip:
        """Bring a chip into the field beside those there; it answers from now on."""
        found = self._find(chip)
        if all(found is not present for present in self._chips):
            found.power_up()
            self._chips.append(found)
        return found

    def take_out(self, chip: EmulatedChip) -> None:
        """Take one chip out of the field (it powers down and keeps its state)."""
        if any(chip is present for present in self._chips):
            self._chips = [present for present in self._chips if present is not chip]
            chip.power_down()
            chip.save()

    def remove(self) -> None:
        """Empty the field."""
        for chip in list(self._chips):
            self.take_out(chip)

    async def transmit(self, apdu: bytes) -> bytes:
        """Send a command to the answering chip; :class:`CardRemoved` when there is none or it tears."""
        chip = self.chip
        if chip is None:
            raise CardRemoved()
        try:
            return chip.transmit(apdu)
        except ChipTorn:
            self._chips = [present for present in self._chips if present is not chip]
            raise CardRemoved() from None

    async def present(self) -> bool:
        """Whether a chip is in the field."""
        return bool(self._chips)


__all__ = ["ChipSource", "ChipStore", "ChipTorn", "EmulatedChip", "EmulatedReader", "TearFault"]
