"""The host's side of the card cryptography (spec §4, §5, §6): pure functions on bytes, no state, no I/O.

Everything is built on the ``cryptography`` package's block ciphers (TripleDES, SM4); nothing here is a
hand-written cipher, only the modes around them that card standards use: ISO 9797-1 paddings, the
single-DES CBC-MAC of the e-purse, the retail MAC (ISO 9797-1 algorithm 3) of line protection, and the
PBOC key diversification. Amounts, balances and serials are ints and encoded big-endian here; dates and
times are BCD bytes (``YYYYMMDD``, ``hhmmss``); keys, randoms and terminal ids are bytes.

The e-purse algorithm is a strategy chosen by the card's algorithm id: ``00`` (3DES) is checked against
the spec's vectors; ``04`` (SM4) is the same construction with 16-byte blocks, believed but unverified
(spec §4 **[?]**), so :func:`purse_algorithm` refuses it unless asked for explicitly.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Literal

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import BlockCipherAlgorithm, Cipher, algorithms, modes

DES_BLOCK = 8
SM4_BLOCK = 16
ALGORITHM_3DES = 0x00
ALGORITHM_SM4 = 0x04
TRANSACTION_LOAD = 0x02
TRANSACTION_PURCHASE = 0x06
TRANSACTION_CAPP_PURCHASE = 0x09
PURCHASE_TYPES = frozenset({TRANSACTION_PURCHASE, TRANSACTION_CAPP_PURCHASE})
MAC_SIZE = 4

Padding = Literal[0, 1, 2, 3]


class UnsupportedAlgorithm(ValueError):
    """The card names an algorithm id the host does not (or, for SM4, not yet knowingly) support."""


# --- ISO 9797-1 paddings ----------------------------------------------------------------------------


def pad_method_1(data: bytes, block_size: int = DES_BLOCK) -> bytes:
    """ISO 9797-1 padding method 1: zeros to a whole number of blocks (one zero block for empty data)."""
    if data and len(data) % block_size == 0:
        return data
    return data + bytes(-len(data) % block_size or block_size)


def pad_method_2(data: bytes, block_size: int = DES_BLOCK) -> bytes:
    """ISO 9797-1 padding method 2 (the cards' ``80 00…``): always a ``80``, then zeros to a whole block."""
    return pad_method_1(data + b"\x80", block_size)


def pad_method_3(data: bytes, block_size: int = DES_BLOCK) -> bytes:
    """ISO 9797-1 padding method 3: a block holding the data's length in bits, then the data zero-padded."""
    return (len(data) * 8).to_bytes(block_size, "big") + pad_method_1(data, block_size)


def pad(data: bytes, method: Padding, block_size: int = DES_BLOCK) -> bytes:
    """``data`` padded by ISO 9797-1 method 1, 2 or 3; method 0 means none (the data must fill whole blocks)."""
    if method == 0:
        if len(data) % block_size or not data:
            raise ValueError(f"unpadded MAC data must be a non-empty multiple of {block_size} bytes")
        return data
    if method == 1:
        return pad_method_1(data, block_size)
    if method == 2:
        return pad_method_2(data, block_size)
    if method == 3:
        return pad_method_3(data, block_size)
    raise ValueError(f"unknown ISO 9797-1 padding method {method}")


# --- block ciphers ------------------------------------------------------------------------------------


def _des_algorithm(key: bytes) -> TripleDES:
    """TripleDES for an 8-byte (single DES, as K‖K‖K), 16-byte (K1‖K2‖K1) or 24-byte key."""
    if len(key) == 8:
        return TripleDES(key * 3)
    if len(key) == 16:  # two-key 3DES, spelled as three keys (the library deprecates 16-byte keys)
        return TripleDES(key + key[:8])
    if len(key) == 24:
        return TripleDES(key)
    raise ValueError(f"a DES key is 8, 16 or 24 bytes, got {len(key)}")


def _ecb_encrypt(algorithm: BlockCipherAlgorithm, data: bytes) -> bytes:
    encryptor = Cipher(algorithm, modes.ECB()).encryptor()
    return encryptor.update(data) + encryptor.finalize()


def _cbc_last_block(algorithm: BlockCipherAlgorithm, data: bytes, iv: bytes) -> bytes:
    encryptor = Cipher(algorithm, modes.CBC(iv)).encryptor()
    out = encryptor.update(data) + encryptor.finalize()
    return out[-len(iv) :]


def des_encrypt(key: bytes, data: bytes) -> bytes:
    """DES or 3DES ECB encryption of whole 8-byte blocks (the key's length picks single or triple DES)."""
    if not data or len(data) % DES_BLOCK:
        raise ValueError("DES encrypts whole 8-byte blocks")
    return _ecb_encrypt(_des_algorithm(key), data)


def des_decrypt(key: bytes, data: bytes) -> bytes:
    """DES or 3DES ECB decryption of whole 8-byte blocks (the inverse of :func:`des_encrypt`)."""
    if not data or len(data) % DES_BLOCK:
        raise ValueError("DES decrypts whole 8-byte blocks")
    decryptor = Cipher(_des_algorithm(key), modes.ECB()).decryptor()
    return decryptor.update(data) + decryptor.finalize()


def unpad_method_2(data: bytes) -> bytes:
    """The data before ISO 9797-1 padding 2 (the last ``80``, then only zeros); malformed padding raises."""
    stripped = data.rstrip(b"\x00")
    if not stripped or stripped[-1] != 0x80 or len(data) - len(stripped) >= DES_BLOCK:
        raise ValueError("the data does not end in 80 00… padding")
    return stripped[:-1]


def challenge_session_key(key: bytes, challenge: bytes) -> bytes:
    """A 16-byte session key for an encrypted read **[?]**: the card key diversified (PBOC) by the 4-byte
    challenge ‖ ``00000000``, so each challenge keys one answer. Not from a public source: the OBU's
    vehicle file is "readable only encrypted" (spec §8) and this is our emulator's and host's agreement."""
    if len(challenge) != 4:
        raise ValueError(f"the challenge is 4 bytes, got {len(challenge)}")
    return diversify(key, challenge + bytes(4))


def encrypt_padded(key: bytes, data: bytes) -> bytes:
    """3DES-ECB of the data padded ``80 00…`` to whole blocks."""
    return des_encrypt(key, pad_method_2(data))


def decrypt_padded(key: bytes, data: bytes) -> bytes:
    """The inverse of :func:`encrypt_padded`; malformed padding (a wrong key, most likely) raises ValueError."""
    return unpad_method_2(des_decrypt(key, data))


def sm4_encrypt(key: bytes, data: bytes) -> bytes:
    """SM4 ECB encryption of whole 16-byte blocks under a 16-byte key."""
    if not data or len(data) % SM4_BLOCK:
        raise ValueError("SM4 encrypts whole 16-byte blocks")
    return _ecb_encrypt(algorithms.SM4(key), data)


def cbc_mac(
    algorithm: BlockCipherAlgorithm, data: bytes, *, iv: bytes | None = None, padding: Padding = 2
) -> bytes:
    """The last block of a CBC encryption of the padded data: the full-length CBC-MAC (ISO 9797-1 algorithm 1)."""
    block = algorithm.block_size // 8
    return _cbc_last_block(algorithm, pad(data, padding, block), iv or bytes(block))


def des_cbc_mac(key: bytes, data: bytes, *, iv: bytes = bytes(DES_BLOCK), padding: Padding = 2) -> bytes:
    """The 8-byte CBC-MAC under a DES key (8 bytes: the e-purse session keys)."""
    return cbc_mac(_des_algorithm(key), data, iv=iv, padding=padding)


def retail_mac(key: bytes, data: bytes, *, iv: bytes = bytes(DES_BLOCK), padding: Padding = 2) -> bytes:
    """ISO 9797-1 MAC algorithm 3 (the retail MAC) under a 16-byte key K1‖K2: single-DES CBC with K1 over
    every block, then the last block decrypted with K2 and encrypted with K1 again, which is the same as
    3DES (K1, K2, K1) on the last chained block. 8 bytes; card protocols keep the left 4."""
    if len(key) != 16:
        raise ValueError(f"the retail MAC takes a 16-byte key, got {len(key)}")
    padded = pad(data, padding, DES_BLOCK)
    head, last = padded[:-DES_BLOCK], padded[-DES_BLOCK:]
    chained = _cbc_last_block(_des_algorithm(key[:8]), head, iv) if head else iv
    return des_encrypt(key, bytes(a ^ b for a, b in zip(chained, last, strict=True)))


def line_protection_mac(key: bytes, challenge: bytes, data: bytes) -> bytes:
    """The MAC a card checks on a secure-messaging command (spec §2): the retail MAC under the card's
    16-byte key, IV = the card's 4-byte challenge ‖ ``00000000``, padding ``80 00…``, left 4 bytes.
    ``data`` is the whole command before the MAC: header (with Lc counting the MAC) and data."""
    if len(challenge) != 4:
        raise ValueError(f"the card's challenge is 4 bytes, got {len(challenge)}")
    return retail_mac(key, data, iv=challenge + bytes(4), padding=2)[:MAC_SIZE]


def macs_equal(expected: bytes, given: bytes) -> bool:
    """Constant-time comparison of two MACs or TACs."""
    return hmac.compare_digest(expected, given)


# --- the e-purse algorithm, by algorithm id -----------------------------------------------------------


@dataclass(frozen=True)
class PurseAlgorithm:
    """One way of building the e-purse's keys and MACs (spec §4-§6), chosen by the card's algorithm id.

    ``block_size`` is the cipher's block: session keys are one block encrypted under the card key, MACs
    are CBC-MACs padded by ISO 9797-1 method 2 to that block, and cut to 4 bytes.
    """

    algorithm_id: int
    name: str
    block_size: int
    verified: bool

    def encrypt(self, key: bytes, data: bytes) -> bytes:
        """ECB encryption under a card key (16 bytes either way)."""
        return des_encrypt(key, data) if self.block_size == DES_BLOCK else sm4_encrypt(key, data)

    def diversify(self, key: bytes, factor: bytes) -> bytes:
        """PBOC diversification of a 16-byte key by an 8-byte factor: ``E(K, f) ‖ E(K, NOT f)`` for 3DES;
        for SM4 one 16-byte block ``E(K, f ‖ NOT f)`` **[?]**."""
        if len(key) != 16 or len(factor) != 8:
            raise ValueError("diversification takes a 16-byte key and an 8-byte factor")
        inverted = bytes(b ^ 0xFF for b in factor)
        if self.block_size == DES_BLOCK:
            return des_encrypt(key, factor) + des_encrypt(key, inverted)
        return sm4_encrypt(key, factor + inverted)

    def session_key(self, key: bytes, seed: bytes) -> bytes:
        """A transaction's session key: the 8-byte seed (random ‖ serial ‖ …) encrypted under the card key;
        for SM4 the seed is first padded by method 2 to 16 bytes **[?]**."""
        if len(seed) != 8:
            raise ValueError("a session key seed is 8 bytes")
        block = seed if self.block_size == DES_BLOCK else pad_method_2(seed, SM4_BLOCK)
        return self.encrypt(key, block)

    def mac(self, key: bytes, data: bytes) -> bytes:
        """The e-purse MAC: CBC-MAC with IV zero, padding ``80 00…``, left 4 bytes."""
        if self.block_size == DES_BLOCK:
            return des_cbc_mac(key, data)[:MAC_SIZE]
        return cbc_mac(algorithms.SM4(key), data)[:MAC_SIZE]

    def tac_key(self, dtk: bytes) -> bytes:
        """The key TACs are computed with: ``DTK_left XOR DTK_right`` (8 bytes) for 3DES; the whole DTK for
        SM4 **[?]**."""
        if len(dtk) != 16:
            raise ValueError("a TAC key (DTK) is 16 bytes")
        if self.block_size == DES_BLOCK:
            return bytes(a ^ b for a, b in zip(dtk[:8], dtk[8:], strict=True))
        return dtk


TRIPLE_DES = PurseAlgorithm(ALGORITHM_3DES, "3DES", DES_BLOCK, verified=True)
SM4 = PurseAlgorithm(ALGORITHM_SM4, "SM4", SM4_BLOCK, verified=False)
_ALGORITHMS = {a.algorithm_id: a for a in (TRIPLE_DES, SM4)}


def purse_algorithm(algorithm_id: int, *, allow_unverified: bool = False) -> PurseAlgorithm:
    """The algorithm a card's algorithm id names; SM4 (unverified) only when ``allow_unverified``."""
    algorithm = _ALGORITHMS.get(algorithm_id)
    if algorithm is None:
        raise UnsupportedAlgorithm(f"algorithm id {algorithm_id:02X} is not supported")
    if not algorithm.verified and not allow_unverified:
        raise UnsupportedAlgorithm(
            f"algorithm id {algorithm_id:02X} ({algorithm.name}) is unverified and switched off"
        )
    return algorithm


def diversify(key: bytes, factor: bytes, algorithm: PurseAlgorithm = TRIPLE_DES) -> bytes:
    """PBOC diversification ``sub = 3DES-ECB(K, f) ‖ 3DES-ECB(K, NOT f)`` (spec §5)."""
    return algorithm.diversify(key, factor)


def tac_key(dtk: bytes, algorithm: PurseAlgorithm = TRIPLE_DES) -> bytes:
    """The TAC key of a card's DTK: ``DTK_left XOR DTK_right`` for 3DES."""
    return algorithm.tac_key(dtk)


# --- load (圈存), spec §4 ----------------------------------------------------------------------------


def _u(value: int, size: int, name: str) -> bytes:
    if not 0 <= value < 1 << (8 * size):
        raise ValueError(f"{name} must fit {size} unsigned bytes, got {value}")
    return value.to_bytes(size, "big")


def _fixed(value: bytes, size: int, name: str) -> bytes:
    if len(value) != size:
        raise ValueError(f"{name} is {size} bytes, got {len(value)}")
    return value


def _moment(date: bytes, time: bytes) -> bytes:
    return _fixed(date, 4, "date") + _fixed(time, 3, "time")


def load_session_key(
    dlk: bytes, random: bytes, online_serial: int, algorithm: PurseAlgorithm = TRIPLE_DES
) -> bytes:
    """``SK = 3DES-ECB(DLK, random(4) ‖ online serial(2) ‖ 80 00)``."""
    seed = _fixed(random, 4, "random") + _u(online_serial, 2, "online serial") + b"\x80\x00"
    return algorithm.session_key(dlk, seed)


def load_mac1(
    session_key: bytes,
    *,
    old_balance: int,
    amount: int,
    terminal_id: bytes,
    algorithm: PurseAlgorithm = TRIPLE_DES,
) -> bytes:
    """``MAC1 = MAC(SK, old balance(4) ‖ amount(4) ‖ 02 ‖ terminal id(6))``: the card proving itself."""
    data = (
        _u(old_balance, 4, "old balance")
        + _u(amount, 4, "amount")
        + bytes([TRANSACTION_LOAD])
        + _fixed(terminal_id, 6, "terminal id")
    )
    return algorithm.mac(session_key, data)


def load_mac2(
    session_key: bytes,
    *,
    amount: int,
    terminal_id: bytes,
    date: bytes,
    time: bytes,
    algorithm: PurseAlgorithm = TRIPLE_DES,
) -> bytes:
    """``MAC2 = MAC(SK, amount(4) ‖ 02 ‖ terminal id(6) ‖ date(4) ‖ time(3))``: the host authorizing the credit."""
    data = (
        _u(amount, 4, "amount")
        + bytes([TRANSACTION_LOAD])
        + _fixed(terminal_id, 6, "terminal id")
        + _moment(date, time)
    )
    return algorithm.mac(session_key, data)


def load_tac(
    dtk: bytes,
    *,
    new_balance: int,
    online_serial: int,
    amount: int,
    terminal_id: bytes,
    date: bytes,
    time: bytes,
    algorithm: PurseAlgorithm = TRIPLE_DES,
) -> bytes:
    """``TAC = MAC(DTK_L ⊕ DTK_R, new balance(4) ‖ online serial(2, from INITIALIZE) ‖ amount(4) ‖ 02 ‖
    terminal id(6) ‖ date(4) ‖ time(3))``: the card proving the credit."""
    data = (
        _u(new_balance, 4, "new balance")
        + _u(online_serial, 2, "online serial")
        + _u(amount, 4, "amount")
        + bytes([TRANSACTION_LOAD])
        + _fixed(terminal_id, 6, "terminal id")
        + _moment(date, time)
    )
    return algorithm.mac(algorithm.tac_key(dtk), data)


# --- purchase at lanes and gantries, spec §6 ---------------------------------------------------------


def _purchase_type(transaction_type: int) -> bytes:
    if transaction_type not in PURCHASE_TYPES:
        raise ValueError(f"a purchase is transaction type 06 or 09, got {transaction_type:02X}")
    return bytes([transaction_type])


def purchase_session_key(
    dpk: bytes,
    random: bytes,
    offline_serial: int,
    terminal_serial: int,
    algorithm: PurseAlgorithm = TRIPLE_DES,
) -> bytes:
    """``SK = 3DES-ECB(DPK, random(4) ‖ offline serial(2) ‖ last 2 bytes of the terminal txn serial)``."""
    seed = (
        _fixed(random, 4, "random")
        + _u(offline_serial, 2, "offline serial")
        + _u(terminal_serial, 4, "terminal transaction serial")[2:]
    )
    return algorithm.session_key(dpk, seed)


def purchase_mac1(
    session_key: bytes,
    *,
    amount: int,
    transaction_type: int,
    terminal_id: bytes,
    date: bytes,
    time: bytes,
    algorithm: PurseAlgorithm = TRIPLE_DES,
) -> bytes:
    """``MAC1 = MAC(SK, amount(4) ‖ type(06|09) ‖ terminal id(6) ‖ date(4) ‖ time(3))`` (the lane's PSAM)."""
    data = (
        _u(amount, 4, "amount")
        + _purchase_type(transaction_type)
        + _fixed(terminal_id, 6, "terminal id")
        + _moment(date, time)
    )
    return algorithm.mac(session_key, data)


def purchase_mac2(session_key: bytes, *, amount: int, algorithm: PurseAlgorithm = TRIPLE_DES) -> bytes:
    """The card's ``MAC2 = MAC(SK, amount(4))`` after a debit."""
    return algorithm.mac(session_key, _u(amount, 4, "amount"))


def purchase_tac(
    dtk: bytes,
    *,
    amount: int,
    transaction_type: int,
    terminal_id: bytes,
    terminal_serial: int,
    date: bytes,
    time: bytes,
    algorithm: PurseAlgorithm = TRIPLE_DES,
) -> bytes:
    """``TAC = MAC(DTK_L ⊕ DTK_R, amount(4) ‖ type ‖ terminal id(6) ‖ terminal txn serial(4) ‖ date ‖ time)``."""
    data = (
        _u(amount, 4, "amount")
        + _purchase_type(transaction_type)
        + _fixed(terminal_id, 6, "terminal id")
        + _u(terminal_serial, 4, "terminal transaction serial")
        + _moment(date, time)
    )
    return algorithm.mac(algorithm.tac_key(dtk), data)
