"""The Kafka record key: who the submission is about, so one user's records share a partition.

Its paths are written, and read, in the mapping file's path language (connector.mapping_paths).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from connector.config import split_list
from connector.mapping_paths import Move, Path, parse_lead_path

MAX_KEY_BYTES = 1024


@dataclass(frozen=True)
class KeyRule:
    """Paths tried in order: identity paths first (normalised), then the lead id as given."""

    identity_paths: tuple[Path, ...]
    lead_id_paths: tuple[Path, ...]
    # Each path's walker, made once.
    _identity: tuple[Move, ...] = field(init=False, repr=False, compare=False)
    _lead_id: tuple[Move, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_identity", tuple(p.walker() for p in self.identity_paths))
        object.__setattr__(self, "_lead_id", tuple(p.walker() for p in self.lead_id_paths))

    @classmethod
    def from_settings(cls, identity: str, lead_id: str) -> KeyRule:
        """Build a rule from two comma-separated lists of paths (PathSyntaxError if one is bad;
        the settings were checked when read)."""
        return cls(_paths(identity), _paths(lead_id))

    def key_for(self, document: Mapping[str, Any]) -> bytes | None:
        """Return the record key for a document, or None when no path holds a usable value."""
        for walk in self._identity:
            key = _encode(_text(walk(document)), lower=True)
            if key:
                return key
        for walk in self._lead_id:
            key = _encode(_text(walk(document)), lower=False)
            if key:
                return key
        return None


def _paths(spec: str) -> tuple[Path, ...]:
    return tuple(parse_lead_path(text) for text in split_list(spec))


def _text(value: Any) -> str | None:
    """A scalar as trimmed text; objects, lists, booleans, blanks and MISSING are not identities."""
    if type(value) is str:  # the common case, first
        return value.strip() or None
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float | str):
        text = str(value).strip()
        return text or None
    return None


def _encode(text: str | None, *, lower: bool) -> bytes | None:
    """Encode a key; a value too long to be an identity is skipped."""
    if text is None:
        return None
    data = (text.lower() if lower else text).encode("utf-8", errors="replace")
    return data if len(data) <= MAX_KEY_BYTES else None
