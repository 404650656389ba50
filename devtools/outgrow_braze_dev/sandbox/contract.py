"""What Braze accepts in a `/users/track` body: pure checks, no I/O, no state.

`check_track` splits a parsed body into the objects that will be applied and the per-object
errors Braze reports inside a 201, or refuses the whole request the way Braze does. Every rule
names the Braze page it comes from; the pages are listed once below.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple, TypeGuard

import orjson

from outgrow_braze_dev.sandbox.errors import Refusal

TRACK_DOC = "https://www.braze.com/docs/api/endpoints/user_data/post_user_track"
ATTRIBUTES_DOC = "https://www.braze.com/docs/api/objects_filters/user_attributes_object"
EVENT_DOC = "https://www.braze.com/docs/api/objects_filters/event_object"
PURCHASE_DOC = "https://www.braze.com/docs/api/objects_filters/purchase_object"
ALIAS_DOC = "https://www.braze.com/docs/api/objects_filters/user_alias_object"
ERRORS_DOC = "https://www.braze.com/docs/api/errors"
LIMITS_DOC = "https://www.braze.com/docs/api/api_limits"
CUSTOM_ATTRIBUTES_DOC = "https://www.braze.com/docs/user_guide/data/custom_data/custom_attributes"
NESTED_DOC = CUSTOM_ATTRIBUTES_DOC + "/nested_custom_attribute_support"

ARRAYS = ("attributes", "events", "purchases")
PROCESSED = {array: f"{array}_processed" for array in ARRAYS}
PRIMARY_IDS = ("external_id", "user_alias", "braze_id")

# Braze's own fatal messages, kept literally because clients match on them (ERRORS_DOC).
NO_VALID_DATA = "Valid data must be provided in the 'attributes', 'events', or 'purchases' fields."
TOO_MANY_OBJECTS = "Max Input Length Exceeded"

MAX_EXTERNAL_ID_BYTES = 987  # TRACK_DOC, EXTERNAL_USER_ID_TOO_LARGE
MAX_ALIAS_BYTES = 236  # ALIAS_DOC
MAX_CHARS = 255  # CUSTOM_ATTRIBUTES_DOC: keys and string values; EVENT_DOC: properties
MAX_ARRAY_ITEMS = 500  # ATTRIBUTES_DOC: the default and the most an array may hold
MAX_OBJECT_ARRAY_BYTES = 100_000  # ATTRIBUTES_DOC: arrays of objects
MAX_NESTED_BYTES = 50_000  # NESTED_DOC
MAX_EVENT_PROPERTIES_BYTES = 100_000  # EVENT_DOC: properties holding arrays or objects
MAX_PURCHASE_PROPERTIES_BYTES = 50_000  # PURCHASE_DOC
MAX_QUANTITY = 100  # PURCHASE_DOC
MAX_DEPTH = 32  # not Braze's: bounds recursion over hostile input

META_KEYS = frozenset({*PRIMARY_IDS, "_update_existing_only", "_merge_objects"})
# ATTRIBUTES_DOC: profile fields with a meaning of their own; every other name is custom.
STANDARD_FIELDS = frozenset(
    {
        "country",
        "current_location",
        "date_of_first_session",
        "date_of_last_session",
        "dob",
        "email",
        "email_click_tracking_disabled",
        "email_open_tracking_disabled",
        "email_subscribe",
        "first_name",
        "gender",
        "home_city",
        "image_url",
        "language",
        "last_name",
        "marked_email_as_spam_at",
        "phone",
        "push_subscribe",
        "push_tokens",
        "subscription_groups",
        "time_zone",
    }
)
RESERVED_EVENT_PROPERTIES = frozenset({"time", "event_name"})  # EVENT_DOC
RESERVED_PURCHASE_PROPERTIES = frozenset(
    {"time", "product_id", "quantity", "event_name", "price", "currency"}
)  # PURCHASE_DOC
SUBSCRIPTION_STATES = frozenset({"opted_in", "subscribed", "unsubscribed"})  # ATTRIBUTES_DOC
GENDERS = frozenset({"M", "F", "O", "N", "P"})  # ATTRIBUTES_DOC

_EMAIL = re.compile(r"^[^@\s]+@[^@\s.]+(\.[^@\s.]+)+$")
_PHONE_NOISE = re.compile(r"[\s().-]")
_PHONE = re.compile(r"^\+?\d{7,15}$")
_DOB = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
# yyyy-MM-dd'T'HH:mm:ss:SSSZ, the one non-ISO form EVENT_DOC accepts for `time`.
_COLON_MILLIS = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}):(\d{3})(Z|[+-]\d{2}:?\d{2})?$")

Scalar = (str, int, float, bool)
Problem = str | None


class Identity(NamedTuple):
    """How one object names its user: the identifier's kind and value (alias: label, name)."""

    kind: str
    value: str | tuple[str, str]


@dataclass(slots=True)
class Accepted:
    """One object that passed every check and will be applied."""

    array: str
    index: int
    fields: dict[str, Any]
    identity: Identity
    may_create: bool


@dataclass(frozen=True, slots=True)
class ObjectLimit:
    """How many objects one request may carry: in total, or in each array (legacy limits)."""

    max_objects: int = 75
    per_array: bool = False


@dataclass(slots=True)
class TrackBatch:
    """A checked body: the objects to apply, the errors to report, accepted counts by array."""

    accepted: list[Accepted] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def processed(self, array: str) -> int:
        """How many objects of one array were accepted."""
        return self.counts.get(array, 0)

    def response_body(self) -> dict[str, Any]:
        """The 201 body: counts for the arrays sent, and `errors` when some objects failed."""
        # Braze reports counts only for the arrays a request carried (measured answers quoted
        # in the connector's Braze notes; TRACK_DOC shows the full shape).
        body: dict[str, Any] = {"message": "success"}
        for array, count in self.counts.items():
            body[PROCESSED[array]] = count
        if self.errors:
            body["errors"] = self.errors
        return body


# --------------------------------------------------------------------------- the request


def check_track(document: Any, limit: ObjectLimit) -> TrackBatch:
    """Check a parsed `/users/track` body; raise Refusal when Braze would refuse all of it."""
    if not isinstance(document, dict):
        raise Refusal(400, NO_VALID_DATA)
    arrays = _arrays(document)
    _check_count(arrays, limit)
    batch = TrackBatch()
    for array, items in arrays.items():
        accepted = 0
        for index, item in enumerate(items):
            outcome = check_object(array, index, item)
            if isinstance(outcome, Accepted):
                batch.accepted.append(outcome)
                accepted += 1
            else:
                batch.errors.append({"type": outcome, "input_array": array, "index": index})
        batch.counts[array] = accepted
    if not batch.accepted:
        raise Refusal(400, NO_VALID_DATA, batch.errors)
    return batch


def _arrays(document: dict[str, Any]) -> dict[str, list[Any]]:
    arrays: dict[str, list[Any]] = {}
    for array in ARRAYS:
        items = document.get(array)
        if items is None:
            continue
        if not isinstance(items, list):
            raise Refusal(400, f"'{array}' must be an array of objects")
        arrays[array] = items
    return arrays


def _check_count(arrays: Mapping[str, list[Any]], limit: ObjectLimit) -> None:
    """TRACK_DOC and LIMITS_DOC: 75 objects in total, or 75 per array on legacy limits."""
    counts = [len(items) for items in arrays.values()]
    largest = max(counts) if limit.per_array and counts else sum(counts)
    if largest > limit.max_objects:
        raise Refusal(400, TOO_MANY_OBJECTS)


def check_object(array: str, index: int, item: Any) -> Accepted | str:
    """Check one object of an array: the accepted object, or the error type Braze reports."""
    if not isinstance(item, dict):
        return "each entry must be a JSON object"
    identity = identify(item)
    if isinstance(identity, str):
        return identity
    problem = FIELD_CHECKS[array](item)
    if problem is not None:
        return problem
    return Accepted(array, index, item, identity, may_create(array, item, identity))


# --------------------------------------------------------------------------- identifiers


def identify(item: Mapping[str, Any]) -> Identity | str:
    """TRACK_DOC: exactly one primary identifier, else e-mail (which wins), else phone."""
    if item.get("user_alias") is None and item.get("braze_id") is None:
        # The common case, taken without the list below: an external id, or none of the three.
        external_id = item.get("external_id")
        return _contact(item) if external_id is None else _primary("external_id", external_id)
    primaries = [name for name in PRIMARY_IDS if item.get(name) is not None]
    if len(primaries) > 1:
        return "give only one of 'external_id', 'user_alias' and 'braze_id' per object"
    return _primary(primaries[0], item[primaries[0]])


def _contact(item: Mapping[str, Any]) -> Identity | str:
    """An object without a primary identifier: its e-mail (which wins), else its phone."""
    email = item.get("email")
    if email is not None:
        return Identity("email", email) if valid_email(email) else _BAD_EMAIL
    phone = item.get("phone")
    if phone is not None:
        return Identity("phone", phone) if valid_phone(phone) else _BAD_PHONE
    return "no identifier: give 'external_id', 'user_alias', 'braze_id', 'email' or 'phone'"


_BAD_EMAIL = "'email' is not a valid e-mail address"
_BAD_PHONE = "'phone' is not a valid phone number (E.164 recommended)"


def _primary(name: str, value: Any) -> Identity | str:
    if name == "user_alias":
        return _alias(value)
    if not isinstance(value, str) or not value:
        return f"'{name}' must be a non-empty string"
    if name == "external_id" and len(value.encode()) > MAX_EXTERNAL_ID_BYTES:
        return f"'external_id' is longer than {MAX_EXTERNAL_ID_BYTES} bytes"
    return Identity(name, value)


def _alias(value: Any) -> Identity | str:
    """ALIAS_DOC: `alias_name` and `alias_label`, both non-empty and at most 236 bytes."""
    if not isinstance(value, dict):
        return "'user_alias' must be an object with 'alias_name' and 'alias_label'"
    label, name = value.get("alias_label"), value.get("alias_name")
    if not (_alias_part(label) and _alias_part(name)):
        return f"'alias_name' and 'alias_label' must be 1 to {MAX_ALIAS_BYTES} bytes of text"
    return Identity("user_alias", (label, name))


def _alias_part(value: Any) -> TypeGuard[str]:
    return isinstance(value, str) and 0 < len(value.encode()) <= MAX_ALIAS_BYTES


def valid_email(value: Any) -> bool:
    """True for a plausible e-mail address (one @, a dotted domain, no spaces)."""
    return isinstance(value, str) and len(value) <= MAX_CHARS and _email_matches(value)


@functools.lru_cache(maxsize=1 << 16)
def _email_matches(value: str) -> bool:
    """The e-mail pattern, remembered: the same addresses come back in request after request
    (as identifier and as the `email` attribute), and a cache hit costs a fifth of a match."""
    return bool(_EMAIL.match(value))


def valid_phone(value: Any) -> bool:
    """True for a phone number of 7 to 15 digits, optionally with + and separators."""
    return isinstance(value, str) and bool(_PHONE.match(_PHONE_NOISE.sub("", value)))


def may_create(array: str, item: Mapping[str, Any], identity: Identity) -> bool:
    """Whether an object may create a profile for an unknown user (`_update_existing_only`).

    ATTRIBUTES_DOC: the flag defaults to false, but to true for a `user_alias`, which creates an
    alias-only profile only from an attributes object sent with the flag explicitly false.
    EVENT_DOC, PURCHASE_DOC: events and purchases by alias are always update-only. A `braze_id`
    is assigned by Braze, so an unknown one can never be created.
    """
    flag = item.get("_update_existing_only")
    if identity.kind == "braze_id":
        return False
    if identity.kind == "user_alias":
        return array == "attributes" and flag is False
    return flag is not True


# --------------------------------------------------------------------------- attributes


def check_attributes(item: Mapping[str, Any]) -> Problem:
    """ATTRIBUTES_DOC and CUSTOM_ATTRIBUTES_DOC: names, values and update operations."""
    problem = _check_flags(item, ("_update_existing_only", "_merge_objects"))
    for key, value in item.items():
        if problem is not None:
            break
        if key in META_KEYS:
            continue
        # Most attributes are custom ones of short text or numbers under a name seen before,
        # passed here without a call: what `check_attribute` surely accepts.
        kind = type(value)
        if (kind in _PLAIN_TYPES or (kind is str and len(value) <= MAX_CHARS)) and (
            (key in _KNOWN_CUSTOM_NAMES and type(key) is str) or _custom_name(key)
        ):
            continue
        problem = check_attribute(key, value)
    return problem


_PLAIN_TYPES = frozenset({int, float, bool, type(None)})
MAX_KNOWN_NAMES = 4096  # per rule: a workspace's names are few, but bodies may be hostile
_KNOWN_CUSTOM_NAMES: set[str] = set()


def _custom_name(key: Any) -> bool:
    """True for a custom attribute name `check_attribute` takes as such: 1-255 characters,
    no standard field with rules of its own. Remembers it (up to a bound) for the next time."""
    plain = type(key) is str and 0 < len(key) <= MAX_CHARS and key not in STANDARD_CHECKS
    if plain and len(_KNOWN_CUSTOM_NAMES) < MAX_KNOWN_NAMES:
        _KNOWN_CUSTOM_NAMES.add(key)
    return plain


def _check_flags(item: Mapping[str, Any], names: tuple[str, ...]) -> Problem:
    for name in names:
        value = item.get(name)
        if value is not None and not isinstance(value, bool):
            return f"'{name}' must be true or false"
    return None


def check_attribute(key: str, value: Any) -> Problem:
    """Check one attribute of a user attributes object."""
    if not key or len(key) > MAX_CHARS:
        return f"attribute names must be 1 to {MAX_CHARS} characters"
    standard = STANDARD_CHECKS.get(key)
    if standard is not None:
        return standard(key, value)
    return _check_custom(key, value)


def _check_custom(key: str, value: Any) -> Problem:
    if value is None or isinstance(value, (bool, int, float)):
        return None
    if isinstance(value, str):
        return None if len(value) <= MAX_CHARS else _too_long(key)
    if isinstance(value, list):
        return _check_array(key, value)
    return _check_operation(key, value)


def _too_long(key: str) -> str:
    return f"the value of '{_short(key)}' is longer than {MAX_CHARS} characters"


def _short(key: str) -> str:
    return key if len(key) <= 40 else key[:37] + "..."


def _check_array(key: str, value: list[Any]) -> Problem:
    """ATTRIBUTES_DOC: an array of scalars (at most 500), or an array of objects (100 KB)."""
    if all(isinstance(entry, dict) for entry in value) and value:
        return _check_object_array(key, value)
    if not all(isinstance(entry, Scalar) for entry in value):
        return f"'{_short(key)}' must hold only scalar values or only objects"
    if len(value) > MAX_ARRAY_ITEMS:
        return f"'{_short(key)}' holds more than {MAX_ARRAY_ITEMS} values"
    if any(isinstance(entry, str) and len(entry) > MAX_CHARS for entry in value):
        return _too_long(key)
    return None


def _check_object_array(key: str, value: list[Any]) -> Problem:
    problem = _check_nested_value(value, 0)
    if problem is not None:
        return f"'{_short(key)}': {problem}"
    if len(orjson.dumps(value)) > MAX_OBJECT_ARRAY_BYTES:
        return f"'{_short(key)}' is larger than {MAX_OBJECT_ARRAY_BYTES // 1000} KB"
    return None


def _check_operation(key: str, value: dict[str, Any]) -> Problem:
    """An `inc`, an array `add`/`remove`, an array-of-objects `$add`/`$remove`/`$update`,
    else a nested object."""
    keys = value.keys()
    if keys == {"inc"}:
        amount = value["inc"]
        ok = isinstance(amount, (int, float)) and not isinstance(amount, bool)
        return None if ok else f"'{_short(key)}': 'inc' takes a number"
    if keys and keys <= {"add", "remove"}:
        return _check_add_remove(key, value)
    if keys and keys <= {"$add", "$remove", "$update"}:
        return _check_object_operations(key, value)
    return check_nested_object(key, value)


def _check_add_remove(key: str, value: dict[str, Any]) -> Problem:
    for verb, entries in value.items():
        if not isinstance(entries, list) or not all(isinstance(e, Scalar) for e in entries):
            return f"'{_short(key)}': '{verb}' takes an array of scalar values"
        if any(isinstance(e, str) and len(e) > MAX_CHARS for e in entries):
            return _too_long(key)
    return None


def _check_object_operations(key: str, value: dict[str, Any]) -> Problem:
    for verb, entries in value.items():
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            return f"'{_short(key)}': '{verb}' takes an array of objects"
        if verb != "$add" and not all(_identifies(entry, verb) for entry in entries):
            return f"'{_short(key)}': '{verb}' needs '$identifier_key' and '$identifier_value'"
    added = list(value.get("$add", ()))
    added += [entry["$new_object"] for entry in value.get("$update", ())]
    return _check_object_array(key, added) if added else None


def _identifies(entry: dict[str, Any], verb: str) -> bool:
    named = isinstance(entry.get("$identifier_key"), str) and "$identifier_value" in entry
    return named and (verb != "$update" or isinstance(entry.get("$new_object"), dict))


def check_nested_object(key: str, value: dict[str, Any]) -> Problem:
    """NESTED_DOC: key rules, `{"$time": ...}` dates, no nulls, at most 50 KB."""
    problem = _check_nested_value(value, 0)
    if problem is not None:
        return f"'{_short(key)}': {problem}"
    if len(orjson.dumps(value)) > MAX_NESTED_BYTES:
        return f"'{_short(key)}' is larger than {MAX_NESTED_BYTES // 1000} KB"
    return None


def _check_nested_value(value: Any, depth: int) -> Problem:
    if depth > MAX_DEPTH:
        return "nested too deeply"
    if value is None:
        return "nested values must not be null"
    if isinstance(value, str):
        return None if len(value) <= MAX_CHARS else f"a value is longer than {MAX_CHARS} characters"
    if isinstance(value, list):
        return _first_problem(_check_nested_value(entry, depth + 1) for entry in value)
    if isinstance(value, dict):
        return _check_nested_dict(value, depth)
    return None


def _check_nested_dict(value: dict[str, Any], depth: int) -> Problem:
    if "$time" in value:
        ok = len(value) == 1 and parse_time(value["$time"]) is not None
        return None if ok else "'$time' takes one valid date, and nothing beside it"
    for key, entry in value.items():
        if not key or len(key) > MAX_CHARS or " " in key or key.startswith("$"):
            return (
                f"nested key '{_short(key)}' must be 1 to {MAX_CHARS} characters, no spaces, no $"
            )
        problem = _check_nested_value(entry, depth + 1)
        if problem is not None:
            return problem
    return None


def _first_problem(problems: Any) -> Problem:
    return next((problem for problem in problems if problem is not None), None)


# --------------------------------------------------------------------------- standard fields


def _check_email_field(key: str, value: Any) -> Problem:
    return None if value is None or valid_email(value) else _BAD_EMAIL


def _check_subscription(key: str, value: Any) -> Problem:
    if value is None or value in SUBSCRIPTION_STATES:
        return None
    return f"'{key}' must be 'opted_in', 'subscribed' or 'unsubscribed'"


def _check_gender(key: str, value: Any) -> Problem:
    if value is None or (isinstance(value, str) and value.upper() in GENDERS):
        return None
    return "'gender' must be one of M, F, O, N, P or null"


def _check_dob(key: str, value: Any) -> Problem:
    if value is None:
        return None
    if isinstance(value, str) and _DOB.match(value):
        try:
            datetime.strptime(value, "%Y-%m-%d")
        except ValueError:
            pass
        else:
            return None
    return "'dob' must be a date written YYYY-MM-DD"


StandardCheck = Callable[[str, Any], Problem]

STANDARD_CHECKS: dict[str, StandardCheck] = {
    "email": _check_email_field,
    "email_subscribe": _check_subscription,
    "push_subscribe": _check_subscription,
    "gender": _check_gender,
    "dob": _check_dob,
}


# --------------------------------------------------------------------------- events, purchases


def parse_time(value: Any) -> datetime | None:
    """EVENT_DOC: an ISO 8601 time, or yyyy-MM-dd'T'HH:mm:ss:SSSZ; UTC when no zone is given."""
    if not isinstance(value, str) or len(value) > 64:
        return None
    return _parse_text(value)


@functools.lru_cache(maxsize=1024)
def _parse_text(value: str) -> datetime | None:
    """`parse_time` of text, remembered: an event's time is read when it is checked and again
    when it is applied, a few dozen objects later. Datetimes are immutable, so sharing is safe."""
    moment = _from_iso(value)
    if moment is None:
        match = _COLON_MILLIS.match(value)
        moment = _from_iso(f"{match[1]}.{match[2]}{match[3] or ''}") if match else None
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def _from_iso(value: str) -> datetime | None:
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def check_event(item: Mapping[str, Any]) -> Problem:
    """EVENT_DOC: `name` and `time` are required; properties follow the naming rules."""
    name = item.get("name")
    if not isinstance(name, str) or not name:
        return "'name' is required and must be a non-empty string"
    if len(name) > MAX_CHARS:
        return f"'name' is longer than {MAX_CHARS} characters"
    problem = _check_time_and_extras(item)
    if problem is not None:
        return problem
    return check_properties(
        item.get("properties"), RESERVED_EVENT_PROPERTIES, MAX_EVENT_PROPERTIES_BYTES
    )


def _check_time_and_extras(item: Mapping[str, Any]) -> Problem:
    if item.get("time") is None:
        return "'time' is required"
    if parse_time(item["time"]) is None:
        return "'time' must be an ISO 8601 date and time"
    app_id = item.get("app_id")
    if app_id is not None and not isinstance(app_id, str):
        return "'app_id' must be a string"
    return _check_flags(item, ("_update_existing_only",))


def check_purchase(item: Mapping[str, Any]) -> Problem:
    """PURCHASE_DOC: `product_id`, `currency`, `price` and `time` required; `quantity` 1-100."""
    product_id = item.get("product_id")
    if not isinstance(product_id, str) or not product_id or len(product_id) > MAX_CHARS:
        return f"'product_id' is required: 1 to {MAX_CHARS} characters"
    currency = item.get("currency")
    if not isinstance(currency, str) or not _CURRENCY.match(currency):
        return "'currency' is required: a three-letter ISO 4217 code"
    if not _is_number(item.get("price")):
        return "'price' is required and must be a number"
    problem = _check_quantity(item.get("quantity")) or _check_time_and_extras(item)
    if problem is not None:
        return problem
    return check_properties(
        item.get("properties"), RESERVED_PURCHASE_PROPERTIES, MAX_PURCHASE_PROPERTIES_BYTES
    )


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_quantity(value: Any) -> Problem:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_QUANTITY:
        return None
    return f"'quantity' must be a whole number from 1 to {MAX_QUANTITY}"


def check_properties(properties: Any, reserved: frozenset[str], max_bytes: int) -> Problem:
    """EVENT_DOC, PURCHASE_DOC: names 1-255 characters, no leading $, none reserved."""
    if properties is None:
        return None
    if not isinstance(properties, dict):
        return "'properties' must be an object"
    nested = False
    known = _KNOWN_PROPERTY_NAMES.get(reserved)
    for key, value in properties.items():
        # Most properties are short text or numbers under a name seen before, passed here
        # without a call: what `_check_property` surely accepts, and nothing nested.
        kind = type(value)
        if (kind in _PLAIN_TYPES or (kind is str and len(value) <= MAX_CHARS)) and (
            (known is not None and key in known and type(key) is str)
            or _plain_name(key, reserved, known)
        ):
            continue
        problem = _check_property(key, value, reserved)
        if problem is not None:
            return problem
        nested = nested or isinstance(value, (dict, list))
    if nested and len(orjson.dumps(properties)) > max_bytes:
        return f"'properties' is larger than {max_bytes // 1000} KB"
    return None


# Property names found plain, by the reserved names they were checked against.
_KNOWN_PROPERTY_NAMES: dict[frozenset[str], set[str]] = {
    RESERVED_EVENT_PROPERTIES: set(),
    RESERVED_PURCHASE_PROPERTIES: set(),
}


def _plain_name(key: Any, reserved: frozenset[str], known: set[str] | None) -> bool:
    """True for a property name `_check_property` accepts: 1-255 characters, no $, not
    reserved. Remembers it in `known` (up to a bound) for the next time."""
    plain = type(key) is str and 0 < len(key) <= MAX_CHARS and key[0] != "$" and key not in reserved
    if plain and known is not None and len(known) < MAX_KNOWN_NAMES:
        known.add(key)
    return plain


def _check_property(key: str, value: Any, reserved: frozenset[str]) -> Problem:
    if not key or len(key) > MAX_CHARS:
        return f"property names must be 1 to {MAX_CHARS} characters"
    if key.startswith("$"):
        return f"property name '{_short(key)}' must not start with $"
    if key in reserved:
        return f"property name '{key}' is reserved"
    if isinstance(value, str):
        return None if len(value) <= MAX_CHARS else _too_long(key)
    if isinstance(value, (dict, list)):
        return _check_property_value(value, 0)
    return None


def _check_property_value(value: Any, depth: int) -> Problem:
    if depth > MAX_DEPTH:
        return "properties nested too deeply"
    if isinstance(value, str) and len(value) > MAX_CHARS:
        return f"a property value is longer than {MAX_CHARS} characters"
    children = value.values() if isinstance(value, dict) else value
    if isinstance(value, (dict, list)):
        return _first_problem(_check_property_value(child, depth + 1) for child in children)
    return None


Check = Callable[[Mapping[str, Any]], Problem]

FIELD_CHECKS: dict[str, Check] = {
    "attributes": check_attributes,
    "events": check_event,
    "purchases": check_purchase,
}
