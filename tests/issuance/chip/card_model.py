"""A tiny test-only model of the card's side of a load and of a protected write.

It computes what the card computes, from the keys a card is personalised with, on its own code path: the
MACs are CBC encryptions done here with the ``cryptography`` package, not through ``chip.crypto``, so a host
and a card that agree have not merely called the same function twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes

from etcwallet.issuance.chip.keys import CardKeys


class CardRefusal(Exception):
    """The card answers a status word other than 9000."""

    def __init__(self, status: str) -> None:
        super().__init__(status)
        self.status = status


def _encrypt_cbc(key: bytes, data: bytes, iv: bytes) -> bytes:
    full = key + key[:8] if len(key) == 16 else key * 3
    encryptor = Cipher(TripleDES(full), modes.CBC(iv)).encryptor()
    return encryptor.update(data) + encryptor.finalize()


def _padded(data: bytes) -> bytes:
    data += b"\x80"
    return data + bytes(-len(data) % 8)


def card_mac(key8: bytes, data: bytes) -> bytes:
    """The card's e-purse MAC: single-DES CBC, IV zero, 80 00… padding, left 4 bytes."""
    return _encrypt_cbc(key8, _padded(data), bytes(8))[-8:][:4]


def card_line_mac(key16: bytes, challenge: bytes, data: bytes) -> bytes:
    """The card's check of a protected command: DES-CBC with the left key half, 3DES on the last block."""
    blocks = _padded(data)
    chained = challenge + bytes(4)
    if len(blocks) > 8:
        chained = _encrypt_cbc(key16[:8], blocks[:-8], chained)[-8:]
    last = bytes(a ^ b for a, b in zip(chained, blocks[-8:], strict=True))
    return _encrypt_cbc(key16, last, bytes(8))[:4]


@dataclass
class CardModel:
    """An e-purse with its keys, balance and online serial; one INITIALIZE opens one load session."""

    keys: CardKeys
    balance: int = 0
    online_serial: int = 0
    key_version: int = 0x40
    files: dict[int, bytearray] = field(default_factory=lambda: {0x15: bytearray(50)})
    _pending: tuple[bytes, int, bytes, bytes] | None = None  # session key, amount, terminal, random
    _challenge: bytes | None = None

    def initialize_for_load(self, command: bytes, random: bytes) -> bytes:
        """INITIALIZE FOR LOAD: answer old balance, serial, key version, algorithm 00, random, MAC1."""
        assert command[:5] == bytes.fromhex("805000020B") and command[-1] == 0x10
        amount = int.from_bytes(command[6:10], "big")
        terminal = command[10:16]
        encryptor = Cipher(TripleDES(self.keys.load + self.keys.load[:8]), modes.ECB()).encryptor()
        session_key = encryptor.update(random + self.online_serial.to_bytes(2, "big") + b"\x80\x00")
        mac1 = card_mac(
            session_key, self.balance.to_bytes(4, "big") + amount.to_bytes(4, "big") + b"\x02" + terminal
        )
        self._pending = (session_key, amount, terminal, random)
        return (
            self.balance.to_bytes(4, "big")
            + self.online_serial.to_bytes(2, "big")
            + bytes([self.key_version, 0x00])
            + random
            + mac1
        )

    def credit_for_load(self, command: bytes) -> bytes:
        """CREDIT FOR LOAD: check MAC2, credit, raise the serial, answer the TAC (or refuse with 9302)."""
        assert command[:5] == bytes.fromhex("805200000B") and command[-1] == 0x04
        if self._pending is None:
            raise CardRefusal("6985")
        session_key, amount, terminal, _ = self._pending
        date, time, mac2 = command[5:9], command[9:12], command[12:16]
        if card_mac(session_key, amount.to_bytes(4, "big") + b"\x02" + terminal + date + time) != mac2:
            self._pending = None
            raise CardRefusal("9302")
        serial = self.online_serial
        self.balance += amount
        self.online_serial += 1
        self._pending = None
        tac_key = bytes(a ^ b for a, b in zip(self.keys.tac[:8], self.keys.tac[8:], strict=True))
        return card_mac(
            tac_key,
            self.balance.to_bytes(4, "big")
            + serial.to_bytes(2, "big")
            + amount.to_bytes(4, "big")
            + b"\x02"
            + terminal
            + date
            + time,
        )

    def get_challenge(self, challenge: bytes) -> bytes:
        """GET CHALLENGE (4 bytes): the IV of the next protected command."""
        self._challenge = challenge
        return challenge

    def update_binary_protected(self, command: bytes) -> None:
        """UPDATE BINARY with secure messaging: check the MAC under the last challenge, then write."""
        if self._challenge is None:
            raise CardRefusal("6984")
        challenge, self._challenge = self._challenge, None
        body, mac = command[:-4], command[-4:]
        assert body[0] == 0x04 and body[1] == 0xD6 and body[4] == len(command) - 5
        if card_line_mac(self.keys.maintenance, challenge, body) != mac:
            raise CardRefusal("6988")
        sfi, offset, data = body[2] & 0x1F, body[3], body[5:]
        self.files[sfi][offset : offset + len(data)] = data
