"""The one reader interface the host talks through, and its PC/SC backend for real desktop readers.

The host side (MAC checks, MAC2, TAC, diversification) sees only :class:`Reader`: ``transmit`` sends a
command APDU and returns the response APDU's bytes. A card taken out of the field mid-command raises
:class:`CardRemoved`; the command may or may not have taken effect, as on a real card, so the caller
re-reads the card before deciding. Anything else wrong with the reader raises :class:`ReaderError`.

The emulator backend (a virtual user card and OBU, the default) comes in the next session and will
implement the same protocol. :class:`PcscReader` needs the optional ``pcsc`` extra (pyscard), imported
only when a PC/SC reader is used.
"""

from __future__ import annotations

import asyncio
import importlib
from types import ModuleType
from typing import Any, Protocol

from etcwallet.issuance.chip.apdu import Command, Response


class ReaderError(Exception):
    """The reader could not carry a command: a stable code and a reason in zh-CN and English."""

    def __init__(self, code: str, zh: str, en: str) -> None:
        super().__init__(en)
        self.code, self.zh, self.en = code, zh, en


class CardRemoved(ReaderError):
    """No card (or tag) in the field, or it left during the command: whether the command took effect is unknown."""

    def __init__(
        self,
        zh: str = "卡片已离开读卡器，请重新放置后再试",
        en: str = "the card left the reader; put it back and try again",
    ) -> None:
        super().__init__("card_removed", zh, en)


class Reader(Protocol):
    """A contact or contactless reader with one card or tag in its field."""

    async def transmit(self, apdu: bytes) -> bytes:
        """Send a command APDU and return the response APDU (data ‖ SW1 SW2)."""
        ...

    async def present(self) -> bool:
        """Whether a card is in the field now (not a promise that the next command reaches it)."""
        ...


async def exchange(reader: Reader, command: Command) -> Response:
    """Send a command and return its answer, following T=0's ``61xx`` (GET RESPONSE) and ``6Cxx`` (retry with Le)."""
    response = Response.parse(await reader.transmit(command.to_bytes()))
    if response.sw >> 8 == 0x6C:
        retry = Command(
            command.cla, command.ins, command.p1, command.p2, command.data, response.sw & 0xFF or 256
        )
        response = Response.parse(await reader.transmit(retry.to_bytes()))
    data = b""
    while response.sw >> 8 == 0x61:
        data += response.data
        get_response = Command(0x00, 0xC0, 0x00, 0x00, le=response.sw & 0xFF or 256)
        response = Response.parse(await reader.transmit(get_response.to_bytes()))
    return Response(data + response.data, response.sw) if data else response


def _pyscard() -> tuple[ModuleType, ModuleType]:
    """pyscard's ``smartcard.System`` and ``smartcard.Exceptions``, or a clear error if the extra is missing."""
    try:
        return importlib.import_module("smartcard.System"), importlib.import_module("smartcard.Exceptions")
    except ImportError as missing:
        raise ReaderError(
            "pcsc_unavailable",
            "未安装PC/SC读卡器支持：请安装 etcwallet[pcsc]（pyscard）",
            "PC/SC reader support is not installed: install etcwallet[pcsc] (pyscard)",
        ) from missing


class PcscReader:
    """A PC/SC reader through pyscard (the ``pcsc`` extra); pyscard's blocking calls run in a thread.

    ``name`` picks the first reader whose name contains it; without it, the first reader.
    """

    def __init__(self, name: str | None = None) -> None:
        self._system, self._errors = _pyscard()
        self._name = name
        self._connection: Any = None

    def _reader(self) -> Any:
        readers = [r for r in self._system.readers() if self._name is None or self._name in str(r)]
        if not readers:
            raise ReaderError("reader_not_found", "未找到读卡器", "no such card reader is connected")
        return readers[0]

    def _connect(self) -> Any:
        if self._connection is None:
            connection = self._reader().createConnection()
            try:
                connection.connect()
            except (self._errors.NoCardException, self._errors.CardConnectionException) as absent:
                raise CardRemoved() from absent
            self._connection = connection
        return self._connection

    def _transmit(self, apdu: bytes) -> bytes:
        connection = self._connect()
        try:
            data, sw1, sw2 = connection.transmit(list(apdu))
        except self._errors.CardConnectionException as lost:
            self._connection = None
            raise CardRemoved() from lost
        return bytes(data) + bytes((sw1, sw2))

    def _present(self) -> bool:
        try:
            self._connect()
        except CardRemoved:
            return False
        return True

    async def transmit(self, apdu: bytes) -> bytes:
        return await asyncio.to_thread(self._transmit, bytes(apdu))

    async def present(self) -> bool:
        return await asyncio.to_thread(self._present)
