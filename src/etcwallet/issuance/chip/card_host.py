"""The host's side of a user card at the counter: read what it holds, write its issuance, whatever reader.

A card from stock is personalised once at the factory (一发: issuer, card type, version, network and
internal number in 0015 bytes 0..19, its keys); the outlet's issuance (二发) writes 0015 bytes 20..42
(dates, plate, user type, plate colour, vehicle class) and the cardholder file 0016, each with a
line-protection MAC under a fresh challenge (spec §2). :func:`read_card` reads either kind: a blank card
answers with its identity and ``issue = None``.

Card writes are idempotent (the same bytes again leave the same file), so an interrupted issuance is
finished by writing again; :func:`read_card` tells the caller what the card holds now.
"""

from __future__ import annotations

from dataclasses import dataclass

from etcwallet.issuance.chip.apdu import (
    Balance,
    Challenge,
    Command,
    Response,
    StatusWordError,
    get_balance,
    get_challenge,
    read_binary_0015,
    read_binary_0016,
    select_aid,
)
from etcwallet.issuance.chip.encoding import InvalidField
from etcwallet.issuance.chip.files import (
    CardholderFile,
    CardIssueFile,
    CardNumber,
    IssueFileContents,
    IssuerId,
    read_issue_file,
)
from etcwallet.issuance.chip.host import (
    ISSUE_FILE_UPDATE_OFFSET,
    ISSUE_FILE_UPDATE_SIZE,
    secure_update_binary,
)
from etcwallet.issuance.chip.keys import CardIdentity, KeyService
from etcwallet.issuance.chip.reader import Reader, exchange
from etcwallet.issuance.codes import CardType

HOLDER_FILE_P1 = 0x96  # 0016 by its short file identifier (0x80 | 0x16)
ISSUE_FILE_P1 = 0x95


class UnreadableCard(Exception):
    """The card answered, but not as an ETC user card of the expected layout."""


@dataclass(frozen=True)
class CardReading:
    """What a card holds now: its factory identity, and its issuance and holder files once written."""

    raw_issue: bytes
    issuer: IssuerId
    card_type: CardType
    card_version: int
    card_number: CardNumber
    issue: CardIssueFile | None
    holder: CardholderFile | None
    balance: int

    @property
    def identity(self) -> CardIdentity:
        """What the card's keys are diversified by (0015 bytes 0..7 and 12..19)."""
        return CardIdentity(issuer_id=self.raw_issue[0:8], application_serial=self.raw_issue[12:20])


async def _expect(reader: Reader, command: Command, what: str) -> bytes:
    response: Response = await exchange(reader, command)
    return response.expect_ok(what)


def parse_issue_file(raw: bytes) -> IssueFileContents:
    """0015 of a card in any state (:func:`files.read_issue_file`); a layout that is not ours raises
    :class:`UnreadableCard`."""
    try:
        return read_issue_file(raw)
    except (InvalidField, ValueError) as malformed:
        raise UnreadableCard(str(malformed)) from malformed


def _holder(raw: bytes) -> CardholderFile | None:
    if not any(raw):
        return None
    try:
        return CardholderFile.from_bytes(raw)
    except (InvalidField, ValueError) as malformed:
        raise UnreadableCard(str(malformed)) from malformed


async def read_card(reader: Reader) -> CardReading:
    """Select the ETC application and read 0015, 0016 and the purse balance.

    Raises :class:`~etcwallet.issuance.chip.reader.CardRemoved` when the card is not (or no longer) there,
    :class:`StatusWordError` on a refusal and :class:`UnreadableCard` on a layout that is not ours.
    """
    await _expect(reader, select_aid(), "SELECT ETC")
    raw_issue = await _expect(reader, read_binary_0015(), "READ BINARY 0015")
    issue = parse_issue_file(raw_issue)
    holder = _holder(await _expect(reader, read_binary_0016(), "READ BINARY 0016"))
    balance = Balance.from_bytes(await _expect(reader, get_balance(), "GET BALANCE")).balance
    return CardReading(
        raw_issue,
        issue.issuer,
        issue.card_type,
        issue.card_version,
        issue.card_number,
        issue.personalised,
        holder,
        balance,
    )


async def _protected_write(
    reader: Reader, keys: KeyService, identity: CardIdentity, *, p1: int, offset: int, data: bytes, what: str
) -> None:
    challenge = Challenge.from_bytes(await _expect(reader, get_challenge(), "GET CHALLENGE")).random
    command = Command.parse(
        secure_update_binary(keys, identity, p1=p1, offset=offset, data=data, challenge=challenge)
    )
    await _expect(reader, command, what)


async def write_issuance(
    reader: Reader, keys: KeyService, identity: CardIdentity, *, issue_content: bytes, holder_content: bytes
) -> None:
    """Write 0015 bytes 20..42 and the whole of 0016, each under its own challenge and MAC.

    The caller has persisted both contents before calling (spec: persist, talk to the chip, record).
    A refusal raises :class:`StatusWordError` (``6581`` a damaged card, ``9302`` a MAC the card rejects); a
    card leaving the reader raises ``CardRemoved``, after which either write may or may not have landed.
    """
    if len(issue_content) != ISSUE_FILE_UPDATE_SIZE or len(holder_content) != CardholderFile.SIZE:
        raise ValueError("0015 bytes 20..42 are 23 bytes and 0016 is 55")
    await _expect(reader, select_aid(), "SELECT ETC")
    await _protected_write(
        reader,
        keys,
        identity,
        p1=ISSUE_FILE_P1,
        offset=ISSUE_FILE_UPDATE_OFFSET,
        data=issue_content,
        what="UPDATE BINARY 0015",
    )
    await _protected_write(
        reader, keys, identity, p1=HOLDER_FILE_P1, offset=0, data=holder_content, what="UPDATE BINARY 0016"
    )


__all__ = [
    "CardReading",
    "StatusWordError",
    "UnreadableCard",
    "parse_issue_file",
    "read_card",
    "write_issuance",
]
