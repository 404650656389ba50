"""The built-in load generator with a Braze API key: `python -m outgrow_braze_dev.sandbox.load`.

It takes `outgrow_braze_dev.loadgen`'s options plus `--api-key`, sends every post with
`Authorization: Bearer <key>`, and prints the same one-line JSON summary. Like loadgen it only
targets this machine and stops by itself after `--duration` or `--max-requests`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Coroutine, Sequence
from typing import Any

from outgrow_braze_dev import loadgen


def bearer(api_key: str) -> dict[str, str]:
    """The header that carries the key, as Braze reads it."""
    return {"Authorization": f"Bearer {api_key}"}


def run_load(load: loadgen.Load, api_key: str) -> Coroutine[Any, Any, dict[str, Any]]:
    """loadgen's run, with the key on every post."""
    return loadgen.run_load(load, bearer(api_key))


def build_parser() -> argparse.ArgumentParser:
    """The load generator's options, and the sandbox key to send."""
    parser = loadgen.build_parser()
    parser.prog = "python -m outgrow_braze_dev.sandbox.load"
    parser.add_argument("--api-key", required=True, help="the sandbox key to send")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one bounded, authenticated load and print its summary as one JSON line."""
    parser = build_parser()
    load = loadgen.load_from_args(parser, argv)
    api_key: str = parser.parse_args(argv).api_key
    summary = loadgen.run(load, bearer(api_key))
    sys.stdout.write(json.dumps(summary, separators=(",", ":")) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
