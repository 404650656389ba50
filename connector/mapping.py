"""Map a raw Outgrow record to Braze /users/track objects, as a mapping file says; no I/O.

`load_mapping()` reads and checks a mapping file once; `Mapping.apply()` and `map_record()` are
pure. A record comes out as a `BrazeUpdate`, as `Filtered` (dropped on purpose), or raises
`MappingFailure` (it belongs on the dead-letter topic). The language is described in
docs/mapping.md.
"""

from __future__ import annotations

import functools
import hashlib
from collections import abc
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from connector.mapping_file import CompiledMapping, compile_mapping
from connector.mapping_native import compile_native
from connector.mapping_paths import MISSING
from connector.mapping_plan import Plan, compile_plan
from connector.mapping_reads import reader
from connector.mapping_results import BrazeUpdate, Filtered
from connector.mapping_rules import MappingFailure, Profile, Source, identify
from connector.mapping_yaml import MappingFileError
from connector.payloads import ACCEPTED_TYPES, InvalidBody, parse
from connector.transforms import text_of

if TYPE_CHECKING:
    from connector._native import NativePlan

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
class Mapping:
    """A loaded mapping file; `version` is a short hash of its bytes."""

    version: str
    profiles: tuple[Profile, ...] = field(repr=False)
    fallback: Profile = field(repr=False)
    content_id: Source = field(repr=False)
    # Each profile's rules compiled once, by profile name (names are unique in a file).
    plans: dict[str, Plan] = field(init=False, repr=False, compare=False)
    plan: Plan | None = field(init=False, repr=False, compare=False)
    # With one profile, the same plan run natively from the JSON body (see mapping_native).
    native: NativePlan | None = field(init=False, repr=False, compare=False)
    _content_id: Callable[[dict[str, Any], dict[str, Any]], Any] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        plans = {profile.name: compile_plan(profile) for profile in (*self.profiles, self.fallback)}
        object.__setattr__(self, "plans", plans)
        # With one profile, every dict lead is mapped by its plan: no choosing per record.
        object.__setattr__(self, "plan", None if self.profiles else plans[self.fallback.name])
        object.__setattr__(self, "native", None if self.profiles else compile_native(self.fallback))
        object.__setattr__(self, "_content_id", reader(self.content_id))

    def profile_for(self, document: abc.Mapping[str, Any], source: str) -> Profile:
        """Choose the first profile whose `when` holds for the record, else the fallback."""
        if not self.profiles:
            return self.fallback
        if type(document) is dict:
            found = self._content_id(document, {"source": source})
        else:
            first = self.content_id.first(document, {"source": source})
            found = MISSING if first is None else first[1]
        content_id = None if found is MISSING else text_of(found)
        folded = content_id.strip().casefold() if content_id else None
        return next((p for p in self.profiles if p.selects(source, folded)), self.fallback)

    def apply(
        self, document: abc.Mapping[str, Any], *, source: str, received_at_ms: int | None
    ) -> BrazeUpdate | Filtered:
        """Map one parsed lead; raise MappingFailure when it cannot be mapped."""
        if type(document) is not dict:
            return self.apply_rules(document, source=source, received_at_ms=received_at_ms)
        profile = self.profile_for(document, source) if self.profiles else self.fallback
        return self.plans[profile.name](document, source, received_at_ms)

    def apply_rules(
        self, document: abc.Mapping[str, Any], *, source: str, received_at_ms: int | None
    ) -> BrazeUpdate | Filtered:
        """Map one lead by the rules' own methods: the reference the compiled plans follow."""
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
    mime_type = _mime_type(content_type)
    if mime_type not in ACCEPTED_TYPES:
        raise MappingFailure("parse", "the content type is neither JSON nor a form")
    try:
        document = parse(value, mime_type)
    except InvalidBody as exc:
        raise MappingFailure("parse", _PARSE_REASONS.get(exc.code, exc.code)) from None
    return mapping.apply(document, source=source, received_at_ms=received_at_ms)


@functools.lru_cache(maxsize=64)
def _mime_type(content_type: str) -> str:
    # A raw topic holds a handful of distinct content types; each is read once.
    return content_type.split(";", 1)[0].strip().lower()
