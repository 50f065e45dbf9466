"""Events with a transactional outbox: how a domain tells other domains what happened.

A domain step writes its events in its own transaction (:func:`emit`, or :func:`insert_statement` for a
unit of work that sends its writes and ``COMMIT`` in one message), so an event exists exactly when the
step committed. Consumers register by name (:func:`register`, or a :class:`Consumer` given to a
:class:`Dispatcher`) and keep their own offset; the dispatcher every process runs delivers each
committed event to each consumer of its type, in order, at least once, never skipping an event that
committed late (:mod:`.dispatch` says how). A handler that keeps failing is retried with backoff and
then parked for an administrator to replay (:mod:`.parked`). With ``ETCW_NATS_URL`` set, the relay
(:mod:`.relay`) publishes every event to NATS JetStream as ``etcw.<type>``.

Rules for domains:

- Types are ``<domain>.<what>`` in lower case (``ledger.transfer_created``), named from an enum.
- Payloads are JSON with money in minor units (a float is refused) and no secrets.
- Handlers are idempotent: an event may be delivered again (after a crash, a timeout, a replay); key
  the effect by ``event.id``. What a handler writes through the connection it is given commits together
  with its consumer's offset.
"""

from etcwallet.platform.events.dispatch import (
    CONSUMERS,
    Consumer,
    Delivered,
    Dispatcher,
    Handler,
    Policy,
    Registry,
    Unavailable,
    committed,
    positions,
    prune,
    register,
)
from etcwallet.platform.events.errors import EventError
from etcwallet.platform.events.outbox import Event, emit, emit_many, insert_statement, rows_json
from etcwallet.platform.events.parked import (
    ParkedEvent,
    get_parked,
    get_parked_or_raise,
    list_parked,
    request_replay,
)

__all__ = [
    "CONSUMERS",
    "Consumer",
    "Delivered",
    "Dispatcher",
    "Event",
    "EventError",
    "Handler",
    "ParkedEvent",
    "Policy",
    "Registry",
    "Unavailable",
    "committed",
    "emit",
    "emit_many",
    "get_parked",
    "get_parked_or_raise",
    "insert_statement",
    "list_parked",
    "positions",
    "prune",
    "register",
    "request_replay",
    "rows_json",
]
