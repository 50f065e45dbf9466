"""The base of every request body: unknown fields refused, and no text PostgreSQL cannot store.

PostgreSQL ``text`` and ``jsonb`` cannot hold a NUL character, and UTF-8 cannot encode a lone UTF-16
surrogate (JSON lets one be written as ``"\\ud800"``); either would otherwise fail at the database as a 500
(or leak a codec message). Refusing them here answers a 422 that names the field, before anything is written.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

from etcwallet.core.errors import InvalidValue


def _bad_string(value: str) -> InvalidValue | None:
    if "\x00" in value:
        return InvalidValue("nul_character", "不能包含空字符（NUL）", "must not contain a NUL character")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return InvalidValue(
                "lone_surrogate",
                "包含无效的Unicode字符（孤立的代理项 \\ud800–\\udfff）",
                "holds an invalid Unicode character (a lone surrogate, \\ud800-\\udfff)",
            )
    return None


def text_fault(value: Any) -> InvalidValue | None:
    """Why ``value`` (a string, or JSON-like data holding strings) cannot be stored, or None if it can."""
    if isinstance(value, str):
        return _bad_string(value)
    if isinstance(value, dict):
        for k, v in value.items():
            fault = text_fault(k) or text_fault(v)
            if fault:
                return fault
    elif isinstance(value, list | tuple):
        for v in value:
            fault = text_fault(v)
            if fault:
                return fault
    return None


class RequestModel(BaseModel):
    """A JSON request body: extra fields are an error, and so is text that cannot be stored (NUL, lone surrogates)."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def _storable_text(cls, value: Any) -> Any:
        fault = text_fault(value)
        if fault:
            raise fault
        return value
