"""Request bodies refuse unknown fields and NUL characters wherever a string hides."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import Field, ValidationError

from etcwallet.core.errors import field_problems
from etcwallet.core.schemas import RequestModel


class Inner(RequestModel):
    name: str


class Body(RequestModel):
    title: str
    tags: list[str] = Field(default_factory=list)
    extra: dict[str, Any] = Field(default_factory=dict)
    inner: Inner | None = None


def problems(data: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as info:
        Body.model_validate(data)
    return [(p.field, p.code) for p in field_problems(info.value.errors())]


def test_clean_body_is_accepted() -> None:
    body = Body.model_validate(
        {"title": "通行费", "tags": ["a"], "extra": {"k": [1, "v"]}, "inner": {"name": "n"}}
    )
    assert body.title == "通行费" and body.inner is not None and body.inner.name == "n"


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"title": "a\x00"}, "title"),
        ({"title": "ok", "tags": ["fine", "bad\x00"]}, "tags"),
        ({"title": "ok", "extra": {"deep": [{"x": "\x00"}]}}, "extra"),
        ({"title": "ok", "extra": {"key\x00": 1}}, "extra"),
        ({"title": "ok", "inner": {"name": "\x00"}}, "inner.name"),
    ],
)
def test_nul_anywhere_names_its_field(data: dict[str, Any], field: str) -> None:
    assert problems(data) == [(field, "nul_character")]


def test_unknown_field_is_refused() -> None:
    assert problems({"title": "ok", "surprise": 1}) == [("surprise", "extra_forbidden")]


@given(st.text())
def test_any_text_is_accepted_exactly_when_it_has_no_nul(text: str) -> None:
    if "\x00" in text:
        assert problems({"title": text}) == [("title", "nul_character")]
    else:
        assert Body.model_validate({"title": text}).title == text
