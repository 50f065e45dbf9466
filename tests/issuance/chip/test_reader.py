"""The reader interface: T=0 chaining in ``exchange`` and the PC/SC backend's missing-extra error."""

from __future__ import annotations

import builtins
from typing import Any

import pytest

from etcwallet.issuance.chip import reader as reader_module
from etcwallet.issuance.chip.apdu import Command, Response, get_balance, read_binary_0015
from etcwallet.issuance.chip.reader import CardRemoved, PcscReader, Reader, ReaderError, exchange


class ScriptedReader:
    """Answers each command with the next scripted response and remembers what it was sent."""

    def __init__(self, *answers: str) -> None:
        self.answers = [bytes.fromhex(a) for a in answers]
        self.sent: list[bytes] = []

    async def transmit(self, apdu: bytes) -> bytes:
        self.sent.append(apdu)
        if not self.answers:
            raise CardRemoved()
        return self.answers.pop(0)

    async def present(self) -> bool:
        return bool(self.answers)


async def test_exchange_returns_the_answer() -> None:
    scripted = ScriptedReader("000027109000")
    reader: Reader = scripted
    assert await exchange(reader, get_balance()) == Response(bytes.fromhex("00002710"), 0x9000)


async def test_exchange_follows_61xx_with_get_response() -> None:
    scripted = ScriptedReader("6104", "000027109000")
    assert (await exchange(scripted, get_balance())).data == bytes.fromhex("00002710")
    assert scripted.sent[1] == bytes.fromhex("00C0000004")


async def test_exchange_resends_with_the_le_a_6cxx_names() -> None:
    scripted = ScriptedReader("6C32", "00" * 50 + "9000")
    assert len((await exchange(scripted, Command(0, 0xB0, 0x95, 0, le=10))).data) == 50
    assert scripted.sent[1] == read_binary_0015().to_bytes()


async def test_a_card_leaving_raises_card_removed() -> None:
    scripted = ScriptedReader()
    assert not await scripted.present()
    with pytest.raises(CardRemoved) as removed:
        await exchange(scripted, get_balance())
    assert removed.value.code == "card_removed" and isinstance(removed.value, ReaderError)


def test_pcsc_without_pyscard_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_smartcard(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("smartcard"):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_smartcard)
    monkeypatch.setattr(reader_module.importlib, "import_module", lambda name: no_smartcard(name))
    with pytest.raises(ReaderError) as missing:
        PcscReader()
    assert missing.value.code == "pcsc_unavailable" and "etcwallet[pcsc]" in missing.value.en
