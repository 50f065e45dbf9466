"""The key service: every operation the host needs with the issuer's keys, behind one interface.

In production the issuer master keys live in an HSM (加密机) and the host never sees them (spec §5); the
platform calls :class:`KeyService`, so an HSM client can replace :class:`SoftwareKeyService`, which holds the
master keys in memory for development, tests and the emulator. Each card's keys are diversified in two
levels: the master key by the issuer factor (the issuer identifier's first 4 bytes, twice), then by the
card's application serial (0015 bytes 12..19) **[? order inferred]**.

The master keys come from configuration (``ETCW_ISSUER_LOAD_KEY``, ``ETCW_ISSUER_PURCHASE_KEY``,
``ETCW_ISSUER_TAC_KEY``, ``ETCW_ISSUER_MAINTENANCE_KEY``: 16 bytes in hex each). Production refuses to start
without them; development generates them once into ``<data_dir>/issuer_keys.json`` as it does the
encryption key. They are never stored in the database nor written to a log, and no message names a value.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from etcwallet.core.config import Settings
from etcwallet.core.crypto import create_secret_file_once
from etcwallet.issuance.chip import crypto
from etcwallet.issuance.chip.crypto import PurseAlgorithm

ISSUER_KEYS_FILE = "issuer_keys.json"
ISSUER_KEY_SIZE = 16
ISSUER_KEY_SETTINGS = {
    "load": "ETCW_ISSUER_LOAD_KEY",
    "purchase": "ETCW_ISSUER_PURCHASE_KEY",
    "tac": "ETCW_ISSUER_TAC_KEY",
    "maintenance": "ETCW_ISSUER_MAINTENANCE_KEY",
}


@dataclass(frozen=True)
class CardIdentity:
    """What a card's keys are diversified by: its issuer identifier (0015 bytes 0..7) and application
    serial (0015 bytes 12..19, the BCD CPU card internal number)."""

    issuer_id: bytes
    application_serial: bytes

    def __post_init__(self) -> None:
        if len(self.issuer_id) != 8 or len(self.application_serial) != 8:
            raise ValueError("a card's issuer identifier and application serial are 8 bytes each")

    @property
    def issuer_factor(self) -> bytes:
        """The first diversification factor: the issuer identifier's first 4 bytes, twice (spec §1)."""
        return self.issuer_id[:4] * 2


@dataclass(frozen=True)
class CardKeys:
    """One card's own keys: load (DLK), purchase (DPK), TAC (DTK) and maintenance (line protection)."""

    load: bytes = field(repr=False)
    purchase: bytes = field(repr=False)
    tac: bytes = field(repr=False)
    maintenance: bytes = field(repr=False)


@dataclass(frozen=True)
class IssuerMasterKeys:
    """The issuer's master keys, 16 bytes each; never printed (``repr`` hides them)."""

    load: bytes = field(repr=False)
    purchase: bytes = field(repr=False)
    tac: bytes = field(repr=False)
    maintenance: bytes = field(repr=False)
    source: str = "environment"

    def __post_init__(self) -> None:
        for name in ISSUER_KEY_SETTINGS:
            if len(getattr(self, name)) != ISSUER_KEY_SIZE:
                raise ValueError(f"{ISSUER_KEY_SETTINGS[name]} must be {ISSUER_KEY_SIZE} bytes")


def derive_card_key(
    master: bytes, card: CardIdentity, algorithm: PurseAlgorithm = crypto.TRIPLE_DES
) -> bytes:
    """A card's key from an issuer master key: diversified by the issuer factor, then by the card's serial."""
    return crypto.diversify(
        crypto.diversify(master, card.issuer_factor, algorithm), card.application_serial, algorithm
    )


class KeyService(Protocol):
    """Every key operation the host needs; an HSM client implements it without revealing master keys.

    ``algorithm_id`` is the one the card named in its INITIALIZE answer; dates and times are BCD bytes.
    Verifications answer a bool and never say which byte differed.
    """

    def derive_card_keys(self, card: CardIdentity, *, algorithm_id: int = crypto.ALGORITHM_3DES) -> CardKeys:
        """The card's keys, for personalising a card (and for the emulator); an HSM exports them only under
        a transport key."""
        ...

    def verify_load_mac1(
        self,
        card: CardIdentity,
        *,
        algorithm_id: int,
        random: bytes,
        online_serial: int,
        old_balance: int,
        amount: int,
        terminal_id: bytes,
        mac1: bytes,
    ) -> bool:
        """Whether the card's MAC1 from INITIALIZE FOR LOAD proves it holds its DLK."""
        ...

    def load_mac2(
        self,
        card: CardIdentity,
        *,
        algorithm_id: int,
        random: bytes,
        online_serial: int,
        amount: int,
        terminal_id: bytes,
        date: bytes,
        time: bytes,
    ) -> bytes:
        """The MAC2 that authorizes CREDIT FOR LOAD of ``amount`` in this session (random, serial) only."""
        ...

    def verify_load_tac(
        self,
        card: CardIdentity,
        *,
        algorithm_id: int,
        new_balance: int,
        online_serial: int,
        amount: int,
        terminal_id: bytes,
        date: bytes,
        time: bytes,
        tac: bytes,
    ) -> bool:
        """Whether a load's TAC proves the card credited it (``online_serial`` as INITIALIZE answered)."""
        ...

    def verify_purchase_tac(
        self,
        card: CardIdentity,
        *,
        algorithm_id: int,
        amount: int,
        transaction_type: int,
        terminal_id: bytes,
        terminal_serial: int,
        date: bytes,
        time: bytes,
        tac: bytes,
    ) -> bool:
        """Whether a purchase's TAC (type 06 or 09) proves the card debited it, for clearing."""
        ...

    def line_protection_mac(self, card: CardIdentity, *, challenge: bytes, data: bytes) -> bytes:
        """The 4-byte MAC of a secure-messaging command (header and data) under the card's maintenance key."""
        ...

    def decrypt_under_challenge(self, card: CardIdentity, *, challenge: bytes, ciphertext: bytes) -> bytes:
        """An answer the chip encrypted under its maintenance key and the challenge it gave (the OBU's vehicle
        file **[?]**: :func:`crypto.challenge_session_key`); a wrong key or altered bytes raise ValueError."""
        ...


class SoftwareKeyService:
    """The key service with the issuer master keys in memory (development, tests, the emulator)."""

    def __init__(self, master: IssuerMasterKeys, *, allow_unverified_sm4: bool = False) -> None:
        self._master = master
        self._allow_unverified = allow_unverified_sm4

    def __repr__(self) -> str:  # never show key material
        return f"SoftwareKeyService(source={self._master.source!r})"

    def _algorithm(self, algorithm_id: int) -> PurseAlgorithm:
        return crypto.purse_algorithm(algorithm_id, allow_unverified=self._allow_unverified)

    def derive_card_keys(self, card: CardIdentity, *, algorithm_id: int = crypto.ALGORITHM_3DES) -> CardKeys:
        """The card's DLK, DPK, DTK and maintenance key by the two-level diversification."""
        algorithm = self._algorithm(algorithm_id)
        return CardKeys(
            load=derive_card_key(self._master.load, card, algorithm),
            purchase=derive_card_key(self._master.purchase, card, algorithm),
            tac=derive_card_key(self._master.tac, card, algorithm),
            # line protection is the 3DES retail MAC whatever the purse algorithm (spec §2)
            maintenance=derive_card_key(self._master.maintenance, card),
        )

    def verify_load_mac1(
        self,
        card: CardIdentity,
        *,
        algorithm_id: int,
        random: bytes,
        online_serial: int,
        old_balance: int,
        amount: int,
        terminal_id: bytes,
        mac1: bytes,
    ) -> bool:
        """Recompute MAC1 from the card's DLK and compare in constant time."""
        algorithm = self._algorithm(algorithm_id)
        dlk = derive_card_key(self._master.load, card, algorithm)
        session_key = crypto.load_session_key(dlk, random, online_serial, algorithm)
        expected = crypto.load_mac1(
            session_key, old_balance=old_balance, amount=amount, terminal_id=terminal_id, algorithm=algorithm
        )
        return crypto.macs_equal(expected, mac1)

    def load_mac2(
        self,
        card: CardIdentity,
        *,
        algorithm_id: int,
        random: bytes,
        online_serial: int,
        amount: int,
        terminal_id: bytes,
        date: bytes,
        time: bytes,
    ) -> bytes:
        """MAC2 under the session key of this INITIALIZE (random and serial)."""
        algorithm = self._algorithm(algorithm_id)
        dlk = derive_card_key(self._master.load, card, algorithm)
        session_key = crypto.load_session_key(dlk, random, online_serial, algorithm)
        return crypto.load_mac2(
            session_key, amount=amount, terminal_id=terminal_id, date=date, time=time, algorithm=algorithm
        )

    def verify_load_tac(
        self,
        card: CardIdentity,
        *,
        algorithm_id: int,
        new_balance: int,
        online_serial: int,
        amount: int,
        terminal_id: bytes,
        date: bytes,
        time: bytes,
        tac: bytes,
    ) -> bool:
        """Recompute the load TAC from the card's DTK and compare in constant time."""
        algorithm = self._algorithm(algorithm_id)
        expected = crypto.load_tac(
            derive_card_key(self._master.tac, card, algorithm),
            new_balance=new_balance,
            online_serial=online_serial,
            amount=amount,
            terminal_id=terminal_id,
            date=date,
            time=time,
            algorithm=algorithm,
        )
        return crypto.macs_equal(expected, tac)

    def verify_purchase_tac(
        self,
        card: CardIdentity,
        *,
        algorithm_id: int,
        amount: int,
        transaction_type: int,
        terminal_id: bytes,
        terminal_serial: int,
        date: bytes,
        time: bytes,
        tac: bytes,
    ) -> bool:
        """Recompute a purchase TAC from the card's DTK and compare in constant time."""
        algorithm = self._algorithm(algorithm_id)
        expected = crypto.purchase_tac(
            derive_card_key(self._master.tac, card, algorithm),
            amount=amount,
            transaction_type=transaction_type,
            terminal_id=terminal_id,
            terminal_serial=terminal_serial,
            date=date,
            time=time,
            algorithm=algorithm,
        )
        return crypto.macs_equal(expected, tac)

    def line_protection_mac(self, card: CardIdentity, *, challenge: bytes, data: bytes) -> bytes:
        """The retail MAC under the card's diversified maintenance key, IV = challenge ‖ 00000000."""
        key = derive_card_key(self._master.maintenance, card)
        return crypto.line_protection_mac(key, challenge, data)

    def decrypt_under_challenge(self, card: CardIdentity, *, challenge: bytes, ciphertext: bytes) -> bytes:
        """3DES-ECB decryption under the session key of the diversified maintenance key and the challenge."""
        key = derive_card_key(self._master.maintenance, card)
        return crypto.decrypt_padded(crypto.challenge_session_key(key, challenge), ciphertext)


# --- master keys from configuration ------------------------------------------------------------------


def _parse_hex_key(value: str, name: str) -> bytes:
    text = "".join(value.split())
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise SystemExit(f"{name} is not valid hex") from None
    if len(key) != ISSUER_KEY_SIZE:
        raise SystemExit(f"{name} must be {ISSUER_KEY_SIZE} bytes ({2 * ISSUER_KEY_SIZE} hex digits)")
    return key


def _read_or_create_issuer_file(path: Path) -> dict[str, str]:
    create_secret_file_once(
        path, {name: os.urandom(ISSUER_KEY_SIZE).hex().upper() for name in ISSUER_KEY_SETTINGS}
    )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SystemExit(f"cannot read the development issuer key file {path}: {exc}") from None
    if not isinstance(data, dict) or not all(isinstance(data.get(n), str) for n in ISSUER_KEY_SETTINGS):
        raise SystemExit(f"{path} must hold string fields {', '.join(ISSUER_KEY_SETTINGS)}")
    return {name: str(data[name]) for name in ISSUER_KEY_SETTINGS}


def load_issuer_keys(values: Mapping[str, str | None], data_dir: Path, production: bool) -> IssuerMasterKeys:
    """The issuer master keys from configuration; ``values`` maps ``load``, ``purchase``, ``tac`` and
    ``maintenance`` to the settings' hex text. In production a missing key is a start-up error
    (SystemExit); elsewhere missing keys come from ``<data_dir>/issuer_keys.json``, generated once."""
    given = {name: (values.get(name) or "").strip() or None for name in ISSUER_KEY_SETTINGS}
    source = "environment"
    if any(value is None for value in given.values()):
        missing = [ISSUER_KEY_SETTINGS[name] for name, value in given.items() if value is None]
        if production:
            raise SystemExit(
                f"missing {', '.join(missing)}: production needs the ETC issuer master keys from "
                f'configuration (16 bytes in hex each, e.g. python -c "import os;print(os.urandom(16).hex())")'
            )
        path = Path(data_dir) / ISSUER_KEYS_FILE
        stored = _read_or_create_issuer_file(path)
        given = {name: value or stored[name] for name, value in given.items()}
        source = str(path)
    keys = {name: _parse_hex_key(str(value), ISSUER_KEY_SETTINGS[name]) for name, value in given.items()}
    return IssuerMasterKeys(**keys, source=source)


def issuer_keys_from(settings: Settings) -> IssuerMasterKeys:
    """The issuer master keys the settings name (generated once into the data directory in development)."""
    return load_issuer_keys(
        {name: settings.secret(f"issuer_{name}_key") for name in ISSUER_KEY_SETTINGS},
        settings.data_dir,
        settings.is_production,
    )


def key_service_from(settings: Settings) -> SoftwareKeyService:
    """The software key service over the configured master keys; SM4 cards only if the switch is on."""
    return SoftwareKeyService(issuer_keys_from(settings), allow_unverified_sm4=settings.issuer_sm4_unverified)


__all__ = [
    "ISSUER_KEYS_FILE",
    "ISSUER_KEY_SETTINGS",
    "CardIdentity",
    "CardKeys",
    "IssuerMasterKeys",
    "KeyService",
    "SoftwareKeyService",
    "derive_card_key",
    "issuer_keys_from",
    "key_service_from",
    "load_issuer_keys",
]
