"""The base of every request body: unknown fields refused, and no NUL characters anywhere.

PostgreSQL ``text`` and ``jsonb`` cannot hold a NUL character; a NUL that reached the database would be a
500. Refusing it here answers a 422 that names the field, before anything is written.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

from etcwallet.core.errors import InvalidValue


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(k) or _holds_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_holds_nul(v) for v in value)
    return False


class RequestModel(BaseModel):
    """A JSON request body: extra fields are an error, and so is a NUL character in any string."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        if _holds_nul(value):
            raise InvalidValue("nul_character", "不能包含空字符（NUL）", "must not contain a NUL character")
        return value
