"""The APDU codec of the ETC user card and the OBU's ESAM (spec §3): commands, answers, status words.

Only short APDUs (ISO 7816-4 cases 1-4: at most 255 bytes of data, Le up to 256). Builders make each
command of the spec; answer classes decode (and, for the emulator, encode) what the card sends back.
Nothing here computes a MAC: the host supplies them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum
from typing import ClassVar, Self

from etcwallet.core.i18n import Lang, pick
from etcwallet.issuance.chip.encoding import (
    InvalidField,
    date_bcd,
    require_int,
    require_length,
    time_bcd,
    uint_bytes,
)
from etcwallet.issuance.chip.files import CardholderFile, CardIssueFile, EntryExitRecord, TransactionRecord
from etcwallet.issuance.codes import TransactionType

ETC_AID = bytes.fromhex("A00000000386980701")
ETC_DF = bytes.fromhex("1001")


# --- status words ----------------------------------------------------------------------------------------


class StatusWord(IntEnum):
    """The status words the card and the OBU answer with."""

    OK = 0x9000
    MAC_INVALID = 0x9302
    INSUFFICIENT_BALANCE = 0x9401
    KEY_INDEX_NOT_SUPPORTED = 0x9403
    PROOF_NOT_AVAILABLE = 0x9406
    MEMORY_FAILURE = 0x6581
    WRONG_LENGTH = 0x6700
    SECURITY_STATUS_NOT_SATISFIED = 0x6982
    CONDITIONS_NOT_SATISFIED = 0x6985
    FILE_NOT_FOUND = 0x6A82
    RECORD_NOT_FOUND = 0x6A83
    WRONG_P1P2 = 0x6A86
    KEY_NOT_FOUND = 0x6A88
    INSTRUCTION_NOT_SUPPORTED = 0x6D00
    CLASS_NOT_SUPPORTED = 0x6E00

    @property
    def zh(self) -> str:
        return _MEANINGS[self][0]

    @property
    def en(self) -> str:
        return _MEANINGS[self][1]

    def text(self, lang: Lang) -> str:
        """What the status word means, in the caller's language."""
        return pick(lang, self.zh, self.en)


_MEANINGS: dict[StatusWord, tuple[str, str]] = {
    StatusWord.OK: ("成功", "success"),
    StatusWord.MAC_INVALID: ("MAC校验失败", "MAC invalid"),
    StatusWord.INSUFFICIENT_BALANCE: ("余额不足", "insufficient balance"),
    StatusWord.KEY_INDEX_NOT_SUPPORTED: ("不支持该密钥索引", "key index not supported"),
    StatusWord.PROOF_NOT_AVAILABLE: ("无法取得交易认证码", "transaction proof not available"),
    StatusWord.MEMORY_FAILURE: (
        "卡片存储器故障（卡片可能已损坏）",
        "memory failure (the card may be damaged)",
    ),
    StatusWord.WRONG_LENGTH: ("长度错误", "wrong length"),
    StatusWord.SECURITY_STATUS_NOT_SATISFIED: (
        "安全状态不满足（未校验PIN）",
        "security status not satisfied (PIN not verified)",
    ),
    StatusWord.CONDITIONS_NOT_SATISFIED: ("使用条件不满足", "conditions of use not satisfied"),
    StatusWord.FILE_NOT_FOUND: ("文件未找到", "file not found"),
    StatusWord.RECORD_NOT_FOUND: ("记录未找到", "record not found"),
    StatusWord.WRONG_P1P2: ("参数P1、P2错误", "wrong P1 or P2"),
    StatusWord.KEY_NOT_FOUND: ("密钥未找到", "key not found"),
    StatusWord.INSTRUCTION_NOT_SUPPORTED: ("不支持该指令", "instruction not supported"),
    StatusWord.CLASS_NOT_SUPPORTED: ("不支持该指令类别", "class not supported"),
}


class StatusWordError(Exception):
    """The card answered a command with a status word other than ``9000``."""

    def __init__(self, sw: int, command: str = "") -> None:
        self.sw = sw
        self.command = command
        try:
            self.status: StatusWord | None = StatusWord(sw)
        except ValueError:
            self.status = None
        self.zh = self.status.zh if self.status else f"卡片返回未知状态码 {sw:04X}"
        self.en = self.status.en if self.status else f"unknown status word {sw:04X}"
        super().__init__(f"{command or 'command'} answered {sw:04X}: {self.en}")


# --- command and response --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Command:
    """A short command APDU: header, optional data (Lc is its length), optional Le (1-256)."""

    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes = b""
    le: int | None = None

    def __post_init__(self) -> None:
        for name in ("cla", "ins", "p1", "p2"):
            require_int(name, getattr(self, name), 1)
        if len(self.data) > 255:
            raise InvalidField(
                "data", "too_long", "短APDU的数据最多255字节", "a short APDU carries at most 255 bytes"
            )
        if self.le is not None and not 1 <= self.le <= 256:
            raise InvalidField("le", "out_of_range", "Le应为1到256", "Le must be 1 to 256")

    def to_bytes(self) -> bytes:
        out = bytes((self.cla, self.ins, self.p1, self.p2))
        if self.data:
            out += bytes((len(self.data),)) + self.data
        if self.le is not None:
            out += bytes((self.le % 256,))
        return out

    @classmethod
    def parse(cls, apdu: bytes) -> Self:
        """A command from its bytes; a length that fits no short case is refused (the card answers 6700)."""
        apdu = bytes(apdu)
        if len(apdu) < 4:
            raise InvalidField("apdu", "too_short", "APDU至少4字节", "an APDU has at least 4 bytes")
        cla, ins, p1, p2 = apdu[:4]
        if len(apdu) == 4:
            return cls(cla, ins, p1, p2)
        if len(apdu) == 5:
            return cls(cla, ins, p1, p2, le=apdu[4] or 256)
        lc = apdu[4]
        if lc and len(apdu) == 5 + lc:
            return cls(cla, ins, p1, p2, data=apdu[5:])
        if lc and len(apdu) == 6 + lc:
            return cls(cla, ins, p1, p2, data=apdu[5:-1], le=apdu[-1] or 256)
        raise InvalidField("apdu", "wrong_length", "APDU长度与Lc不符", "the APDU's length does not match Lc")


@dataclass(frozen=True, slots=True)
class Response:
    """A response APDU: data and the two-byte status word."""

    data: bytes
    sw: int

    def __post_init__(self) -> None:
        require_int("sw", self.sw, 2)

    @classmethod
    def parse(cls, apdu: bytes) -> Self:
        apdu = bytes(apdu)
        if len(apdu) < 2:
            raise InvalidField("response", "too_short", "响应至少2字节", "a response has at least 2 bytes")
        return cls(apdu[:-2], int.from_bytes(apdu[-2:], "big"))

    @classmethod
    def status(cls, sw: int) -> Self:
        """An answer with no data, e.g. ``Response.status(StatusWord.MAC_INVALID)``."""
        return cls(b"", int(sw))

    def to_bytes(self) -> bytes:
        return self.data + self.sw.to_bytes(2, "big")

    @property
    def ok(self) -> bool:
        return self.sw == StatusWord.OK

    def expect_ok(self, command: str = "") -> bytes:
        """The data of a successful answer; any other status word raises :class:`StatusWordError`."""
        if not self.ok:
            raise StatusWordError(self.sw, command)
        return self.data


# --- command builders ------------------------------------------------------------------------------------


def _terminal(terminal_id: bytes) -> bytes:
    return require_length("terminal_id", terminal_id, 6)


def _mac(mac: bytes) -> bytes:
    return require_length("mac", mac, 4)


def _card_time(field: str, at: datetime) -> bytes:
    return date_bcd(field, at.date()) + time_bcd(field, at.time())


def select_aid(aid: bytes = ETC_AID) -> Command:
    """SELECT the ETC application by its AID (``00 A4 04 00 09 A0000000038698 0701``)."""
    return Command(0x00, 0xA4, 0x04, 0x00, aid)


def select_df(file_id: bytes = ETC_DF) -> Command:
    """SELECT a file by its two-byte identifier (``00 A4 00 00 02 10 01`` for the ETC ADF)."""
    return Command(0x00, 0xA4, 0x00, 0x00, require_length("file_id", file_id, 2))


def get_challenge(length: int = 4) -> Command:
    """GET CHALLENGE (``00 84 00 00 04``): the random that keys a line-protection MAC."""
    return Command(0x00, 0x84, 0x00, 0x00, le=length)


def verify_pin(pin: str) -> Command:
    """VERIFY PIN (``00 20 00 00 Lc PIN``): 4-12 digits packed as BCD, an odd count padded with ``F``."""
    if not (pin.isascii() and pin.isdigit() and 4 <= len(pin) <= 12):
        raise InvalidField("pin", "pin_format", "PIN应为4到12位数字", "a PIN is 4 to 12 digits")
    return Command(0x00, 0x20, 0x00, 0x00, bytes.fromhex(pin + "F" * (len(pin) % 2)))


def get_balance() -> Command:
    """GET BALANCE (``80 5C 00 02 04``)."""
    return Command(0x80, 0x5C, 0x00, 0x02, le=4)


def _initialize(p1: int, key_index: int, amount: int, terminal_id: bytes, le: int) -> Command:
    data = uint_bytes("key_index", key_index, 1) + uint_bytes("amount", amount, 4) + _terminal(terminal_id)
    return Command(0x80, 0x50, p1, 0x02, data, le)


def initialize_for_load(key_index: int, amount: int, terminal_id: bytes) -> Command:
    """INITIALIZE FOR LOAD (``80 50 00 02 0B`` key index, amount, terminal id, ``10``)."""
    return _initialize(0x00, key_index, amount, terminal_id, 0x10)


def initialize_for_purchase(key_index: int, amount: int, terminal_id: bytes) -> Command:
    """INITIALIZE FOR PURCHASE (``80 50 01 02 0B`` … ``0F``)."""
    return _initialize(0x01, key_index, amount, terminal_id, 0x0F)


def initialize_for_capp_purchase(key_index: int, amount: int, terminal_id: bytes) -> Command:
    """INITIALIZE FOR CAPP PURCHASE, the compound purchase of lanes and gantries (``80 50 03 02 0B`` … ``0F``)."""
    return _initialize(0x03, key_index, amount, terminal_id, 0x0F)


def credit_for_load(at: datetime, mac2: bytes) -> Command:
    """CREDIT FOR LOAD (``80 52 00 00 0B`` date, time, MAC2, ``04``)."""
    return Command(0x80, 0x52, 0x00, 0x00, _card_time("at", at) + _mac(mac2), 4)


def update_capp_data_cache(record: EntryExitRecord) -> Command:
    """UPDATE CAPP DATA CACHE (``80 DC AA C8 2B AA 29 00`` + 40 bytes): the 0019 record of a compound purchase."""
    return Command(0x80, 0xDC, 0xAA, 0xC8, record.to_bytes())


def debit_for_purchase(terminal_serial: int, at: datetime, mac1: bytes) -> Command:
    """DEBIT FOR PURCHASE (``80 54 01 00 0F`` terminal transaction serial, date, time, MAC1, ``08``)."""
    data = uint_bytes("terminal_serial", terminal_serial, 4) + _card_time("at", at) + _mac(mac1)
    return Command(0x80, 0x54, 0x01, 0x00, data, 8)


def get_transaction_prove(transaction_type: TransactionType, serial: int) -> Command:
    """GET TRANSACTION PROVE (``80 5A 00 <type> 02`` serial ``08``): MAC and TAC of a finished transaction."""
    return Command(0x80, 0x5A, 0x00, int(transaction_type), uint_bytes("serial", serial, 2), 8)


def read_record_0018(number: int) -> Command:
    """READ RECORD of the transaction log (``00 B2 <n> C4 17``), record 1 the newest of 10."""
    if not 1 <= number <= 10:
        raise InvalidField("record", "out_of_range", "记录号应为1到10", "a record number is 1 to 10")
    return Command(0x00, 0xB2, number, 0xC4, le=TransactionRecord.SIZE)


def read_binary_0015() -> Command:
    """READ BINARY of the card issue file (``00 B0 95 00 32``)."""
    return Command(0x00, 0xB0, 0x95, 0x00, le=CardIssueFile.SIZE)


def read_binary_0016() -> Command:
    """READ BINARY of the cardholder file (``00 B0 96 00 37``)."""
    return Command(0x00, 0xB0, 0x96, 0x00, le=CardholderFile.SIZE)


def secured_update_binary(sfi: int, offset: int, data: bytes, mac: bytes) -> Command:
    """UPDATE BINARY with secure messaging (``04 D6 <80|sfi> <offset> Lc`` data ‖ MAC).

    0015 re-issuance is ``secured_update_binary(0x15, 20, 23 bytes, mac)``; the OBU's tamper byte is
    ``secured_update_binary(0x01, 26, flag, mac)``.
    """
    return Command(*_secured_header(sfi, offset), data + _mac(mac))


def secured_update_mac_input(sfi: int, offset: int, data: bytes) -> bytes:
    """The bytes a line-protection MAC covers: the command's header and Lc (counting the MAC), then the data."""
    return bytes((*_secured_header(sfi, offset), len(data) + 4)) + data


def _secured_header(sfi: int, offset: int) -> tuple[int, int, int, int]:
    if not 1 <= sfi <= 0x1F:
        raise InvalidField("sfi", "out_of_range", "短文件标识应为1到31", "a short file identifier is 1 to 31")
    return (0x04, 0xD6, 0x80 | sfi, require_int("offset", offset, 1))


# --- answers ---------------------------------------------------------------------------------------------


class Answer:
    """A fixed-size answer: ``from_response`` checks the status word and the length."""

    SIZE: ClassVar[int]

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        raise NotImplementedError

    @classmethod
    def from_response(cls, response: Response) -> Self:
        return cls.from_bytes(response.expect_ok(cls.__name__))


@dataclass(frozen=True, slots=True)
class Balance(Answer):
    """GET BALANCE: the e-purse balance in fen."""

    SIZE = 4
    balance: int

    def __post_init__(self) -> None:
        require_int("balance", self.balance, 4)

    def to_bytes(self) -> bytes:
        return uint_bytes("balance", self.balance, 4)

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        return cls(int.from_bytes(require_length("balance", data, cls.SIZE), "big"))


@dataclass(frozen=True, slots=True)
class LoadInit(Answer):
    """INITIALIZE FOR LOAD's answer: the card's state before the load and its MAC1."""

    SIZE = 16
    old_balance: int
    online_serial: int
    key_version: int
    algorithm_id: int
    random: bytes
    mac1: bytes

    def __post_init__(self) -> None:
        require_int("old_balance", self.old_balance, 4)
        require_int("online_serial", self.online_serial, 2)
        require_int("key_version", self.key_version, 1)
        require_int("algorithm_id", self.algorithm_id, 1)
        require_length("random", self.random, 4)
        require_length("mac1", self.mac1, 4)

    def to_bytes(self) -> bytes:
        return (
            self.old_balance.to_bytes(4, "big")
            + self.online_serial.to_bytes(2, "big")
            + bytes((self.key_version, self.algorithm_id))
            + self.random
            + self.mac1
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        data = require_length("load_init", data, cls.SIZE)
        return cls(
            int.from_bytes(data[0:4], "big"),
            int.from_bytes(data[4:6], "big"),
            data[6],
            data[7],
            data[8:12],
            data[12:16],
        )


@dataclass(frozen=True, slots=True)
class PurchaseInit(Answer):
    """INITIALIZE FOR (CAPP) PURCHASE's answer."""

    SIZE = 15
    balance: int
    offline_serial: int
    overdraw_limit: int
    key_version: int
    algorithm_id: int
    random: bytes

    def __post_init__(self) -> None:
        require_int("balance", self.balance, 4)
        require_int("offline_serial", self.offline_serial, 2)
        require_int("overdraw_limit", self.overdraw_limit, 3)
        require_int("key_version", self.key_version, 1)
        require_int("algorithm_id", self.algorithm_id, 1)
        require_length("random", self.random, 4)

    def to_bytes(self) -> bytes:
        return (
            self.balance.to_bytes(4, "big")
            + self.offline_serial.to_bytes(2, "big")
            + self.overdraw_limit.to_bytes(3, "big")
            + bytes((self.key_version, self.algorithm_id))
            + self.random
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        data = require_length("purchase_init", data, cls.SIZE)
        return cls(
            int.from_bytes(data[0:4], "big"),
            int.from_bytes(data[4:6], "big"),
            int.from_bytes(data[6:9], "big"),
            data[9],
            data[10],
            data[11:15],
        )


@dataclass(frozen=True, slots=True)
class LoadCredit(Answer):
    """CREDIT FOR LOAD's answer: the TAC proving the credit."""

    SIZE = 4
    tac: bytes

    def __post_init__(self) -> None:
        require_length("tac", self.tac, 4)

    def to_bytes(self) -> bytes:
        return self.tac

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        return cls(require_length("tac", data, cls.SIZE))


@dataclass(frozen=True, slots=True)
class PurchaseDebit(Answer):
    """DEBIT FOR PURCHASE's answer: TAC ‖ MAC2."""

    SIZE = 8
    tac: bytes
    mac2: bytes

    def __post_init__(self) -> None:
        require_length("tac", self.tac, 4)
        require_length("mac2", self.mac2, 4)

    def to_bytes(self) -> bytes:
        return self.tac + self.mac2

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        data = require_length("purchase_debit", data, cls.SIZE)
        return cls(data[:4], data[4:])


@dataclass(frozen=True, slots=True)
class TransactionProof(Answer):
    """GET TRANSACTION PROVE's answer: MAC ‖ TAC (a missing proof is the status word 9406)."""

    SIZE = 8
    mac: bytes
    tac: bytes

    def __post_init__(self) -> None:
        require_length("mac", self.mac, 4)
        require_length("tac", self.tac, 4)

    def to_bytes(self) -> bytes:
        return self.mac + self.tac

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        data = require_length("transaction_proof", data, cls.SIZE)
        return cls(data[:4], data[4:])


@dataclass(frozen=True, slots=True)
class Challenge(Answer):
    """GET CHALLENGE's answer: 4 random bytes, the left half of a line-protection MAC's IV."""

    SIZE = 4
    random: bytes

    def __post_init__(self) -> None:
        require_length("random", self.random, 4)

    def to_bytes(self) -> bytes:
        return self.random

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        return cls(require_length("random", data, cls.SIZE))

    @property
    def iv(self) -> bytes:
        """The MAC's initial vector: the challenge ‖ ``00000000``."""
        return self.random + bytes(4)


def read_card_issue_file(response: Response) -> CardIssueFile:
    """The 0015 file from READ BINARY's answer."""
    return CardIssueFile.from_bytes(response.expect_ok("READ BINARY 0015"))


def read_cardholder_file(response: Response) -> CardholderFile:
    """The 0016 file from READ BINARY's answer."""
    return CardholderFile.from_bytes(response.expect_ok("READ BINARY 0016"))


def read_transaction_record(response: Response) -> TransactionRecord:
    """One 0018 record from READ RECORD's answer (``6A83`` when the log holds no such record)."""
    return TransactionRecord.from_bytes(response.expect_ok("READ RECORD 0018"))
