"""The one error the sandbox raises on purpose: a request refused with a Braze-shaped answer."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


class Refusal(Exception):
    """A request refused with an HTTP status and a body of `{"message", "errors"?}`."""

    def __init__(self, status: int, message: str, errors: Sequence[Mapping[str, Any]] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = list(errors)

    def body(self) -> dict[str, Any]:
        """The JSON body Braze sends with a fatal error."""
        if self.errors:
            return {"message": self.message, "errors": self.errors}
        return {"message": self.message}
