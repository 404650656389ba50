"""Map a raw Outgrow record to Braze /users/track objects, as a mapping file says; no I/O.

`load_mapping()` reads and checks a mapping file once; `Mapping.apply()` and `map_record()` are
pure. A record comes out as a `BrazeUpdate`, as `Filtered` (dropped on purpose), or raises
`MappingFailure` (it belongs on the dead-letter topic). The language is described in
docs/mapping.md.
"""

from __future__ import annotations

import hashlib
from collections import abc
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from connector.mapping_file import CompiledMapping, compile_mapping
from connector.mapping_rules import MappingFailure, Profile, Source, identify
from connector.mapping_yaml import MappingFileError
from connector.payloads import ACCEPTED_TYPES, InvalidBody, parse
from connector.transforms import text_of

__all__ = [
    "DEFAULT_MAPPING",
    "MAPPING_VERSION_HEADER",
    "BrazeUpdate",
    "Filtered",
    "Mapping",
    "MappingFailure",
    "MappingFileError",
    "load_mapping",
    "map_record",
]

MAPPING_VERSION_HEADER = "mapping-version"
DEFAULT_MAPPING = "default_mapping.yaml"
VERSION_LENGTH = 12

_PARSE_REASONS = {
    "empty_body": "the body is empty",
    "invalid_json": "the body is not valid JSON",
    "not_an_object": "the body is JSON but not an object",
    "invalid_form": "the body is not a readable form",
}


@dataclass(frozen=True)
class Filtered:
    """A record dropped on purpose by the named filter."""

    rule: str


@dataclass(frozen=True)
class BrazeUpdate:
    """What one record asks of Braze: attributes and events for one user."""

    user_key: str
    identity: abc.Mapping[str, Any]
    attributes: abc.Mapping[str, Any]
    events: tuple[abc.Mapping[str, Any], ...] = ()

    def attribute_object(self) -> dict[str, Any] | None:
        """Return the attributes object for /users/track, or None when there is nothing to set."""
        if not self.attributes:
            return None
        return {**self.identity, **self.attributes}

    def event_objects(self) -> list[dict[str, Any]]:
        """Return the event objects for /users/track, each with the identity."""
        return [{**self.identity, **event} for event in self.events]


@dataclass(frozen=True)
class Mapping:
    """A loaded mapping file; `version` is a short hash of its bytes."""

    version: str
    profiles: tuple[Profile, ...] = field(repr=False)
    fallback: Profile = field(repr=False)
    content_id: Source = field(repr=False)

    def profile_for(self, document: abc.Mapping[str, Any], source: str) -> Profile:
        """Choose the first profile whose `when` holds for the record, else the fallback."""
        if not self.profiles:
            return self.fallback
        found = self.content_id.first(document, {"source": source})
        content_id = text_of(found[1]) if found else None
        folded = content_id.strip().casefold() if content_id else None
        return next((p for p in self.profiles if p.selects(source, folded)), self.fallback)

    def apply(
        self, document: abc.Mapping[str, Any], *, source: str, received_at_ms: int | None
    ) -> BrazeUpdate | Filtered:
        """Map one parsed lead; raise MappingFailure when it cannot be mapped."""
        profile = self.profile_for(document, source)
        meta = {"source": source, "received_at": received_at_ms, "profile": profile.name}
        dropped_by = profile.dropping_filter(document, meta)
        if dropped_by is not None:
            return Filtered(dropped_by)
        identity = identify(profile.identity, document, meta)
        attributes = {
            name: value
            for name, value in profile.attribute_values(document, meta).items()
            if name not in identity.fields
        }
        if "user_alias" in identity.fields:
            # Braze creates an alias-only profile only when told to; events alone never do.
            attributes["_update_existing_only"] = False
        events = profile.event_values(document, meta)
        return BrazeUpdate(identity.user_key, identity.fields, attributes, events)


def load_mapping(path: str | Path | None = None) -> Mapping:
    """Read and check a mapping file (None: the one shipped with the package)."""
    if path is None:
        name = f"<shipped {DEFAULT_MAPPING}>"
        data = resources.files("connector").joinpath(DEFAULT_MAPPING).read_bytes()
    else:
        name = str(path)
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise MappingFileError(
                name, None, "", f"cannot read the file: {exc.strerror}"
            ) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise MappingFileError(name, None, "", "the file is not UTF-8 text") from None
    compiled: CompiledMapping = compile_mapping(text, name)
    version = hashlib.sha256(data).hexdigest()[:VERSION_LENGTH]
    return Mapping(version, compiled.profiles, compiled.fallback, compiled.content_id)


def map_record(
    mapping: Mapping,
    value: bytes,
    content_type: str,
    *,
    source: str,
    received_at_ms: int | None,
) -> BrazeUpdate | Filtered:
    """Parse a raw record's value by its content type, then map it."""
    mime_type = content_type.split(";", 1)[0].strip().lower()
    if mime_type not in ACCEPTED_TYPES:
        raise MappingFailure("parse", "the content type is neither JSON nor a form")
    try:
        document = parse(value, mime_type)
    except InvalidBody as exc:
        raise MappingFailure("parse", _PARSE_REASONS.get(exc.code, exc.code)) from None
    return mapping.apply(document, source=source, received_at_ms=received_at_ms)
