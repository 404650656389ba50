"""The Kafka record key: the user's Braze identity as the mapping's identity rules compute it.

All of one user's records then share a partition, which the worker's delivery state relies on:
it checks, per record, that the identity it mapped keys to the partition it read the record from.
A lead no identity rule matches is keyed by its lead id (`lead:<id>`), else it has no key.
"""

from __future__ import annotations

from collections.abc import Mapping as Document
from typing import Any

from connector.mapping import Mapping

MAX_KEY_BYTES = 1024
LEAD_PREFIX = b"lead:"


def record_key(
    mapping: Mapping, document: Document[str, Any], source: str, received_at_ms: int | None
) -> bytes | None:
    """Return the record key of a parsed lead, or None; a key too long to be one is passed over.

    Parsed leads hold no lone surrogates (JSON and form parsing refuse them), so the identity's
    UTF-8 bytes are the bytes the worker hashes when it checks the partition.
    """
    user_key = mapping.identity_key(document, source, received_at_ms)
    if user_key is not None:
        key = user_key.encode("utf-8")
        if len(key) <= MAX_KEY_BYTES:
            return key
    lead_id = mapping.lead_id(document, source, received_at_ms)
    if lead_id is not None:
        key = LEAD_PREFIX + lead_id.encode("utf-8")
        if len(key) <= MAX_KEY_BYTES:
            return key
    return None
