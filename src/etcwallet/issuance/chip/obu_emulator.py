"""A virtual OBU (its ESAM) answering APDUs byte for byte as spec §8 says.

Issuance and its tests talk to tags through the :class:`~etcwallet.issuance.chip.reader.Reader` protocol;
:class:`ObuEmulator` is an :class:`~etcwallet.issuance.chip.emulator.EmulatedChip` of kind ``tag``, held by
an :class:`~etcwallet.issuance.chip.emulator.EmulatedReader` (the DSRC field), so the host code cannot tell
it from a real one. The tag's persistent state (:class:`ObuState`) is plain data kept as JSON in a
:class:`~etcwallet.issuance.chip.emulator.ChipStore`; its selection and challenge are volatile.

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

Refusals, checked in this order: ``6E00`` a class the tag does not speak (neither ``00`` nor ``04``, or
the wrong one of them for the instruction), ``6D00`` an unknown instruction, ``6700`` a
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

Faults on demand: the base's ``tear_after`` / ``tear_on`` (the tag leaves the field at a chosen command,
which takes effect or not), :meth:`ObuEmulator.damage` (writes answer ``6581``, nothing changes), and a
second tag brought into the field with ``EmulatedReader.enter`` (the newest to enter answers).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, ClassVar, Self

from etcwallet.issuance.chip import crypto
from etcwallet.issuance.chip.apdu import Command, Response, StatusWord
from etcwallet.issuance.chip.emulator import EmulatedChip
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

MF = bytes.fromhex("3F00")
OBU_DF = bytes.fromhex("DF01")
INFORMATION_EF = bytes.fromhex("EF01")
INFORMATION_SFI = 0x01
SERIAL_OFFSET = 10
SERIAL_SIZE = 8
CHALLENGE_SIZE = 4
MAC_SIZE = 4
VEHICLE_CIPHERTEXT_SIZE = 80  # 79 bytes + the 80 padding byte
CLA_PLAIN = 0x00
CLA_SECURED = 0x04
INS_SELECT = 0xA4
INS_GET_CHALLENGE = 0x84
INS_READ_BINARY = 0xB0
INS_UPDATE_BINARY = 0xD6


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
    """Everything a tag remembers without power, as plain data: the number printed on it, its key, its files
    (raw bytes, as the ESAM stores them), its tamper switch and whether it is damaged."""

    obu_number: ObuNumber
    maintenance_key: bytes
    system_file: bytes
    vehicle_file: bytes = bytes(ObuVehicleFile.SIZE)
    switch: TamperSwitch = TamperSwitch.RELEASED
    damaged: bool = False

    def __post_init__(self) -> None:
        if len(self.maintenance_key) != 16:
            raise ValueError("an OBU's maintenance key is 16 bytes")
        if len(self.system_file) != ObuSystemFile.SIZE or len(self.vehicle_file) != ObuVehicleFile.SIZE:
            raise ValueError("an OBU's system file is 99 bytes and its vehicle file 79")

    @classmethod
    def blank(cls, obu_number: ObuNumber, maintenance_key: bytes) -> ObuState:
        """A tag as it leaves the factory: nothing issued, the switch released."""
        return cls(
            obu_number=obu_number, maintenance_key=maintenance_key, system_file=blank_system_file(obu_number)
        )

    @property
    def tamper(self) -> int:
        """The tamper byte as the system file holds it (01 activated, 00 removed)."""
        return self.system_file[TAMPER_OFFSET]

    def to_dict(self) -> dict[str, Any]:
        """The state as JSON-ready data (bytes in hex). It holds the tag's key: the emulator's secret data."""
        return {
            "obu_number": self.obu_number.value,
            "maintenance_key": self.maintenance_key.hex().upper(),
            "system_file": self.system_file.hex().upper(),
            "vehicle_file": self.vehicle_file.hex().upper(),
            "switch": str(self.switch),
            "damaged": self.damaged,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ObuState:
        """The state :meth:`to_dict` gave."""
        return cls(
            obu_number=ObuNumber(str(data["obu_number"])),
            maintenance_key=bytes.fromhex(data["maintenance_key"]),
            system_file=bytes.fromhex(data["system_file"]),
            vehicle_file=bytes.fromhex(data["vehicle_file"]),
            switch=TamperSwitch(data["switch"]),
            damaged=bool(data["damaged"]),
        )

    def to_json(self) -> str:
        """:meth:`to_dict` as JSON text."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ObuState:
        """The state :meth:`to_json` wrote."""
        return cls.from_dict(json.loads(text))


@dataclass(frozen=True)
class _Snapshot:
    state: ObuState
    directory: bytes
    current_ef: bool
    challenge: bytes | None


class _Refused(Exception):
    def __init__(self, sw: StatusWord) -> None:
        super().__init__(sw.name)
        self.sw = sw


class ObuEmulator(EmulatedChip):
    """One virtual tag: :meth:`process` takes a command APDU and returns the response APDU, as the ESAM would.

    ``random`` makes challenges (``os.urandom`` unless a test fixes them). The selected directory, file and
    the challenge are volatile: powering up or down resets them to the MF and forgets the challenge.
    """

    kind: ClassVar[str] = "tag"

    def __init__(self, state: ObuState, *, random: Callable[[int], bytes] = os.urandom) -> None:
        super().__init__()
        self.state = state
        self._random = random
        self._directory = MF
        self._current_ef = False
        self._challenge: bytes | None = None

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
    def number(self) -> str:
        """The 16-digit OBU number printed on the tag (the store's file name)."""
        return self.state.obu_number.value

    @property
    def obu_number(self) -> ObuNumber:
        """The OBU number printed on the tag."""
        return self.state.obu_number

    @property
    def challenge(self) -> bytes | None:
        """The challenge waiting to be spent, if any (for tests)."""
        return self._challenge

    def to_state(self) -> dict[str, Any]:
        return self.state.to_dict()

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Self:
        return cls(ObuState.from_dict(state))

    def snapshot(self) -> object:
        return _Snapshot(replace(self.state), self._directory, self._current_ef, self._challenge)

    def restore(self, snapshot: object) -> None:
        if not isinstance(snapshot, _Snapshot):
            raise TypeError("not a snapshot of a tag")
        self.state = replace(snapshot.state)
        self._directory, self._current_ef = snapshot.directory, snapshot.current_ef
        self._challenge = snapshot.challenge

    def power_up(self) -> None:
        self._forget()

    def power_down(self) -> None:
        self._forget()

    def _forget(self) -> None:
        self._directory = MF
        self._current_ef = False
        self._challenge = None

    # --- the physical world ----------------------------------------------------------------------------

    def press_switch(self) -> None:
        """The tag is put on the windscreen: the switch is pressed (the tamper byte waits for activation)."""
        self.state.switch = TamperSwitch.PRESSED
        self.save()

    def release_switch(self) -> None:
        """The tag is taken off the windscreen: the switch opens and the ESAM marks itself removed (00)."""
        self.state.switch = TamperSwitch.RELEASED
        raw = bytearray(self.state.system_file)
        raw[TAMPER_OFFSET] = TamperStatus.REMOVED
        self.state.system_file = bytes(raw)
        self.save()

    def damage(self) -> None:
        """From now on every write answers ``6581`` (memory failure) and changes nothing; reads still work."""
        self.state.damaged = True
        self.save()

    # --- the APDU interface ----------------------------------------------------------------------------

    def process(self, apdu: bytes) -> bytes:
        """The response APDU (data ‖ SW1 SW2) to ``apdu``, the tag's state changed as the command says."""
        try:
            command = Command.parse(apdu)
        except InvalidField:
            return Response.status(StatusWord.WRONG_LENGTH).to_bytes()
        try:
            return self._dispatch(command).to_bytes()
        except _Refused as refusal:
            return Response.status(refusal.sw).to_bytes()

    def _dispatch(self, command: Command) -> Response:
        handlers: dict[tuple[int, int], Callable[[Command], Response]] = {
            (CLA_PLAIN, INS_SELECT): self._select,
            (CLA_PLAIN, INS_GET_CHALLENGE): self._get_challenge,
            (CLA_PLAIN, INS_READ_BINARY): self._read_binary,
            (CLA_SECURED, INS_UPDATE_BINARY): self._secured_update,
            (CLA_PLAIN, INS_UPDATE_BINARY): self._plain_update,
        }
        if command.cla not in (CLA_PLAIN, CLA_SECURED):
            raise _Refused(StatusWord.CLASS_NOT_SUPPORTED)
        if command.ins not in {ins for _, ins in handlers}:
            raise _Refused(StatusWord.INSTRUCTION_NOT_SUPPORTED)
        handler = handlers.get((command.cla, command.ins))
        if handler is None:
            raise _Refused(StatusWord.CLASS_NOT_SUPPORTED)
        return handler(command)

    def _select(self, command: Command) -> Response:
        if len(command.data) != 2 or command.le is not None:
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
        self._challenge = challenge
        return Response(challenge, StatusWord.OK)

    def _take_challenge(self) -> bytes:
        challenge, self._challenge = self._challenge, None
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
        if not command.data or command.le is not None:
            raise _Refused(StatusWord.WRONG_LENGTH)
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
        # the MAC covers the header and Lc (which counts the MAC) and the data, IV = challenge ‖ 00000000
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


__all__ = [
    "INFORMATION_EF",
    "INFORMATION_SFI",
    "MF",
    "OBU_DF",
    "VEHICLE_CIPHERTEXT_SIZE",
    "ObuEmulator",
    "ObuState",
    "TamperSwitch",
    "blank_system_file",
    "obu_maintenance_key",
]
