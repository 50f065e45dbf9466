"""Configuration from ``ETCW_``-prefixed environment variables, read once per process."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every setting the service reads; the README lists them with their defaults."""

    model_config = SettingsConfigDict(env_prefix="ETCW_", extra="ignore")

    env: Literal["development", "demo", "test", "production"] = "development"
    database_url: str | None = Field(
        default=None,
        description="PostgreSQL URL the service connects with; when unset an embedded server is started "
        "in data_dir.",
    )
    database_owner_url: str | None = Field(
        default=None,
        description="PostgreSQL URL of the schema's owner, for migrations and grants; when unset, "
        "database_url is used (and the service runs as the owner).",
    )
    data_dir: Path = Path("var")
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    demo: bool = False
    dev_outbox: bool = Field(
        default=False,
        description="serve the development SMS outbox (HTTP and CLI); never in production",
    )
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: str = "INFO"
    encryption_key: SecretStr | None = Field(default=None, description="base64 AES-256 key (or id:base64)")
    encryption_old_keys: SecretStr | None = Field(
        default=None, description="id:base64,… keys kept for decryption"
    )
    webauthn_rp_id: str | None = Field(
        default=None, description="passkey relying-party id, e.g. wallet.example.cn"
    )
    webauthn_origin: str | None = Field(default=None, description="the web origin passkeys are used from")
    lookup_key: SecretStr | None = Field(
        default=None, description="base64 HMAC key for look-ups by secret value"
    )
    issuer_load_key: SecretStr | None = Field(
        default=None,
        description="ETC issuer master load key (hex, 16 bytes): cards' DLK are diversified from it",
    )
    issuer_purchase_key: SecretStr | None = Field(
        default=None, description="ETC issuer master purchase key (hex, 16 bytes): cards' DPK"
    )
    issuer_tac_key: SecretStr | None = Field(
        default=None, description="ETC issuer master TAC key (hex, 16 bytes): cards' DTK"
    )
    issuer_maintenance_key: SecretStr | None = Field(
        default=None,
        description="ETC issuer master maintenance key (hex, 16 bytes): the line-protection MACs of card writes",
    )
    issuer_sm4_unverified: bool = Field(
        default=False,
        description="accept cards naming the SM4 e-purse algorithm (04), whose construction is unverified",
    )
    issuer_name: str = Field(
        default="甘肃",
        description="the ETC issuer's province, two Chinese characters (issuer identifier, 0015)",
    )
    issuer_code: str = Field(
        default="62010001",
        pattern=r"^[0-9]{8}$",
        description="the issuer's 8 digits: card network number (4, province code + 01) and issuer serial (4)",
    )
    card_validity_years: int = Field(
        default=10, ge=1, le=30, description="years a user card is valid from its issuance or renewal"
    )
    chip_reader: Literal["emulator", "pcsc"] = Field(
        default="emulator",
        description="what carries APDUs to cards and tags: the emulator (chips kept in data_dir/chips) or "
        "PC/SC readers on this machine (the pcsc extra)",
    )
    pcsc_card_reader: str | None = Field(
        default=None, description="PC/SC reader for user cards: the first whose name contains this"
    )
    pcsc_tag_reader: str | None = Field(
        default=None, description="PC/SC reader for OBU tags: the first whose name contains this"
    )
    db_pool_size: int = Field(default=12, ge=2, le=200)
    ledger_writers: int = Field(default=1, ge=1, le=32)
    ledger_max_batch: int = Field(default=8000, ge=1, le=8000)
    ledger_expiry_interval_seconds: float = Field(default=5.0, gt=0)
    housekeeping_interval_seconds: float = Field(default=3600.0, gt=0)
    customer_retention_days: int = Field(
        default=3653,
        ge=1826,
        le=36525,
        description="days a closed customer's personal data is kept before it is anonymized (at least 5 years)",
    )
    events_poll_seconds: float = Field(
        default=0.5, gt=0, description="how often the event dispatcher looks for events other processes wrote"
    )
    events_max_attempts: int = Field(
        default=5, ge=1, le=100, description="failures of one event's handler before it is parked"
    )
    events_retry_seconds: float = Field(
        default=1.0, gt=0, description="the first retry's delay; each further failure doubles it"
    )
    events_retry_max_seconds: float = Field(default=300.0, gt=0)
    events_handler_timeout_seconds: float = Field(
        default=30.0, gt=0, description="a handler running longer has failed"
    )
    events_retention_days: float = Field(
        default=7.0, gt=0, description="events every consumer has passed are pruned after this long"
    )
    nats_url: str | None = Field(
        default=None,
        description="NATS server (nats://host:4222): when set, every event is relayed to JetStream "
        "as etcw.<type>",
    )
    nats_stream: str = Field(default="ETCW", pattern=r"^[A-Za-z0-9_-]{1,64}$")

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @property
    def serves_dev_outbox(self) -> bool:
        """Whether the SMS outbox may be read (``ETCW_DEV_OUTBOX=1``, outside production): it holds every
        code sent, so whoever reads it can sign in as, or reset the password of, anyone."""
        return self.dev_outbox and not self.is_production

    def secret(self, name: str) -> str | None:
        value: SecretStr | None = getattr(self, name)
        return value.get_secret_value() if value is not None else None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings; tests call ``get_settings.cache_clear()`` after changing the environment."""
    return Settings()
