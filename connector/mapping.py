"""Map a raw Outgrow record to Braze /users/track objects, as a mapping file says; no I/O.

`load_mapping()` reads, checks and compiles a mapping file once; `Mapping.apply()` and
`map_record()` are pure. A record comes out as a `BrazeUpdate`, as `Filtered` (dropped on
purpose), or raises `MappingFailure` (it belongs on the dead-letter topic). The language is
described in docs/mapping.md.
"""

from __future__ import annotations

import functools
import hashlib
from collections import abc
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import orjson

from connector.mapping_file import CompiledMapping, compile_mapping
from connector.mapping_paths import MISSING
from connector.mapping_results import BrazeUpdate, Filtered
from connector.mapping_rules import Key, MappingFailure, Profile, Run, Source, key_reader
from connector.mapping_yaml import MappingFileError
from connector.payloads import ACCEPTED_TYPES, JSON, InvalidBody, parse
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
class Mapping:
    """A loaded mapping file, compiled; `version` is a short hash of its bytes."""

    version: str
    profiles: tuple[Profile, ...] = field(repr=False)
    fallback: Profile = field(repr=False)
    content_id: Source = field(repr=False)
    lead_id_from: Source | None = field(default=None, repr=False)
    # The file as one function of a parsed lead: each profile compiled once, here.
    run: Run = field(init=False, repr=False, compare=False)
    # Each profile's identity rules alone, by profile name, and the lead id's reader.
    _user_keys: dict[str, Key] = field(init=False, repr=False, compare=False)
    _lead_id: Key | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "run", self._compile())
        profiles = (*self.profiles, self.fallback)
        object.__setattr__(self, "_user_keys", {p.name: p.user_key() for p in profiles})
        lead_id = None if self.lead_id_from is None else key_reader(self.lead_id_from)
        object.__setattr__(self, "_lead_id", lead_id)

    def _compile(self) -> Run:
        if not self.profiles:  # one profile: no choosing per record
            return self.fallback.compile()
        runs = {profile.name: profile.compile() for profile in (*self.profiles, self.fallback)}
        profile_for = self.profile_for

        def run(
            document: abc.Mapping[str, Any], source: str, received_at_ms: int | None
        ) -> BrazeUpdate | Filtered:
            return runs[profile_for(document, source).name](document, source, received_at_ms)

        return run

    @functools.cached_property
    def _content_id(self) -> Any:
        return self.content_id.compile()

    def profile_for(self, document: abc.Mapping[str, Any], source: str) -> Profile:
        """Choose the first profile whose `when` holds for the record, else the fallback."""
        if not self.profiles:
            return self.fallback
        found = self._content_id(document, {"source": source})
        content_id = None if found is MISSING else text_of(found)
        folded = content_id.strip().casefold() if content_id else None
        return next((p for p in self.profiles if p.selects(source, folded)), self.fallback)

    def identity_key(
        self, document: abc.Mapping[str, Any], source: str, received_at_ms: int | None = None
    ) -> str | None:
        """The `user_key` the identity rules give a parsed lead, its profile chosen as mapping
        chooses it (filters not applied), or None when no rule matches."""
        profile = self.profile_for(document, source)
        meta = {"source": source, "received_at": received_at_ms, "profile": profile.name}
        return self._user_keys[profile.name](document, meta)

    def lead_id(
        self, document: abc.Mapping[str, Any], source: str, received_at_ms: int | None = None
    ) -> str | None:
        """The lead id (`lead_id_from`) of a parsed lead as trimmed text, or None."""
        if self._lead_id is None:
            return None
        meta = {"source": source, "received_at": received_at_ms, "profile": None}
        return self._lead_id(document, meta)

    def apply(
        self, document: abc.Mapping[str, Any], *, source: str, received_at_ms: int | None
    ) -> BrazeUpdate | Filtered:
        """Map one parsed lead; raise MappingFailure when it cannot be mapped."""
        return self.run(document, source, received_at_ms)


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
    return Mapping(
        version, compiled.profiles, compiled.fallback, compiled.content_id, compiled.lead_id
    )


def map_record(
    mapping: Mapping,
    value: bytes,
    content_type: str,
    *,
    source: str,
    received_at_ms: int | None,
) -> BrazeUpdate | Filtered:
    """Parse a raw record's value by its content type (once: nothing after reads it again),
    then map it; the worker's way for every record."""
    mime_type = _mime_type(content_type)
    if mime_type == JSON:  # the common case: a JSON object, read without parse()'s calls
        try:
            document = orjson.loads(value)
        except orjson.JSONDecodeError:
            document = None
        if type(document) is dict:
            return mapping.run(document, source, received_at_ms)
    if mime_type not in ACCEPTED_TYPES:
        raise MappingFailure("parse", "the content type is neither JSON nor a form")
    try:  # a form, or for the reason a JSON body is refused
        document = parse(value, mime_type)
    except InvalidBody as exc:
        raise MappingFailure("parse", _PARSE_REASONS.get(exc.code, exc.code)) from None
    return mapping.run(document, source, received_at_ms)


@functools.lru_cache(maxsize=64)
def _mime_type(content_type: str) -> str:
    # A raw topic holds a handful of distinct content types; each is read once.
    return content_type.split(";", 1)[0].strip().lower()
