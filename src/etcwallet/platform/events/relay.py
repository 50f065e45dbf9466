"""The relay to NATS JetStream: every event, once, on subject ``etcw.<type>`` (with ``ETCW_NATS_URL``).

The relay is a consumer like any other (``nats.relay``, every type) with an offset of its own. It
publishes each event with the event's id as JetStream's message id (``Nats-Msg-Id``) and waits for the
stream's acknowledgement before the offset moves on. A crash after the publish and before the offset's
commit publishes the event again at restart; JetStream drops the copy, since it has seen that message id
within the stream's duplicate window (two minutes unless the stream says otherwise). A restart later
than that window publishes a second copy: subscribers key their work by the message id, as every handler
does. NATS being unreachable is :class:`~.dispatch.Unavailable`: retried with backoff, never parked.

The message body is the event as JSON: ``{"id", "type", "key", "payload", "emitted_at"}``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js import JetStreamContext
from psycopg import AsyncConnection

from etcwallet.platform.events.dispatch import Consumer, Delivered, Unavailable

log = logging.getLogger(__name__)

RELAY_NAME = "nats.relay"
SUBJECT_PREFIX = "etcw"


def subject(event_type: str) -> str:
    """The subject an event of ``event_type`` is published on."""
    return f"{SUBJECT_PREFIX}.{event_type}"


def body(event: Delivered) -> bytes:
    """The message's body: the event as JSON."""
    return json.dumps(
        {
            "id": str(event.id),
            "type": event.type,
            "key": event.key,
            "payload": event.payload,
            "emitted_at": event.emitted_at.isoformat(),
        },
        ensure_ascii=False,
    ).encode()


async def _quiet(exc: Exception) -> None:
    """The client's error callback: its errors reach the relay as failed publishes anyway."""
    log.debug("NATS client error", exc_info=exc)


class NatsRelay:
    """Publishes events to JetStream stream ``stream`` (made on first use, subjects ``etcw.>``)."""

    def __init__(self, url: str, *, stream: str = "ETCW", timeout: float = 5.0) -> None:
        self.url = url
        self.stream = stream
        self.timeout = timeout
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None

    def consumer(self, name: str = RELAY_NAME) -> Consumer:
        """The relay as a consumer of every event."""
        return Consumer(name, self.handle, writes=False)

    async def connect(self) -> None:
        """Connect and make sure the stream exists; :class:`Unavailable` if NATS cannot be reached."""
        try:
            async with asyncio.timeout(2 * self.timeout):
                await self._connect()
        except (nats.errors.Error, OSError, TimeoutError) as exc:
            raise Unavailable(f"NATS at {self.url} unavailable: {type(exc).__name__}") from exc

    async def _connect(self) -> None:
        if self._nc is None or self._nc.is_closed:
            # No reconnecting inside the client, and one quick retry at most: a lost connection closes
            # it, the publish fails as Unavailable, and the next attempt (after the consumer's backoff)
            # connects anew, rather than the client waiting minutes inside a handler.
            self._nc = await nats.connect(
                self.url,
                name="etcwallet-relay",
                connect_timeout=max(1, int(self.timeout)),
                allow_reconnect=False,
                max_reconnect_attempts=1,
                reconnect_time_wait=0,
                error_cb=_quiet,
            )
        js = self._nc.jetstream(timeout=self.timeout)
        try:
            await js.stream_info(self.stream)
        except nats.js.errors.NotFoundError:
            await js.add_stream(name=self.stream, subjects=[f"{SUBJECT_PREFIX}.>"])
        self._js = js

    async def handle(self, conn: AsyncConnection[Any], event: Delivered) -> None:
        """Publish ``event`` and wait for JetStream's acknowledgement (a duplicate's too)."""
        if self._js is None or self._nc is None or self._nc.is_closed:
            await self.connect()
        assert self._js is not None
        try:
            await self._js.publish(
                subject(event.type),
                body(event),
                timeout=self.timeout,
                stream=self.stream,
                headers={"Nats-Msg-Id": str(event.id)},
            )
        except (nats.errors.Error, OSError, TimeoutError) as exc:
            raise Unavailable(f"publish to NATS failed: {type(exc).__name__}") from exc

    async def close(self) -> None:
        """Drain and close the connection."""
        nc, self._nc, self._js = self._nc, None, None
        if nc is not None and not nc.is_closed:
            try:
                await nc.drain()
            except (nats.errors.Error, OSError, TimeoutError):
                log.warning("closing the NATS connection failed", exc_info=True)
