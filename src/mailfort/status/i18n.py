"""Message catalogs for everything customers read: pages, feeds, notices, announcements.

Catalogs are TOML files in `status/locales/<language>/*.toml`; every file's tables flatten to
dotted keys (`[component] incoming = "…"` is `component.incoming`). Several files per language
let separate parts (web pages, notices) own their own text. Text uses `str.format` fields:
`catalog().text("de", "notice.delayed", count=3)`.

A key missing in a language falls back to English; a key missing in English is a bug that shows
as the key itself rather than a crash in front of a customer.
"""

from __future__ import annotations

import functools
import tomllib
from collections.abc import Mapping
from importlib import resources
from typing import Any

DEFAULT = "en"
SUPPORTED: tuple[str, ...] = ("en", "de")


def _flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in table.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = str(value)
    return flat


class Catalog:
    def __init__(self, messages: Mapping[str, Mapping[str, str]]) -> None:
        self.messages = messages

    def text(self, lang: str, key: str, **params: object) -> str:
        template = self.messages.get(lang, {}).get(key)
        if template is None:
            template = self.messages.get(DEFAULT, {}).get(key, key)
        try:
            return template.format(**params) if params else template
        except (KeyError, IndexError, ValueError):
            return template

    def has(self, lang: str, key: str) -> bool:
        return key in self.messages.get(lang, {})


@functools.cache
def catalog() -> Catalog:
    messages: dict[str, dict[str, str]] = {}
    root = resources.files("mailfort.status") / "locales"
    for lang in SUPPORTED:
        merged: dict[str, str] = {}
        folder = root / lang
        if folder.is_dir():
            for item in sorted(folder.iterdir(), key=lambda p: p.name):
                if item.name.endswith(".toml"):
                    merged.update(_flatten(tomllib.loads(item.read_text(encoding="utf-8"))))
        messages[lang] = merged
    return Catalog(messages)


def negotiate(accept_language: str | None, supported: tuple[str, ...] = SUPPORTED) -> str:
    """The best supported language for an `Accept-Language` header (RFC 9110 §12.5.4)."""
    if not accept_language:
        return DEFAULT
    ranked: list[tuple[float, int, str]] = []
    for index, part in enumerate(accept_language.split(",")):
        fields = part.strip().split(";")
        tag = fields[0].strip().lower()
        quality = 1.0
        for param in fields[1:]:
            name, _, value = param.strip().partition("=")
            if name.strip() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if tag and quality > 0:
            ranked.append((-quality, index, tag))
    for _, _, tag in sorted(ranked):
        if tag == "*":
            return DEFAULT
        primary = tag.split("-")[0]
        if primary in supported:
            return primary
    return DEFAULT
