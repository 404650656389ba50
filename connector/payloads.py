"""Check a webhook body and read it into a document, without ever changing the body itself."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

import orjson

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
ACCEPTED_TYPES = (JSON, FORM)


class InvalidBody(ValueError):
    """The body cannot be read as its content type says; `code` names the rule it broke."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def parse(body: bytes, mime_type: str) -> dict[str, Any]:
    """Read a JSON object or a form body into a dict, or raise InvalidBody."""
    # Only a body starting with white space can be blank: no copy of the others to find out.
    if not body or (body[:1].isspace() and not body.strip()):
        raise InvalidBody("empty_body", "the body is empty; send one JSON object or form fields")
    if mime_type == JSON:
        return _parse_json(body)
    return _parse_form(body)


def _parse_json(body: bytes) -> dict[str, Any]:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidBody("invalid_json", f"the body is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        kind = type(document).__name__
        raise InvalidBody("not_an_object", f"the body must be a JSON object, not a {kind}")
    return document


def _parse_form(body: bytes) -> dict[str, Any]:
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=True, errors="strict")
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidBody("invalid_form", f"the form body cannot be decoded: {exc}") from None
    document: dict[str, Any] = {}
    for name, value in pairs:
        _put(document, _form_path(name), value)
    return document


def _form_path(name: str) -> list[str]:
    """Split `user_info[email]` into ["user_info", "email"], as PHP-style forms nest fields."""
    head, _, rest = name.partition("[")
    if not rest or not rest.endswith("]"):
        return [name]
    inner = rest[:-1].split("][")
    return [head, *inner] if all(inner) else [name]


def _put(document: dict[str, Any], path: list[str], value: str) -> None:
    """Set a value at a nested path; the first value of a repeated field wins."""
    node = document
    for part in path[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            return
        node = child
    node.setdefault(path[-1], value)
