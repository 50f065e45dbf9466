"""The host's side of an OBU tag (spec §8): read it, issue it, activate it, whatever reader carries the APDUs.

Builders make the commands (the protected ones with the line-protection MAC from the
:class:`~etcwallet.issuance.chip.keys.KeyService`, keyed by :func:`obu_identity`), parsers read the answers,
and a few ``async`` steps run a whole exchange over a :class:`~etcwallet.issuance.chip.reader.Reader`. The
command layouts are the ones :mod:`etcwallet.issuance.chip.obu_emulator` documents. Deciding *whether* to
write (the card and the tag describe the same vehicle) is the issuance service's job; these functions only
speak to the tag. They do make sure they speak to the right one: with two tags in the field the nearer
answers, so every write first reads the system file and raises :class:`TagChanged` unless the tag in the
field carries the OBU number the write is for (:func:`confirm_tag`, also for the caller's own checks).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from etcwallet.issuance.chip.apdu import (
    Challenge,
    Command,
    Response,
    get_challenge,
    secured_update_binary,
    secured_update_mac_input,
    select_df,
)
from etcwallet.issuance.chip.encoding import InvalidField, date_bcd
from etcwallet.issuance.chip.files import (
    TAMPER_OFFSET,
    IssuerId,
    ObuNumber,
    ObuSystemFile,
    ObuVehicleFile,
    TamperStatus,
)
from etcwallet.issuance.chip.host import ChipSecurityError, MalformedAnswer
from etcwallet.issuance.chip.keys import CardIdentity, KeyService
from etcwallet.issuance.chip.obu_emulator import (
    INFORMATION_SFI,
    MF,
    OBU_DF,
    SERIAL_OFFSET,
    SERIAL_SIZE,
    VEHICLE_CIPHERTEXT_SIZE,
    blank_system_file,
)
from etcwallet.issuance.chip.reader import Reader, exchange

DATES_OFFSET = 0x12  # signing date (4) ‖ expiry date (4) ‖ tamper (1): 04 D6 81 12 0D


class TagChanged(ChipSecurityError):
    """The tag in the field is not the one the operation is for (another tag came nearer the antenna, or
    the tag was swapped between the first read and now): nothing is written to it."""

    def __init__(self, expected: ObuNumber, found: ObuNumber) -> None:
        self.expected, self.found = expected, found
        self.zh = f"读写区域内的标签（{found}）不是先前读取的标签（{expected}），请只放置一个标签后重试"
        self.en = (
            f"the tag in the field ({found}) is not the tag read first ({expected}); "
            "keep only that tag in the field and try again"
        )
        super().__init__(self.en)


def obu_identity(issuer: IssuerId, obu_number: ObuNumber) -> CardIdentity:
    """What a tag's maintenance key is diversified by: the issuer, then the OBU number (8 BCD bytes)."""
    return CardIdentity(issuer_id=issuer.to_bytes(), application_serial=obu_number.to_bytes())


# --- plain commands and their answers ----------------------------------------------------------------


def select_mf() -> Command:
    """SELECT the MF (``00 A4 00 00 02 3F 00``), where the system information file is."""
    return select_df(MF)


def select_vehicle_df() -> Command:
    """SELECT DF01 (``00 A4 00 00 02 DF 01``), where the vehicle information file is."""
    return select_df(OBU_DF)


def read_system_file_command() -> Command:
    """READ BINARY of the system information file (``00 B0 81 00 63``), plain, in the MF."""
    return Command(0x00, 0xB0, 0x80 | INFORMATION_SFI, 0x00, le=ObuSystemFile.SIZE)


def read_vehicle_file_command() -> Command:
    """READ BINARY of the vehicle file in DF01 (``00 B0 81 00 50``): 80 bytes encrypted under the challenge
    just given **[?]**."""
    return Command(0x00, 0xB0, 0x80 | INFORMATION_SFI, 0x00, le=VEHICLE_CIPHERTEXT_SIZE)


@dataclass(frozen=True)
class SystemFileReading:
    """What a tag's system file says: its OBU number always, the whole file once issued (None if blank)."""

    obu_number: ObuNumber
    file: ObuSystemFile | None

    @property
    def issued(self) -> bool:
        """Whether the tag has been issued (its system file is more than the factory's serial)."""
        return self.file is not None


def parse_system_file(response: Response) -> SystemFileReading:
    """The system file from READ BINARY's answer (a status word other than 9000 raises StatusWordError)."""
    raw = response.expect_ok("READ BINARY OBU system file")
    if len(raw) != ObuSystemFile.SIZE:
        raise MalformedAnswer(f"the OBU system file is {ObuSystemFile.SIZE} bytes, got {len(raw)}")
    obu_number = ObuNumber.from_bytes(raw[SERIAL_OFFSET : SERIAL_OFFSET + SERIAL_SIZE])
    if raw == blank_system_file(obu_number):
        return SystemFileReading(obu_number, None)
    try:
        return SystemFileReading(obu_number, ObuSystemFile.from_bytes(raw))
    except InvalidField as bad:
        raise MalformedAnswer(f"the OBU system file does not parse: {bad.en}") from None


def decrypt_vehicle_file(
    keys: KeyService, identity: CardIdentity, *, challenge: bytes, ciphertext: bytes
) -> ObuVehicleFile | None:
    """The vehicle file from the encrypted read's answer (None if the tag has none yet). A wrong key or
    altered bytes raise :class:`MalformedAnswer`."""
    if len(ciphertext) != VEHICLE_CIPHERTEXT_SIZE:
        raise MalformedAnswer(f"the encrypted vehicle file is {VEHICLE_CIPHERTEXT_SIZE} bytes")
    try:
        plain = keys.decrypt_under_challenge(identity, challenge=challenge, ciphertext=ciphertext)
    except ValueError:
        raise MalformedAnswer("the vehicle file does not decrypt: not a tag of ours") from None
    if len(plain) != ObuVehicleFile.SIZE:
        raise MalformedAnswer("the vehicle file does not decrypt to 79 bytes")
    if plain == bytes(ObuVehicleFile.SIZE):
        return None
    try:
        return ObuVehicleFile.from_bytes(plain)
    except InvalidField as bad:
        raise MalformedAnswer(f"the OBU vehicle file does not parse: {bad.en}") from None


# --- protected writes ----------------------------------------------------------------------------------


def protected_write(
    keys: KeyService, identity: CardIdentity, *, offset: int, data: bytes, challenge: bytes
) -> Command:
    """``04 D6 81 <offset> Lc`` + data + MAC: the selected directory's EF01, the MAC under ``challenge``."""
    mac_input = secured_update_mac_input(INFORMATION_SFI, offset, data)
    mac = keys.line_protection_mac(identity, challenge=challenge, data=mac_input)
    return secured_update_binary(INFORMATION_SFI, offset, data, mac)


def issue_system_file(
    keys: KeyService, identity: CardIdentity, system: ObuSystemFile, *, challenge: bytes
) -> Command:
    """The whole system file at issuance (``04 D6 81 00 67`` + 99 bytes + MAC) **[?]**, in the MF."""
    return protected_write(keys, identity, offset=0, data=system.to_bytes(), challenge=challenge)


def write_dates_and_tamper(
    keys: KeyService,
    identity: CardIdentity,
    *,
    signing_date: date,
    expiry_date: date,
    tamper: TamperStatus,
    challenge: bytes,
) -> Command:
    """Signing and expiry dates and the tamper byte (``04 D6 81 12 0D`` + 9 bytes + MAC, spec §8)."""
    data = date_bcd("signing_date", signing_date) + date_bcd("expiry_date", expiry_date) + bytes((tamper,))
    return protected_write(keys, identity, offset=DATES_OFFSET, data=data, challenge=challenge)


def write_tamper(
    keys: KeyService, identity: CardIdentity, tamper: TamperStatus, *, challenge: bytes
) -> Command:
    """The tamper byte alone (``04 D6 81 1A 05`` + flag + MAC, spec §8): 01 activates the tag."""
    return protected_write(keys, identity, offset=TAMPER_OFFSET, data=bytes((tamper,)), challenge=challenge)


def write_vehicle_file(
    keys: KeyService, identity: CardIdentity, vehicle: ObuVehicleFile, *, challenge: bytes
) -> Command:
    """The vehicle file at issuance (``04 D6 81 00 53`` + 79 bytes + MAC) **[?]**, in DF01."""
    return protected_write(keys, identity, offset=0, data=vehicle.to_bytes(), challenge=challenge)


# --- whole exchanges over a reader ---------------------------------------------------------------------


async def _challenge(reader: Reader) -> bytes:
    return Challenge.from_response(await exchange(reader, get_challenge())).random


async def _send(reader: Reader, command: Command, what: str) -> None:
    (await exchange(reader, command)).expect_ok(what)


async def read_system(reader: Reader) -> SystemFileReading:
    """SELECT the MF and read the system file: which tag is in the field, and what it was issued with."""
    await _send(reader, select_mf(), "SELECT MF")
    return parse_system_file(await exchange(reader, read_system_file_command()))


async def confirm_tag(reader: Reader, obu_number: ObuNumber) -> SystemFileReading:
    """Read the system file and make sure the tag answering is ``obu_number`` (the one read first), else
    raise :class:`TagChanged`; the MF stays selected."""
    reading = await read_system(reader)
    if reading.obu_number != obu_number:
        raise TagChanged(obu_number, reading.obu_number)
    return reading


async def read_vehicle(reader: Reader, keys: KeyService, identity: CardIdentity) -> ObuVehicleFile | None:
    """SELECT DF01, take a challenge and read the vehicle file encrypted under it, then decrypt it."""
    await _send(reader, select_vehicle_df(), "SELECT DF01")
    challenge = await _challenge(reader)
    response = await exchange(reader, read_vehicle_file_command())
    ciphertext = response.expect_ok("READ BINARY OBU vehicle file")
    return decrypt_vehicle_file(keys, identity, challenge=challenge, ciphertext=ciphertext)


async def issue(
    reader: Reader, keys: KeyService, system: ObuSystemFile, vehicle: ObuVehicleFile, *, issuer: IssuerId
) -> None:
    """Write the system file (MF) then the vehicle file (DF01), each under a fresh challenge, to the tag
    numbered ``system.obu_number`` (:class:`TagChanged` if another answers). The tag's key is diversified
    by ``issuer`` and that number; a refusal raises StatusWordError (``6982`` for a system file saying
    activated while the switch is released: issue with the tamper byte 00, then :func:`activate`)."""
    identity = obu_identity(issuer, system.obu_number)
    await confirm_tag(reader, system.obu_number)
    command = issue_system_file(keys, identity, system, challenge=await _challenge(reader))
    await _send(reader, command, "UPDATE BINARY OBU system file")
    await _send(reader, select_vehicle_df(), "SELECT DF01")
    command = write_vehicle_file(keys, identity, vehicle, challenge=await _challenge(reader))
    await _send(reader, command, "UPDATE BINARY OBU vehicle file")


async def set_tamper(reader: Reader, keys: KeyService, identity: CardIdentity, tamper: TamperStatus) -> None:
    """Write the tamper byte under a fresh challenge (01 is activation, 激活) to the tag ``identity`` names
    (:class:`TagChanged` if another answers); a refusal raises StatusWordError."""
    await confirm_tag(reader, ObuNumber.from_bytes(identity.application_serial))
    command = write_tamper(keys, identity, tamper, challenge=await _challenge(reader))
    await _send(reader, command, "UPDATE BINARY OBU tamper byte")


async def activate(reader: Reader, keys: KeyService, identity: CardIdentity) -> None:
    """Activation: the tamper byte 01 (the switch must be pressed, or the tag answers 6982)."""
    await set_tamper(reader, keys, identity, TamperStatus.ACTIVATED)


__all__ = [
    "SystemFileReading",
    "TagChanged",
    "activate",
    "confirm_tag",
    "decrypt_vehicle_file",
    "issue",
    "issue_system_file",
    "obu_identity",
    "parse_system_file",
    "protected_write",
    "read_system",
    "read_system_file_command",
    "read_vehicle",
    "read_vehicle_file_command",
    "select_mf",
    "select_vehicle_df",
    "set_tamper",
    "write_dates_and_tamper",
    "write_tamper",
    "write_vehicle_file",
]
