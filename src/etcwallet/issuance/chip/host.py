"""The host's side of a load (圈存) and of a protected card write, whatever reader carries the APDUs.

A load is three steps the caller runs around its own persistence (spec §7): :func:`authorize_load` checks
the card's INITIALIZE FOR LOAD answer (MAC1) and builds the CREDIT FOR LOAD command with its MAC2, which
the caller persists before sending; :func:`confirm_load` checks the TAC the card answers. Issuance writes
0015 bytes 20..42 with :func:`secure_update_0015`, MAC-protected under the card's challenge. Everything
here works on the data of answers (status words are the transport's business) and plain dataclasses;
key operations go through a :class:`~etcwallet.issuance.chip.keys.KeyService`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from etcwallet.issuance.chip.apdu import LoadInit, credit_for_load, initialize_for_load
from etcwallet.issuance.chip.keys import CardIdentity, KeyService

INITIALIZE_FOR_LOAD_ANSWER_SIZE = 16
TAC_SIZE = 4
ISSUE_FILE_SFI_P1 = 0x95  # 0015 selected by its short file identifier (0x80 | 0x15)
ISSUE_FILE_UPDATE_OFFSET = 20
ISSUE_FILE_UPDATE_SIZE = 23  # start date … vehicle class (0015 bytes 20..42)
MAX_PURSE_BALANCE = 0xFFFFFFFF


class ChipSecurityError(Exception):
    """A card answer the host must not act on; nothing is credited or written on its strength."""


class MalformedAnswer(ChipSecurityError):
    """A card's answer has the wrong length or impossible values."""


class CardNotAuthenticated(ChipSecurityError):
    """The card's MAC1 does not verify: not a card of ours, or the answer was altered."""


class TacInvalid(ChipSecurityError):
    """The card's TAC does not verify: the credit it claims cannot be taken as proof."""


@dataclass(frozen=True)
class LoadRequest:
    """What the host asks to load: the card (by its 0015 identity), the amount in fen and the terminal."""

    card: CardIdentity
    amount: int
    terminal_id: bytes
    key_index: int = 0x01

    def __post_init__(self) -> None:
        if not 0 < self.amount <= MAX_PURSE_BALANCE:
            raise ValueError("a load's amount is a positive number of fen that fits 4 bytes")
        if len(self.terminal_id) != 6:
            raise ValueError("a terminal id is 6 bytes")
        if not 0 <= self.key_index <= 0xFF:
            raise ValueError("a key index is one byte")

    def initialize_command(self) -> bytes:
        """INITIALIZE FOR LOAD: ``80 50 00 02 0B`` key index, amount (4), terminal id (6), ``10``."""
        return initialize_for_load(self.key_index, self.amount, self.terminal_id).to_bytes()


InitializeForLoadAnswer = LoadInit
"""The card's answer to INITIALIZE FOR LOAD: the codec's :class:`~etcwallet.issuance.chip.apdu.LoadInit`."""


def parse_initialize_for_load(data: bytes) -> InitializeForLoadAnswer:
    """Split the answer: old balance (4), online serial (2), key version, algorithm id, random (4), MAC1 (4)."""
    if len(data) != INITIALIZE_FOR_LOAD_ANSWER_SIZE:
        raise MalformedAnswer(
            f"INITIALIZE FOR LOAD answers {INITIALIZE_FOR_LOAD_ANSWER_SIZE} bytes, got {len(data)}"
        )
    return LoadInit.from_bytes(data)


def bcd_date_time(when: datetime) -> tuple[bytes, bytes]:
    """``when`` as the card writes it: BCD ``YYYYMMDD`` and ``hhmmss``, in ``when``'s own time zone (pass
    China time, Asia/Shanghai, as terminals do)."""
    return bytes.fromhex(when.strftime("%Y%m%d")), bytes.fromhex(when.strftime("%H%M%S"))


@dataclass(frozen=True)
class CreditForLoad:
    """An authorized credit: everything to persist before sending ``command`` (spec §7), which the card
    accepts once, in the session its INITIALIZE opened."""

    card: CardIdentity
    amount: int
    terminal_id: bytes
    old_balance: int
    online_serial: int
    algorithm_id: int
    date: bytes
    time: bytes
    mac2: bytes
    command: bytes

    @property
    def new_balance(self) -> int:
        """The balance the card holds once it credits."""
        return self.old_balance + self.amount


def authorize_load(
    keys: KeyService, request: LoadRequest, answer: InitializeForLoadAnswer, *, when: datetime
) -> CreditForLoad:
    """Verify the card's MAC1 and build CREDIT FOR LOAD (``80 52 00 00 0B`` date, time, MAC2, ``04``).

    Raises :class:`CardNotAuthenticated` when MAC1 does not verify, and :class:`MalformedAnswer` when the
    credit would overflow the purse.
    """
    if answer.old_balance + request.amount > MAX_PURSE_BALANCE:
        raise MalformedAnswer("the purse cannot hold the balance this load would make")
    if not keys.verify_load_mac1(
        request.card,
        algorithm_id=answer.algorithm_id,
        random=answer.random,
        online_serial=answer.online_serial,
        old_balance=answer.old_balance,
        amount=request.amount,
        terminal_id=request.terminal_id,
        mac1=answer.mac1,
    ):
        raise CardNotAuthenticated("the card's MAC1 does not verify")
    date, time = bcd_date_time(when)
    mac2 = keys.load_mac2(
        request.card,
        algorithm_id=answer.algorithm_id,
        random=answer.random,
        online_serial=answer.online_serial,
        amount=request.amount,
        terminal_id=request.terminal_id,
        date=date,
        time=time,
    )
    return CreditForLoad(
        card=request.card,
        amount=request.amount,
        terminal_id=request.terminal_id,
        old_balance=answer.old_balance,
        online_serial=answer.online_serial,
        algorithm_id=answer.algorithm_id,
        date=date,
        time=time,
        mac2=mac2,
        command=credit_for_load(when, mac2).to_bytes(),
    )


@dataclass(frozen=True)
class LoadConfirmation:
    """A credit the card proved: its TAC and the balance it now holds."""

    tac: bytes
    new_balance: int
    online_serial: int


def confirm_load(keys: KeyService, credit: CreditForLoad, answer: bytes) -> LoadConfirmation:
    """Verify the TAC the card answered to CREDIT FOR LOAD (or GET TRANSACTION PROVE's TAC after a tear).

    Raises :class:`TacInvalid` when it does not verify and :class:`MalformedAnswer` when it is not 4 bytes.
    """
    if len(answer) != TAC_SIZE:
        raise MalformedAnswer(f"CREDIT FOR LOAD answers a {TAC_SIZE}-byte TAC, got {len(answer)}")
    if not keys.verify_load_tac(
        credit.card,
        algorithm_id=credit.algorithm_id,
        new_balance=credit.new_balance,
        online_serial=credit.online_serial,
        amount=credit.amount,
        terminal_id=credit.terminal_id,
        date=credit.date,
        time=credit.time,
        tac=bytes(answer),
    ):
        raise TacInvalid("the card's TAC does not verify")
    return LoadConfirmation(
        tac=bytes(answer), new_balance=credit.new_balance, online_serial=credit.online_serial
    )


def secure_update_binary(
    keys: KeyService, card: CardIdentity, *, p1: int, offset: int, data: bytes, challenge: bytes
) -> bytes:
    """UPDATE BINARY with secure messaging: ``04 D6 P1 offset Lc`` + data + MAC(4), where Lc counts the MAC
    and the MAC (the card's line-protection MAC, under ``challenge``) covers the header and the data."""
    if not 0 <= p1 <= 0xFF or not 0 <= offset <= 0xFF:
        raise ValueError("P1 and the offset are one byte each")
    if not 0 < len(data) <= 0xFF - 4:
        raise ValueError("the data of one protected UPDATE BINARY is 1 to 251 bytes")
    body = bytes([0x04, 0xD6, p1, offset, len(data) + 4]) + data
    return body + keys.line_protection_mac(card, challenge=challenge, data=body)


def secure_update_0015(keys: KeyService, card: CardIdentity, *, content: bytes, challenge: bytes) -> bytes:
    """The re-issuance write of 0015 bytes 20..42 (dates, plate, user type, plate colour, vehicle class):
    ``04 D6 95 14 1B`` + 23 bytes + MAC (spec §2), given the card's 4-byte challenge."""
    if len(content) != ISSUE_FILE_UPDATE_SIZE:
        raise ValueError(f"0015 bytes 20..42 are {ISSUE_FILE_UPDATE_SIZE} bytes, got {len(content)}")
    return secure_update_binary(
        keys, card, p1=ISSUE_FILE_SFI_P1, offset=ISSUE_FILE_UPDATE_OFFSET, data=content, challenge=challenge
    )
