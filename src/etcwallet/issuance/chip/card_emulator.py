"""A virtual ETC user card answering APDUs byte for byte as spec §2-§4, §6 and §7 say.

Issuance, loads and their tests talk to cards through the :class:`~etcwallet.issuance.chip.reader.Reader`
protocol; :class:`UserCardEmulator` is an :class:`~etcwallet.issuance.chip.emulator.EmulatedChip`, so it sits
in an :class:`~etcwallet.issuance.chip.emulator.EmulatedReader`, tears on demand and persists in a
:class:`~etcwallet.issuance.chip.emulator.ChipStore`. It computes every MAC and TAC with
:mod:`~etcwallet.issuance.chip.crypto` from its own diversified :class:`~etcwallet.issuance.chip.keys.CardKeys`.

The command set (what the spec fixes, and what we chose where it is silent, marked **[?]**):

- ``00 A4 04 00 09`` AID selects the ETC application; ``00 A4 00 00 02`` ``1001`` the same ADF, ``3F00``
  the MF. Every file and purse command needs the ETC application selected (files: ``6A82``; purse
  commands: ``6985``); GET CHALLENGE and VERIFY PIN work anywhere.
- ``00 B0 95|96 <offset> <Le>`` READ BINARY of 0015 / 0016 by short file identifier; past the end ``6700``.
- ``04 D6 95|96 <offset> <Lc>`` data ‖ MAC: UPDATE BINARY with the line-protection MAC under the card's
  maintenance key, IV = the last GET CHALLENGE ‖ ``00000000``, over header, Lc (counting the MAC) and data.
  The challenge is spent by any secured write that passes the format checks, whatever its outcome; a wrong
  MAC answers ``9302`` and writes nothing. A plain ``00 D6`` answers ``6982``.
- ``00 84 00 00 04`` GET CHALLENGE: 4 random bytes, one use, forgotten on leaving the field.
- ``00 20 00 00 Lc`` PIN (BCD, odd length padded ``F``): a wrong PIN answers ``63Cx`` (x tries left,
  3 to start); at 0 the PIN is blocked and every VERIFY answers ``6983``. A good PIN restores the tries.
  INITIALIZE FOR LOAD needs a verified PIN (``6982``), as PBOC cards do; ``load_needs_pin=False`` turns
  that off for a card model that does not ask **[?]**.
- GET BALANCE, INITIALIZE FOR LOAD / PURCHASE / CAPP PURCHASE (key index ``01`` only, else ``9403``;
  algorithm id ``00``, 3DES), CREDIT FOR LOAD, UPDATE CAPP DATA CACHE, DEBIT FOR PURCHASE and GET
  TRANSACTION PROVE as spec §3. INITIALIZE opens one session, which the next INITIALIZE, a SELECT, the
  end of its CREDIT/DEBIT (accepted or not) or leaving the field closes; CREDIT or DEBIT without its
  session answers ``6985``. INITIALIZE FOR (CAPP) PURCHASE answers ``9401`` when balance + overdraw limit
  is short of the amount (PBOC checks there, so DEBIT never finds it short).
- A 0018 record holds the serial the transaction used (the one INITIALIZE answered, which its TAC
  covers) **[?]**; the card's current serial is one more. GET TRANSACTION PROVE answers MAC ‖ TAC of the
  card's last load (type ``02``, online serial) or last purchase of that type (``06``/``09``, offline
  serial) when asked with the serial after it (N+1, "on the cards seen" in spec §7; ``prove_serial_after
  =False`` takes N) **[?]**; the MAC is the load's MAC2 or the purchase's MAC2. Otherwise ``9406``.
- UPDATE CAPP DATA CACHE is taken only inside an INITIALIZE FOR CAPP PURCHASE session; the record goes to
  0019 when the DEBIT is accepted.

Refusals, checked in this order: ``6E00`` a class the instruction does not take, ``6D00`` an unknown
instruction, ``6700`` a length that does not fit (also a malformed APDU), ``6A86`` a P1/P2 the command
does not take, ``6A82`` no such file, then the command's own checks. A damaged card (:meth:`damage`)
answers ``6581`` to every write (UPDATE BINARY, CREDIT, DEBIT, UPDATE CAPP DATA CACHE) once its format
checks pass, and changes nothing.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Self

from etcwallet.issuance.chip import crypto
from etcwallet.issuance.chip.apdu import ETC_AID, ETC_DF, Command, Response, StatusWord
from etcwallet.issuance.chip.emulator import EmulatedChip
from etcwallet.issuance.chip.encoding import InvalidField, require_length
from etcwallet.issuance.chip.files import (
    ENTRY_EXIT_HEADER,
    IDENTITY_SIZE,
    CardholderFile,
    CardIssueFile,
    CardNumber,
    EntryExitRecord,
    IssueFileContents,
    IssuerId,
    TransactionRecord,
    identity_bytes,
    read_issue_file,
)
from etcwallet.issuance.chip.keys import CardIdentity, CardKeys, IssuerMasterKeys, SoftwareKeyService
from etcwallet.issuance.codes import CardType

MF = bytes.fromhex("3F00")
ISSUE_SFI = 0x15
HOLDER_SFI = 0x16
LOG_SFI = 0x18
LOG_RECORDS = 10
LOG_P2 = (LOG_SFI << 3) | 0x04  # READ RECORD by SFI, record number in P1
CAPP_P1P2 = (0xAA, 0xC8)
KEY_INDEX_3DES = 0x01
DEFAULT_PIN = "123456"
PIN_TRIES = 3
CHALLENGE_SIZE = 4
MAC_SIZE = 4
MAX_BALANCE = 0xFFFFFFFF
MAX_SERIAL = 0xFFFF
SW_PIN_BLOCKED = 0x6983
SW_PIN_WRONG = 0x63C0  # | tries left

_FILE_SIZES = {ISSUE_SFI: CardIssueFile.SIZE, HOLDER_SFI: CardholderFile.SIZE}


# --- a possibly blank 0015 -----------------------------------------------------------------------------


# --- state -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Proof:
    """What GET TRANSACTION PROVE answers for one finished transaction: its type, the serial it used, MAC
    and TAC."""

    transaction_type: int
    serial: int
    mac: bytes
    tac: bytes


@dataclass
class CardState:
    """Everything a card remembers through power loss, as plain data (files as raw bytes, as the card OS
    stores them). It holds the card's keys: the emulator's secret data, never the platform's."""

    number: str
    keys: CardKeys
    issue_file: bytes
    holder_file: bytes = bytes(CardholderFile.SIZE)
    entry_exit: bytes = bytes(EntryExitRecord.SIZE)
    balance: int = 0
    online_serial: int = 0
    offline_serial: int = 0
    overdraw_limit: int = 0
    log: list[bytes] = field(default_factory=list)  # 0018, newest first
    pin: str = DEFAULT_PIN
    pin_tries: int = PIN_TRIES
    damaged: bool = False
    load_needs_pin: bool = True
    prove_serial_after: bool = True
    last_load: Proof | None = None
    last_purchase: Proof | None = None

    def __post_init__(self) -> None:
        CardNumber.parse(self.number)
        require_length("card_issue_file", self.issue_file, CardIssueFile.SIZE)
        require_length("cardholder_file", self.holder_file, CardholderFile.SIZE)
        require_length("entry_exit_record", self.entry_exit, EntryExitRecord.SIZE)
        for key in (self.keys.load, self.keys.purchase, self.keys.tac, self.keys.maintenance):
            require_length("key", key, 16)

    @property
    def key_version(self) -> int:
        """The key version INITIALIZE answers: the card version (0015 byte 9, spec §2)."""
        return self.issue_file[9]


@dataclass(frozen=True, slots=True)
class _LoadSession:
    session_key: bytes
    amount: int
    terminal_id: bytes


@dataclass(frozen=True, slots=True)
class _PurchaseSession:
    transaction_type: int
    random: bytes
    amount: int
    terminal_id: bytes
    cache: bytes | None = None


class _Refused(Exception):
    def __init__(self, sw: int) -> None:
        super().__init__(f"{sw:04X}")
        self.sw = sw


def _proof_to_json(proof: Proof | None) -> dict[str, Any] | None:
    if proof is None:
        return None
    return {
        "transaction_type": proof.transaction_type,
        "serial": proof.serial,
        "mac": proof.mac.hex().upper(),
        "tac": proof.tac.hex().upper(),
    }


def _proof_from_json(data: dict[str, Any] | None) -> Proof | None:
    if data is None:
        return None
    return Proof(
        int(data["transaction_type"]),
        int(data["serial"]),
        bytes.fromhex(data["mac"]),
        bytes.fromhex(data["tac"]),
    )


# --- the card --------------------------------------------------------------------------------------------


class UserCardEmulator(EmulatedChip):
    """One virtual ETC user card: :meth:`process` takes a command APDU and returns the response APDU.

    ``random`` makes the card's randoms (challenges and INITIALIZE randoms; ``os.urandom`` unless a test
    fixes them). Selection, challenge, PIN status and the open purse session are volatile.
    """

    kind = "card"

    def __init__(self, state: CardState, *, random: Callable[[int], bytes] = os.urandom) -> None:
        super().__init__()
        self.state = state
        self._random = random
        self._in_application = False
        self._challenge: bytes | None = None
        self._pin_verified = False
        self._session: _LoadSession | _PurchaseSession | None = None

    @classmethod
    def manufacture(
        cls,
        card_number: CardNumber | str,
        card_type: CardType,
        issuer: IssuerId,
        master_keys: IssuerMasterKeys,
        *,
        card_version: int = 0x40,
        pin: str = DEFAULT_PIN,
        load_needs_pin: bool = True,
        random: Callable[[int], bytes] = os.urandom,
    ) -> Self:
        """A blank card from stock, pre-personalised (一发): 0015 bytes 0..19 set, the rest zeros, 0016
        zeros, balance 0, keys diversified from the issuer master keys as the key service derives them."""
        number = card_number if isinstance(card_number, CardNumber) else CardNumber.parse(card_number)
        head = identity_bytes(
            issuer=issuer, card_type=card_type, card_version=card_version, card_number=number
        )
        issue_file = head + bytes(CardIssueFile.SIZE - IDENTITY_SIZE)
        keys = SoftwareKeyService(master_keys).derive_card_keys(read_issue_file(issue_file).identity)
        state = CardState(
            number=str(number), keys=keys, issue_file=issue_file, pin=pin, load_needs_pin=load_needs_pin
        )
        return cls(state, random=random)

    @property
    def number(self) -> str:
        return self.state.number

    @property
    def identity(self) -> CardIdentity:
        """The card's key diversification identity, from its 0015."""
        return read_issue_file(self.state.issue_file).identity

    def damage(self) -> None:
        """From now on every write answers ``6581`` (memory failure) and changes nothing; reads still work."""
        self.state.damaged = True

    # --- EmulatedChip ----------------------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        s = self.state
        return {
            "number": s.number,
            "keys": {
                "load": s.keys.load.hex().upper(),
                "purchase": s.keys.purchase.hex().upper(),
                "tac": s.keys.tac.hex().upper(),
                "maintenance": s.keys.maintenance.hex().upper(),
            },
            "issue_file": s.issue_file.hex().upper(),
            "holder_file": s.holder_file.hex().upper(),
            "entry_exit": s.entry_exit.hex().upper(),
            "balance": s.balance,
            "online_serial": s.online_serial,
            "offline_serial": s.offline_serial,
            "overdraw_limit": s.overdraw_limit,
            "log": [record.hex().upper() for record in s.log],
            "pin": s.pin,
            "pin_tries": s.pin_tries,
            "damaged": s.damaged,
            "load_needs_pin": s.load_needs_pin,
            "prove_serial_after": s.prove_serial_after,
            "last_load": _proof_to_json(s.last_load),
            "last_purchase": _proof_to_json(s.last_purchase),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], *, random: Callable[[int], bytes] = os.urandom) -> Self:
        keys = state["keys"]
        return cls(
            CardState(
                number=str(state["number"]),
                keys=CardKeys(
                    load=bytes.fromhex(keys["load"]),
                    purchase=bytes.fromhex(keys["purchase"]),
                    tac=bytes.fromhex(keys["tac"]),
                    maintenance=bytes.fromhex(keys["maintenance"]),
                ),
                issue_file=bytes.fromhex(state["issue_file"]),
                holder_file=bytes.fromhex(state["holder_file"]),
                entry_exit=bytes.fromhex(state["entry_exit"]),
                balance=int(state["balance"]),
                online_serial=int(state["online_serial"]),
                offline_serial=int(state["offline_serial"]),
                overdraw_limit=int(state["overdraw_limit"]),
                log=[bytes.fromhex(record) for record in state["log"]],
                pin=str(state["pin"]),
                pin_tries=int(state["pin_tries"]),
                damaged=bool(state["damaged"]),
                load_needs_pin=bool(state["load_needs_pin"]),
                prove_serial_after=bool(state["prove_serial_after"]),
                last_load=_proof_from_json(state["last_load"]),
                last_purchase=_proof_from_json(state["last_purchase"]),
            ),
            random=random,
        )

    def snapshot(self) -> object:
        return (
            copy.deepcopy(self.state),
            self._in_application,
            self._challenge,
            self._pin_verified,
            self._session,
        )

    def restore(self, snapshot: object) -> None:
        assert isinstance(snapshot, tuple)
        state, self._in_application, self._challenge, self._pin_verified, self._session = snapshot
        self.state = copy.deepcopy(state)

    def power_up(self) -> None:
        self._in_application = False
        self._challenge = None
        self._pin_verified = False
        self._session = None

    def power_down(self) -> None:
        self.power_up()

    # --- the APDU interface ----------------------------------------------------------------------------

    def process(self, apdu: bytes) -> bytes:
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
            (0x00, 0xA4): self._select,
            (0x00, 0x84): self._get_challenge,
            (0x00, 0x20): self._verify_pin,
            (0x00, 0xB0): self._read_binary,
            (0x00, 0xB2): self._read_record,
            (0x04, 0xD6): self._secured_update,
            (0x00, 0xD6): self._plain_update,
            (0x80, 0x5C): self._get_balance,
            (0x80, 0x50): self._initialize,
            (0x80, 0x52): self._credit_for_load,
            (0x80, 0xDC): self._update_capp_data_cache,
            (0x80, 0x54): self._debit_for_purchase,
            (0x80, 0x5A): self._get_transaction_prove,
        }
        handler = handlers.get((command.cla, command.ins))
        if handler is None:
            if command.ins in {ins for _, ins in handlers}:
                raise _Refused(StatusWord.CLASS_NOT_SUPPORTED)
            raise _Refused(StatusWord.INSTRUCTION_NOT_SUPPORTED)
        return handler(command)

    @staticmethod
    def _ok(data: bytes = b"") -> Response:
        return Response(data, StatusWord.OK)

    @staticmethod
    def _shape(command: Command, *, data: int | None, le: int | None, p1p2: tuple[int, int] | None) -> None:
        """Length checks (``6700``), then P1/P2 (``6A86``); ``data=None`` skips the data's length."""
        if data is not None and len(command.data) != data:
            raise _Refused(StatusWord.WRONG_LENGTH)
        if command.le != le:
            raise _Refused(StatusWord.WRONG_LENGTH)
        if p1p2 is not None and (command.p1, command.p2) != p1p2:
            raise _Refused(StatusWord.WRONG_P1P2)

    def _require_application(self, sw: StatusWord) -> None:
        if not self._in_application:
            raise _Refused(sw)

    def _require_intact(self) -> None:
        if self.state.damaged:
            raise _Refused(StatusWord.MEMORY_FAILURE)

    # --- selection, challenge, PIN ---------------------------------------------------------------------

    def _select(self, command: Command) -> Response:
        if not command.data or command.le not in (None, 256):
            raise _Refused(StatusWord.WRONG_LENGTH)
        self._session = None
        if (command.p1, command.p2) == (0x04, 0x00):
            if command.data != ETC_AID:
                raise _Refused(StatusWord.FILE_NOT_FOUND)
            self._in_application = True
            return self._ok()
        if (command.p1, command.p2) != (0x00, 0x00):
            raise _Refused(StatusWord.WRONG_P1P2)
        if len(command.data) != 2:
            raise _Refused(StatusWord.WRONG_LENGTH)
        if command.data == ETC_DF:
            self._in_application = True
        elif command.data == MF:
            self._in_application = False
        else:
            raise _Refused(StatusWord.FILE_NOT_FOUND)
        return self._ok()

    def _get_challenge(self, command: Command) -> Response:
        self._shape(command, data=0, le=CHALLENGE_SIZE, p1p2=(0x00, 0x00))
        self._challenge = self._random(CHALLENGE_SIZE)
        return self._ok(self._challenge)

    def _verify_pin(self, command: Command) -> Response:
        if not 2 <= len(command.data) <= 6 or command.le is not None:
            raise _Refused(StatusWord.WRONG_LENGTH)
        self._shape(command, data=None, le=None, p1p2=(0x00, 0x00))
        if self.state.pin_tries == 0:
            raise _Refused(SW_PIN_BLOCKED)
        pin = self.state.pin
        if crypto.macs_equal(bytes.fromhex(pin + "F" * (len(pin) % 2)), command.data):
            self.state.pin_tries = PIN_TRIES
            self._pin_verified = True
            return self._ok()
        self.state.pin_tries -= 1
        self._pin_verified = False
        raise _Refused(SW_PIN_WRONG | self.state.pin_tries)

    # --- files -----------------------------------------------------------------------------------------

    def _file(self, p1: int) -> int:
        """The short file identifier P1 names (``80 | sfi``) among 0015 and 0016."""
        if not p1 & 0x80 or p1 & 0x60:
            raise _Refused(StatusWord.WRONG_P1P2)
        sfi = p1 & 0x1F
        if sfi not in _FILE_SIZES or not self._in_application:
            raise _Refused(StatusWord.FILE_NOT_FOUND)
        return sfi

    def _content(self, sfi: int) -> bytes:
        return self.state.issue_file if sfi == ISSUE_SFI else self.state.holder_file

    def _read_binary(self, command: Command) -> Response:
        if command.data or command.le is None:
            raise _Refused(StatusWord.WRONG_LENGTH)
        sfi = self._file(command.p1)
        end = command.p2 + command.le
        if end > _FILE_SIZES[sfi]:
            raise _Refused(StatusWord.WRONG_LENGTH)
        return self._ok(self._content(sfi)[command.p2 : end])

    def _plain_update(self, command: Command) -> Response:
        if not command.data or command.le is not None:
            raise _Refused(StatusWord.WRONG_LENGTH)
        self._file(command.p1)
        raise _Refused(StatusWord.SECURITY_STATUS_NOT_SATISFIED)

    def _secured_update(self, command: Command) -> Response:
        if len(command.data) <= MAC_SIZE or command.le is not None:
            raise _Refused(StatusWord.WRONG_LENGTH)
        sfi = self._file(command.p1)
        content, mac = command.data[:-MAC_SIZE], command.data[-MAC_SIZE:]
        offset = command.p2
        if offset + len(content) > _FILE_SIZES[sfi]:
            raise _Refused(StatusWord.WRONG_LENGTH)
        self._require_intact()
        challenge, self._challenge = self._challenge, None
        if challenge is None:
            raise _Refused(StatusWord.CONDITIONS_NOT_SATISFIED)
        # the MAC covers the header, Lc (data + MAC) and the data, as host.secure_update_binary builds it
        header = bytes((command.cla, command.ins, command.p1, command.p2, len(command.data)))
        expected = crypto.line_protection_mac(self.state.keys.maintenance, challenge, header + content)
        if not crypto.macs_equal(expected, mac):
            raise _Refused(StatusWord.MAC_INVALID)
        current = self._content(sfi)
        updated = current[:offset] + content + current[offset + len(content) :]
        if sfi == ISSUE_SFI:
            self.state.issue_file = updated
        else:
            self.state.holder_file = updated
        return self._ok()

    def _read_record(self, command: Command) -> Response:
        self._shape(command, data=0, le=TransactionRecord.SIZE, p1p2=None)
        if command.p2 & 0x07 != 0x04 or command.p1 == 0:
            raise _Refused(StatusWord.WRONG_P1P2)
        if command.p2 != LOG_P2 or not self._in_application:
            raise _Refused(StatusWord.FILE_NOT_FOUND)
        if command.p1 > len(self.state.log):
            raise _Refused(StatusWord.RECORD_NOT_FOUND)
        return self._ok(self.state.log[command.p1 - 1])

    # --- the e-purse -----------------------------------------------------------------------------------

    def _get_balance(self, command: Command) -> Response:
        self._shape(command, data=0, le=4, p1p2=(0x00, 0x02))
        self._require_application(StatusWord.CONDITIONS_NOT_SATISFIED)
        return self._ok(self.state.balance.to_bytes(4, "big"))

    def _append_log(
        self, *, serial: int, amount: int, transaction_type: int, terminal_id: bytes, moment: bytes
    ) -> None:
        # serial (2) ‖ overdraw limit (3) ‖ amount (4) ‖ type (1) ‖ terminal id (6) ‖ date (4) ‖ time (3)
        record = b"".join(
            (
                serial.to_bytes(2, "big"),
                self.state.overdraw_limit.to_bytes(3, "big"),
                amount.to_bytes(4, "big"),
                bytes((transaction_type,)),
                terminal_id,
                moment,
            )
        )
        self.state.log = [record, *self.state.log][:LOG_RECORDS]

    def _initialize(self, command: Command) -> Response:
        if len(command.data) != 11:
            raise _Refused(StatusWord.WRONG_LENGTH)
        if command.p1 not in (0x00, 0x01, 0x03) or command.p2 != 0x02:
            raise _Refused(StatusWord.WRONG_P1P2)
        if command.le != (0x10 if command.p1 == 0x00 else 0x0F):
            raise _Refused(StatusWord.WRONG_LENGTH)
        self._session = None
        self._require_application(StatusWord.CONDITIONS_NOT_SATISFIED)
        key_index, amount, terminal_id = (
            command.data[0],
            int.from_bytes(command.data[1:5], "big"),
            command.data[5:],
        )
        if key_index != KEY_INDEX_3DES:
            raise _Refused(StatusWord.KEY_INDEX_NOT_SUPPORTED)
        state = self.state
        if command.p1 == 0x00:
            if state.load_needs_pin and not self._pin_verified:
                raise _Refused(StatusWord.SECURITY_STATUS_NOT_SATISFIED)
            if state.balance + amount > MAX_BALANCE or state.online_serial >= MAX_SERIAL:
                raise _Refused(StatusWord.CONDITIONS_NOT_SATISFIED)
            random = self._random(4)
            session_key = crypto.load_session_key(state.keys.load, random, state.online_serial)
            mac1 = crypto.load_mac1(
                session_key, old_balance=state.balance, amount=amount, terminal_id=terminal_id
            )
            self._session = _LoadSession(session_key, amount, terminal_id)
            answer = b"".join(
                (
                    state.balance.to_bytes(4, "big"),
                    state.online_serial.to_bytes(2, "big"),
                    bytes((state.key_version, crypto.ALGORITHM_3DES)),
                    random,
                    mac1,
                )
            )
            return self._ok(answer)
        if amount > state.balance + state.overdraw_limit:
            raise _Refused(StatusWord.INSUFFICIENT_BALANCE)
        if state.offline_serial >= MAX_SERIAL:
            raise _Refused(StatusWord.CONDITIONS_NOT_SATISFIED)
        random = self._random(4)
        transaction_type = (
            crypto.TRANSACTION_PURCHASE if command.p1 == 0x01 else crypto.TRANSACTION_CAPP_PURCHASE
        )
        self._session = _PurchaseSession(transaction_type, random, amount, terminal_id)
        answer = b"".join(
            (
                state.balance.to_bytes(4, "big"),
                state.offline_serial.to_bytes(2, "big"),
                state.overdraw_limit.to_bytes(3, "big"),
                bytes((state.key_version, crypto.ALGORITHM_3DES)),
                random,
            )
        )
        return self._ok(answer)

    def _credit_for_load(self, command: Command) -> Response:
        self._shape(command, data=11, le=4, p1p2=(0x00, 0x00))
        session, self._session = self._session, None
        if not isinstance(session, _LoadSession) or not self._in_application:
            raise _Refused(StatusWord.CONDITIONS_NOT_SATISFIED)
        self._require_intact()
        date, time, mac2 = command.data[0:4], command.data[4:7], command.data[7:11]
        expected = crypto.load_mac2(
            session.session_key, amount=session.amount, terminal_id=session.terminal_id, date=date, time=time
        )
        if not crypto.macs_equal(expected, mac2):
            raise _Refused(StatusWord.MAC_INVALID)
        state = self.state
        serial = state.online_serial
        state.balance += session.amount
        state.online_serial += 1
        tac = crypto.load_tac(
            state.keys.tac,
            new_balance=state.balance,
            online_serial=serial,
            amount=session.amount,
            terminal_id=session.terminal_id,
            date=date,
            time=time,
        )
        self._append_log(
            serial=serial,
            amount=session.amount,
            transaction_type=crypto.TRANSACTION_LOAD,
            terminal_id=session.terminal_id,
            moment=date + time,
        )
        state.last_load = Proof(crypto.TRANSACTION_LOAD, serial, mac2, tac)
        return self._ok(tac)

    def _update_capp_data_cache(self, command: Command) -> Response:
        self._shape(command, data=EntryExitRecord.SIZE, le=None, p1p2=CAPP_P1P2)
        session = self._session
        if (
            not isinstance(session, _PurchaseSession)
            or session.transaction_type != crypto.TRANSACTION_CAPP_PURCHASE
            or not command.data.startswith(ENTRY_EXIT_HEADER)
        ):
            raise _Refused(StatusWord.CONDITIONS_NOT_SATISFIED)
        self._require_intact()
        self._session = replace(session, cache=command.data)
        return self._ok()

    def _debit_for_purchase(self, command: Command) -> Response:
        self._shape(command, data=15, le=8, p1p2=(0x01, 0x00))
        session, self._session = self._session, None
        if not isinstance(session, _PurchaseSession) or not self._in_application:
            raise _Refused(StatusWord.CONDITIONS_NOT_SATISFIED)
        self._require_intact()
        state = self.state
        terminal_serial = int.from_bytes(command.data[0:4], "big")
        date, time, mac1 = command.data[4:8], command.data[8:11], command.data[11:15]
        serial = state.offline_serial
        session_key = crypto.purchase_session_key(
            state.keys.purchase, session.random, serial, terminal_serial
        )
        expected = crypto.purchase_mac1(
            session_key,
            amount=session.amount,
            transaction_type=session.transaction_type,
            terminal_id=session.terminal_id,
            date=date,
            time=time,
        )
        if not crypto.macs_equal(expected, mac1):
            raise _Refused(StatusWord.MAC_INVALID)
        if session.amount > state.balance + state.overdraw_limit:
            raise _Refused(StatusWord.INSUFFICIENT_BALANCE)
        state.balance -= session.amount
        state.offline_serial += 1
        if session.cache is not None:
            state.entry_exit = session.cache
        tac = crypto.purchase_tac(
            state.keys.tac,
            amount=session.amount,
            transaction_type=session.transaction_type,
            terminal_id=session.terminal_id,
            terminal_serial=terminal_serial,
            date=date,
            time=time,
        )
        mac2 = crypto.purchase_mac2(session_key, amount=session.amount)
        self._append_log(
            serial=serial,
            amount=session.amount,
            transaction_type=session.transaction_type,
            terminal_id=session.terminal_id,
            moment=date + time,
        )
        state.last_purchase = Proof(session.transaction_type, serial, mac2, tac)
        return self._ok(tac + mac2)

    def _get_transaction_prove(self, command: Command) -> Response:
        self._shape(command, data=2, le=8, p1p2=None)
        known = (crypto.TRANSACTION_LOAD, *sorted(crypto.PURCHASE_TYPES))
        if command.p1 != 0x00 or command.p2 not in known:
            raise _Refused(StatusWord.WRONG_P1P2)
        self._require_application(StatusWord.CONDITIONS_NOT_SATISFIED)
        proof = self.state.last_load if command.p2 == crypto.TRANSACTION_LOAD else self.state.last_purchase
        asked = int.from_bytes(command.data, "big")
        if proof is None or proof.transaction_type != command.p2:
            raise _Refused(StatusWord.PROOF_NOT_AVAILABLE)
        if asked != proof.serial + (1 if self.state.prove_serial_after else 0):
            raise _Refused(StatusWord.PROOF_NOT_AVAILABLE)
        return self._ok(proof.mac + proof.tac)


__all__ = [
    "DEFAULT_PIN",
    "CardState",
    "IssueFileContents",
    "Proof",
    "UserCardEmulator",
    "identity_bytes",
    "read_issue_file",
]
