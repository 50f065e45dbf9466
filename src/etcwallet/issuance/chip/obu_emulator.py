"""A virtual OBU (its ESAM) answering APDUs byte for byte as spec §8 says, and an emulated field to hold it.

Issuance and its tests talk to tags through the :class:`~etcwallet.issuance.chip.reader.Reader` protocol;
:class:`ObuField` is that reader for emulated tags, so the host code cannot tell it from a real one. The
tag's state (:class:`ObuState`) is plain data that persists as JSON.

The command set (what the spec fixes, and what we chose where it is silent, marked **[?]**):

- ``00 A4 00 00 02`` + ``3F00`` (MF), ``DF01`` (the vehicle application) or ``EF01`` (the current
  directory's information file, which P1 ``00`` then addresses). Anything else: ``6A82``.
- ``00 84 00 00 04`` GET CHALLENGE: 4 random bytes, kept for one use. Any secured write or encrypted read
  that passes the length and file checks spends it, whatever its outcome; leaving the field forgets it.
- ``00 B0 81 <offset> <Le>`` READ BINARY of EF01 by its short identifier (or P1 ``00``: the selected EF).
  In the MF it is the system information file (99 bytes), plain. In DF01 it is the vehicle file, which is
  "readable only encrypted": the answer is always the 79 bytes padded ``80`` and encrypted 3DES-ECB under
  ``crypto.challenge_session_key(maintenance key, challenge)`` (80 bytes; offset 0, Le ``50``) and it
  needs a fresh challenge (``6985`` without) **[?]**.
- ``04 D6 81 <offset> <Lc>`` + data + MAC(4): UPDATE BINARY with the line-protection MAC (spec §11) under
  the OBU's maintenance key, IV = challenge ‖ ``00000000``, over the header, Lc and the data. The spec's
  two writes are ``04 D6 81 12 0D`` (dates and tamper byte, 9 bytes) and ``04 D6 81 1A 05`` (tamper byte);
  issuance writes the whole system file as ``04 D6 81 00 67`` + 99 bytes + MAC and the vehicle file (in
  DF01) as ``04 D6 81 00 53`` + 79 bytes + MAC **[?: the spec's pattern generalised]**. The ESAM does not
  read what it stores: any bytes inside the file go.

Refusals, checked in this order: ``6E00`` an unknown class, ``6D00`` an unknown instruction, ``6700`` a
length that does not fit (also a malformed APDU), ``6A86`` a P1/P2 the command does not take, ``6A82``
no such file, ``6982`` a plain write (the files take only secured writes), then for a secured write
``6985`` no challenge, ``9302`` a wrong MAC, ``6581`` a damaged tag, ``6982`` a write that would leave the
tamper byte non-zero while the tamper switch is released **[?: our choice; the spec says only that a
removed tag must be activated again once on the car]**. A refused write changes nothing but the spent
challenge.

The OBU's maintenance key is the issuer maintenance master key diversified the way the key service
diversifies a card's (``keys.derive_card_key``: by the issuer factor, then by the OBU number's 8 BCD bytes
in place of the card's application serial), so the host reaches it through
``KeyService.line_protection_mac`` with ``obu_host.obu_identity(issuer, obu_number)``.

A blank tag (in stock) knows its OBU number, printed on it and set at manufacture: its system file is
zeros but for the contract serial (bytes 10..17) **[?]**, so the first read already tells which tag it is.

Faults on demand: :meth:`ObuEmulator.arm_tear` (the tag leaves the field at a chosen command, which takes
effect or not), :meth:`ObuEmulator.damage` (writes answer ``6581``, nothing changes), and an
:class:`ObuField` holding two tags, where the newest to enter answers first.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from etcwallet.issuance.chip import crypto
from etcwallet.issuance.chip.apdu import Command, Response, StatusWord
from etcwallet.issuance.chip.encoding import InvalidField
from etcwallet.issuance.chip.files import (
    TAMPER_OFFSET,
    IssuerId,
    ObuNumber,
    ObuSystemFile,
    ObuVehicleFile,
    TamperStatus,
)
from etcwallet.issuance.chip.keys import CardIdentity, IssuerMasterKeys, derive_card_key
from etcwallet.issuance.chip.reader import CardRemoved

MF = bytes.fromhex("3F00")
OBU_DF = bytes.fromhex("DF01")
INFORMATION_EF = bytes.fromhex("EF01")
INFORMATION_SFI = 0x01
SERIAL_OFFSET = 10
SERIAL_SIZE = 8
CHALLENGE_SIZE = 4
MAC_SIZE = 4
VEHICLE_CIPHERTEXT_SIZE = 80  # 79 bytes + the 80 padding byte


class TamperSwitch(StrEnum):
    """The physical anti-tamper switch on the back of the tag: pressed while the tag sits on the windscreen."""

    PRESSED = "pressed"
    RELEASED = "released"


def blank_system_file(obu_number: ObuNumber) -> bytes:
    """A tag's system file before issuance: zeros but for the contract serial set at manufacture **[?]**."""
    raw = bytearray(ObuSystemFile.SIZE)
    raw[SERIAL_OFFSET : SERIAL_OFFSET + SERIAL_SIZE] = obu_number.to_bytes()
    return bytes(raw)


def obu_maintenance_key(master: IssuerMasterKeys, issuer: IssuerId, obu_number: ObuNumber) -> bytes:
    """The tag's maintenance key: the issuer's maintenance master key diversified by the issuer factor, then
    by the OBU number (``keys.derive_card_key``), as the key service computes it for the host."""
    return derive_card_key(master.maintenance, CardIdentity(issuer.to_bytes(), obu_number.to_bytes()))


@dataclass
class ObuState:
    """Everything a tag remembers, as plain data: its files (raw bytes, as the ESAM stores them), its key,
    the challenge it last gave (one use), its tamper switch and whether it is damaged."""

    maintenance_key: bytes
    system_file: bytes
    vehicle_file: bytes = bytes(ObuVehicleFile.SIZE)
    switch: TamperSwitch = TamperSwitch.RELEASED
    challenge: bytes | None = None
    damaged: bool = False

    def __post_init__(self) -> None:
        if len(self.maintenance_key) != 16:
            raise ValueError("an OBU's maintenance key is 16 bytes")
        if len(self.system_file) != ObuSystemFile.SIZE or len(self.vehicle_file) != ObuVehicleFile.SIZE:
            raise ValueError("an OBU's system file is 99 bytes and its vehicle file 79")
        if self.challenge is not None and len(self.challenge) != CHALLENGE_SIZE:
            raise ValueError("a challenge is 4 bytes")

    @classmethod
    def blank(cls, obu_number: ObuNumber, maintenance_key: bytes) -> ObuState:
        """A tag as it leaves the factory: nothing issued, the switch released."""
        return cls(maintenance_key=maintenance_key, system_file=blank_system_file(obu_number))

    @property
    def obu_number(self) -> ObuNumber:
        return ObuNumber.from_bytes(self.system_file[SERIAL_OFFSET : SERIAL_OFFSET + SERIAL_SIZE])

    @property
    def tamper(self) -> int:
        return self.system_file[TAMPER_OFFSET]

    def to_json(self) -> str:
        """The state as JSON (bytes in hex). It holds the tag's key: store it as the emulator's secret data."""
        return json.dumps(
            {
                "maintenance_key": self.maintenance_key.hex().upper(),
                "system_file": self.system_file.hex().upper(),
                "vehicle_file": self.vehicle_file.hex().upper(),
                "switch": str(self.switch),
                "challenge": self.challenge.hex().upper() if self.challenge is not None else None,
                "damaged": self.damaged,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> ObuState:
        """The state :meth:`to_json` wrote."""
        data: dict[str, Any] = json.loads(text)
        challenge = data.get("challenge")
        return cls(
            maintenance_key=bytes.fromhex(data["maintenance_key"]),
            system_file=bytes.fromhex(data["system_file"]),
            vehicle_file=bytes.fromhex(data["vehicle_file"]),
            switch=TamperSwitch(data["switch"]),
            challenge=bytes.fromhex(challenge) if challenge is not None else None,
            damaged=bool(data["damaged"]),
        )


@dataclass
class TearFault:
    """A tear armed on a tag: at the ``countdown``-th command from now the tag leaves the field, after the
    command took effect (``applied``) or before it did. The host sees :class:`CardRemoved` either way."""

    countdown: int
    applied: bool


class _Refused(Exception):
    def __init__(self, sw: StatusWord) -> None:
        super().__init__(sw.name)
        self.sw = sw


class ObuEmulator:
    """One virtual tag: ``process`` takes a command APDU and returns the response APDU, as the ESAM would.

    ``random`` makes challenges (``os.urandom`` unless a test fixes them). The selected directory and file
    are volatile: leaving the field resets them to the MF and forgets the challenge.
    """

    def __init__(self, state: ObuState, *, random: Callable[[int], bytes] = os.urandom) -> None:
        self.state = state
        self._random = random
        self._directory = MF
        self._current_ef = False
        self._tear: TearFault | None = None

    @classmethod
    def manufacture(
        cls,
        obu_number: ObuNumber,
        *,
        issuer: IssuerId,
        master: IssuerMasterKeys,
        random: Callable[[int], bytes] = os.urandom,
    ) -> ObuEmulator:
        """A blank tag of this issuer, keyed as the issuer's key service expects."""
        return cls(ObuState.blank(obu_number, obu_maintenance_key(master, issuer, obu_number)), random=random)

    @property
    def obu_number(self) -> ObuNumber:
        return self.state.obu_number

    # --- the physical world ----------------------------------------------------------------------------

    def press_switch(self) -> None:
        """The tag is put on the windscreen: the switch is pressed (the tamper byte waits for activation)."""
        self.state.switch = TamperSwitch.PRESSED

    def release_switch(self) -> None:
        """The tag is taken off the windscreen: the switch opens and the ESAM marks itself removed (00)."""
        self.state.switch = TamperSwitch.RELEASED
        raw = bytearray(self.state.system_file)
        raw[TAMPER_OFFSET] = TamperStatus.REMOVED
        self.state.system_file = bytes(raw)

    def damage(self) -> None:
        """From now on every write answers ``6581`` (memory failure) and changes nothing; reads still work."""
        self.state.damaged = True

    def arm_tear(self, *, after: int = 1, applied: bool) -> None:
        """Tear at the ``after``-th command from now (1: the next one), applied or not."""
        if after < 1:
            raise ValueError("a tear comes at the next command (1) or later")
        self._tear = TearFault(after, applied)

    def power_off(self) -> None:
        """The tag left the field: volatile state (selection, challenge) is gone."""
        self._directory = MF
        self._current_ef = False
        self.state.challenge = None

    # --- the APDU interface ----------------------------------------------------------------------------

    def process(self, apdu: bytes) -> bytes:
        """The response APDU to ``apdu``; raises :class:`CardRemoved` when an armed tear strikes."""
        tear = self._tear
        if tear is not None:
            tear.countdown -= 1
            if tear.countdown == 0:
                self._tear = None
                if tear.applied:
                    self._respond(apdu)
                self.power_off()
                raise CardRemoved(
                    "标签已离开读写区域，请重新放置后再试",
                    "the tag left the field; put it back and try again",
                )
        return self._respond(apdu).to_bytes()

    def _respond(self, apdu: bytes) -> Response:
        try:
            command = Command.parse(apdu)
        except InvalidField:
            return Response.status(StatusWord.WRONG_LENGTH)
        try:
            return self._dispatch(command)
        except _Refused as refusal:
            return Response.status(refusal.sw)

    def _dispatch(self, command: Command) -> Response:
        handlers = {
            (0x00, 0xA4): self._select,
            (0x00, 0x84): self._get_challenge,
            (0x00, 0xB0): self._read_binary,
            (0x04, 0xD6): self._secured_update,
            (0x00, 0xD6): self._plain_update,
        }
        handler = handlers.get((command.cla, command.ins))
        if handler is None:
            known = {ins for _, ins in handlers}
            if command.ins not in known:
                raise _Refused(StatusWord.INSTRUCTION_NOT_SUPPORTED)
            raise _Refused(StatusWord.CLASS_NOT_SUPPORTED)
        return handler(command)

    def _select(self, command: Command) -> Response:
        if len(command.data) != 2:
            raise _Refused(StatusWord.WRONG_LENGTH)
        if (command.p1, command.p2) != (0x00, 0x00):
            raise _Refused(StatusWord.WRONG_P1P2)
        if command.data in (MF, OBU_DF):
            self._directory, self._current_ef = command.data, False
        elif command.data == INFORMATION_EF:
            self._current_ef = True
        else:
            raise _Refused(StatusWord.FILE_NOT_FOUND)
        return Response(b"", StatusWord.OK)

    def _get_challenge(self, command: Command) -> Response:
        if command.data or command.le != CHALLENGE_SIZE:
            raise _Refused(StatusWord.WRONG_LENGTH)
        if (command.p1, command.p2) != (0x00, 0x00):
            raise _Refused(StatusWord.WRONG_P1P2)
        challenge = self._random(CHALLENGE_SIZE)
        self.state.challenge = challenge
        return Response(challenge, StatusWord.OK)

    def _take_challenge(self) -> bytes:
        challenge, self.state.challenge = self.state.challenge, None
        if challenge is None:
            raise _Refused(StatusWord.CONDITIONS_NOT_SATISFIED)
        return challenge

    def _target(self, command: Command) -> str:
        """Which file P1 names in the selected directory: ``system`` or ``vehicle``."""
        if command.p1 == 0x80 | INFORMATION_SFI or (command.p1 == 0x00 and self._current_ef):
            return "system" if self._directory == MF else "vehicle"
        if command.p1 & 0x80 or command.p1 == 0x00:
            raise _Refused(StatusWord.FILE_NOT_FOUND)
        raise _Refused(StatusWord.WRONG_P1P2)

    def _read_binary(self, command: Command) -> Response:
        if command.data or command.le is None:
            raise _Refused(StatusWord.WRONG_LENGTH)
        target = self._target(command)
        if target == "system":
            end = command.p2 + command.le
            if end > ObuSystemFile.SIZE:
                raise _Refused(StatusWord.WRONG_LENGTH)
            return Response(self.state.system_file[command.p2 : end], StatusWord.OK)
        if command.p2 != 0 or command.le != VEHICLE_CIPHERTEXT_SIZE:
            raise _Refused(StatusWord.WRONG_LENGTH)
        key = crypto.challenge_session_key(self.state.maintenance_key, self._take_challenge())
        return Response(crypto.encrypt_padded(key, self.state.vehicle_file), StatusWord.OK)

    def _plain_update(self, command: Command) -> Response:
        self._target(command)
        raise _Refused(StatusWord.SECURITY_STATUS_NOT_SATISFIED)

    def _secured_update(self, command: Command) -> Response:
        if len(command.data) <= MAC_SIZE or command.le is not None:
            raise _Refused(StatusWord.WRONG_LENGTH)
        target = self._target(command)
        content, mac = command.data[:-MAC_SIZE], command.data[-MAC_SIZE:]
        current = self.state.system_file if target == "system" else self.state.vehicle_file
        offset = command.p2
        if offset + len(content) > len(current):
            raise _Refused(StatusWord.WRONG_LENGTH)
        challenge = self._take_challenge()
        header = bytes((command.cla, command.ins, command.p1, command.p2, len(command.data)))
        expected = crypto.line_protection_mac(self.state.maintenance_key, challenge, header + content)
        if not crypto.macs_equal(expected, mac):
            raise _Refused(StatusWord.MAC_INVALID)
        if self.state.damaged:
            raise _Refused(StatusWord.MEMORY_FAILURE)
        updated = current[:offset] + content + current[offset + len(content) :]
        if target == "system":
            if updated[TAMPER_OFFSET] != TamperStatus.REMOVED and self.state.switch is TamperSwitch.RELEASED:
                raise _Refused(StatusWord.SECURITY_STATUS_NOT_SATISFIED)
            self.state.system_file = updated
        else:
            self.state.vehicle_file = updated
        return Response(b"", StatusWord.OK)


class ObuField:
    """The emulated reader for tags: a DSRC field holding zero, one or more :class:`ObuEmulator`.

    With more than one tag in the field, the tag that answers first answers every command: by default the
    newest to enter (it sits nearer the antenna), or the one :meth:`answer_first` names. No tag: every
    command raises :class:`CardRemoved`, and a torn tag leaves the field until it is put back.
    """

    def __init__(self, *tags: ObuEmulator) -> None:
        self._tags: list[ObuEmulator] = []
        self._first: ObuEmulator | None = None
        for tag in tags:
            self.enter(tag)

    @property
    def tags(self) -> tuple[ObuEmulator, ...]:
        return tuple(self._tags)

    def enter(self, tag: ObuEmulator) -> None:
        """Put a tag into the field (a tag already there stays where it is)."""
        if all(tag is not present for present in self._tags):
            self._tags.append(tag)

    def leave(self, tag: ObuEmulator) -> None:
        """Take a tag out of the field; it loses power (selection and challenge)."""
        self._tags = [present for present in self._tags if present is not tag]
        if self._first is tag:
            self._first = None
        tag.power_off()

    def answer_first(self, tag: ObuEmulator) -> None:
        """Make ``tag`` (already in the field) the one that answers."""
        if all(tag is not present for present in self._tags):
            raise ValueError("that tag is not in the field")
        self._first = tag

    @property
    def answering(self) -> ObuEmulator | None:
        """The tag that answers the next command, if any."""
        if self._first is not None:
            return self._first
        return self._tags[-1] if self._tags else None

    async def transmit(self, apdu: bytes) -> bytes:
        """Send a command APDU to the tag that answers first; a tear takes that tag out of the field."""
        tag = self.answering
        if tag is None:
            raise CardRemoved("读写区域内没有标签", "no tag in the field")
        try:
            return tag.process(bytes(apdu))
        except CardRemoved:
            self.leave(tag)
            raise

    async def present(self) -> bool:
        return bool(self._tags)


__all__ = [
    "INFORMATION_EF",
    "MF",
    "OBU_DF",
    "VEHICLE_CIPHERTEXT_SIZE",
    "ObuEmulator",
    "ObuField",
    "ObuState",
    "TamperSwitch",
    "TearFault",
    "blank_system_file",
    "obu_maintenance_key",
]
