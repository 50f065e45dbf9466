"""The events' refusal codes, each with its HTTP status and a sentence in zh-CN and English."""

from __future__ import annotations

from typing import Any

from etcwallet.core.errors import DomainError

# code -> (status, zh, en, field the code is about)
EVENT_ERRORS: dict[str, tuple[int, str, str, str | None]] = {
    "parked_event_not_found": (404, "搁置的事件不存在", "no parked event with that id", "parked_id"),
    "parked_event_not_parked": (
        409,
        "该事件已在重放或已重放成功",
        "the event is already being replayed or was replayed",
        "parked_id",
    ),
}


class EventError(DomainError):
    """A refusal about events; a fresh one per raise, built from :data:`EVENT_ERRORS`."""

    def __init__(self, code: str, **extra: Any) -> None:
        status, zh, en, field = EVENT_ERRORS[code]
        super().__init__(code, status, zh, en, field=field, extra=extra)
