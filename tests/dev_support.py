"""A production install, as the tests can make one: the connector without the development tools.

The development tools add their commands through the `outgrow_braze.commands` entry point of the
`outgrow-braze-dev` distribution; hiding that distribution's entry points is what uninstalling it
would do to `connector.cli`.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
from collections.abc import Iterator
from typing import Any
from unittest import mock

DEV_DISTRIBUTION = "outgrow-braze-dev"


@contextlib.contextmanager
def production_install() -> Iterator[None]:
    """Within the block, no entry point of the development tools is installed."""
    installed = importlib.metadata.entry_points

    def entry_points(**params: Any) -> importlib.metadata.EntryPoints:
        return importlib.metadata.EntryPoints(
            entry
            for entry in installed(**params)
            if entry.dist is None or entry.dist.name != DEV_DISTRIBUTION
        )

    with mock.patch.object(importlib.metadata, "entry_points", entry_points):
        yield
