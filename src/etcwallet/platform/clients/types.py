"""Machine clients' value types: kinds, scopes, how each kind authenticates, and the principal a call runs as."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from etcwallet.platform.audit import Actor


class ClientKind(StrEnum):
    """What sort of system holds the credential."""

    LANE = "lane"  # 收费车道: an entry or exit lane's system
    GANTRY = "gantry"  # ETC 门架: a free-flow gantry on the road
    MERCHANT_TERMINAL = "merchant_terminal"  # 商户终端: a merchant's POS or QR terminal
    PAYMENT_PROVIDER = "payment_provider"  # 支付机构: Alipay, WeChat Pay, a bank's callbacks
    ROAD_OPERATOR = "road_operator"  # 路段业主: downloads its settlement
    CLEARING_CENTER = "clearing_center"  # 联网中心: the provincial or national clearing center


class Scope(StrEnum):
    """What a client may call: each machine route names the one scope it needs."""

    TOLLS_INGEST = "tolls.ingest"  # submit toll transactions and passage records
    TOLLS_STATUS_LIST = "tolls.status_list"  # download the card and OBU status list (blacklist)
    DEVICES_HEARTBEAT = "devices.heartbeat"  # report a field device's liveness and clock
    MERCHANT_PAY = "merchant.pay"  # take a wallet payment (scanned QR or payment code)
    MERCHANT_REFUND = "merchant.refund"  # refund a merchant payment
    PAYMENTS_CALLBACK = "payments.callback"  # notify a top-up's or refund's outcome
    PAYMENTS_STATEMENT = "payments.statement"  # deliver a provider's daily statement for reconciliation
    SETTLEMENT_DOWNLOAD = "settlement.download"  # download a road operator's settlement and its detail
    CLEARING_EXCHANGE = "clearing.exchange"  # exchange clearing, dispute and reconciliation files


class ClientAction(StrEnum):
    """What the audit log records about machine clients and what they do."""

    CREATE = "machine_client.create"
    REVOKE = "machine_client.revoke"
    CALL = "machine_client.call"  # a machine's call refused at the gate
    WHOAMI = "machine_client.whoami"
    HEARTBEAT = "machine_client.heartbeat"


class AuthStyle(StrEnum):
    """How a client proves itself: signed requests, or a bearer key."""

    HMAC = "hmac"
    BEARER = "bearer"


KIND_NAMES: dict[ClientKind, tuple[str, str]] = {
    ClientKind.LANE: ("收费车道", "toll lane"),
    ClientKind.GANTRY: ("ETC 门架", "ETC gantry"),
    ClientKind.MERCHANT_TERMINAL: ("商户终端", "merchant terminal"),
    ClientKind.PAYMENT_PROVIDER: ("支付机构", "payment provider"),
    ClientKind.ROAD_OPERATOR: ("路段业主", "road operator"),
    ClientKind.CLEARING_CENTER: ("联网中心", "clearing center"),
}

KIND_SCOPES: dict[ClientKind, frozenset[Scope]] = {
    ClientKind.LANE: frozenset({Scope.TOLLS_INGEST, Scope.TOLLS_STATUS_LIST, Scope.DEVICES_HEARTBEAT}),
    ClientKind.GANTRY: frozenset({Scope.TOLLS_INGEST, Scope.TOLLS_STATUS_LIST, Scope.DEVICES_HEARTBEAT}),
    ClientKind.MERCHANT_TERMINAL: frozenset(
        {Scope.MERCHANT_PAY, Scope.MERCHANT_REFUND, Scope.DEVICES_HEARTBEAT}
    ),
    ClientKind.PAYMENT_PROVIDER: frozenset({Scope.PAYMENTS_CALLBACK, Scope.PAYMENTS_STATEMENT}),
    ClientKind.ROAD_OPERATOR: frozenset({Scope.SETTLEMENT_DOWNLOAD}),
    ClientKind.CLEARING_CENTER: frozenset({Scope.CLEARING_EXCHANGE, Scope.TOLLS_STATUS_LIST}),
}
"""Which scopes each kind may hold: a lane never takes payments, a payment provider never ingests tolls."""

KIND_AUTH: dict[ClientKind, AuthStyle] = {
    ClientKind.LANE: AuthStyle.HMAC,
    ClientKind.GANTRY: AuthStyle.HMAC,
    ClientKind.MERCHANT_TERMINAL: AuthStyle.HMAC,
    ClientKind.PAYMENT_PROVIDER: AuthStyle.HMAC,
    ClientKind.ROAD_OPERATOR: AuthStyle.BEARER,
    ClientKind.CLEARING_CENTER: AuthStyle.HMAC,
}
"""How each kind authenticates. Whoever sends bodies that claim money (tolls, payments, callbacks, clearing
files) signs them; a road operator only downloads (GET, no body) from a back office, where a bearer key is
what its scripts can hold."""


@dataclass(frozen=True)
class MachineClient:
    """A stored client, without its secret (which is never read back out, only used to verify)."""

    id: UUID
    name: str
    kind: ClientKind
    scopes: frozenset[Scope]
    auth: AuthStyle
    created_at: datetime
    created_by: str
    revoked_at: datetime | None = None
    revoked_by: str | None = None
    last_heartbeat_at: datetime | None = None
    last_heartbeat: dict[str, Any] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return self.revoked_at is None


@dataclass(frozen=True)
class IssuedClient:
    """A client just created, with its secret (an HMAC secret or a bearer key): shown once, never again."""

    client: MachineClient
    secret: str = field(repr=False)


@dataclass(frozen=True)
class MachinePrincipal:
    """The machine a request runs as, once its credentials and scope are checked."""

    id: UUID
    name: str
    kind: ClientKind
    scopes: frozenset[Scope]
    auth: AuthStyle
    ip: str | None = None
    user_agent: str | None = None

    @property
    def actor(self) -> Actor:
        """Who to name in audit events for this call."""
        return Actor("machine", str(self.id), self.ip, self.user_agent)


@dataclass(frozen=True)
class MachineCall:
    """What the gate read off a request: where it went, its body, and the credentials it carried."""

    method: str
    target: str  # the path and query as sent
    body: bytes
    ip: str | None = None
    user_agent: str | None = None
    client: str | None = None  # X-Etcw-Client
    timestamp: str | None = None  # X-Etcw-Timestamp
    nonce: str | None = None  # X-Etcw-Nonce
    signature: str | None = None  # X-Etcw-Signature
    key: str | None = field(default=None, repr=False)  # Authorization: Bearer etcwk_…

    @property
    def signed(self) -> bool:
        return any(v is not None for v in (self.client, self.timestamp, self.nonce, self.signature))


@dataclass(frozen=True)
class Heartbeat:
    """What the server answers a device's heartbeat: its clock, and how far the device's is off."""

    server_time: datetime
    clock_skew_seconds: float
