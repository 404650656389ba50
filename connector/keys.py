"""The Kafka record key: who the submission is about, so one user's records share a partition."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from connector.config import split_list

MAX_KEY_BYTES = 1024


@dataclass(frozen=True)
class KeyRule:
    """Paths tried in order: identity paths first (normalised), then the lead id as given."""

    identity_paths: tuple[tuple[str, ...], ...]
    lead_id_paths: tuple[tuple[str, ...], ...]

    @classmethod
    def from_settings(cls, identity: str, lead_id: str) -> KeyRule:
        """Build a rule from two comma-separated lists of dotted paths."""
        return cls(_paths(identity), _paths(lead_id))

    def key_for(self, document: Mapping[str, Any]) -> bytes | None:
        """Return the record key for a document, or None when no path holds a usable value."""
        for path in self.identity_paths:
            key = _encode(_text(lookup(document, path)), lower=True)
            if key:
                return key
        for path in self.lead_id_paths:
            key = _encode(_text(lookup(document, path)), lower=False)
            if key:
                return key
        return None


def _paths(spec: str) -> tuple[tuple[str, ...], ...]:
    return tuple(tuple(path.split(".")) for path in split_list(spec))


def lookup(document: Any, path: Sequence[str]) -> Any:
    """Follow a path through nested objects (and list indexes); None where it leads nowhere."""
    node = document
    for part in path:
        if type(node) is dict or isinstance(node, Mapping):  # JSON's dicts, without the ABC check
            node = node.get(part)
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def _text(value: Any) -> str | None:
    """A scalar as trimmed text; objects, lists, booleans and blanks are not identities."""
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
