"""The caller's language: zh-CN unless the request prefers English."""

from __future__ import annotations

from typing import Literal

Lang = Literal["zh-CN", "en"]


def negotiate(accept_language: str | None) -> Lang:
    """Pick zh-CN or en from an Accept-Language header, honouring q-values; zh-CN when in doubt."""
    if not accept_language:
        return "zh-CN"
    best: tuple[float, Lang] = (-1.0, "zh-CN")
    for position, part in enumerate(accept_language.split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                continue
        tag = tag.strip().lower()
        lang: Lang | None = "en" if tag.startswith("en") else "zh-CN" if tag.startswith("zh") else None
        # Earlier tags win ties, as the header lists preferences in order.
        if lang is not None and quality - position * 1e-6 > best[0]:
            best = (quality - position * 1e-6, lang)
    return best[1]


def pick(lang: Lang, zh: str, en: str) -> str:
    """The text in the caller's language."""
    return en if lang == "en" else zh
