"""Tables for the operator commands: drawn with rich where it is installed, plain text otherwise."""

from __future__ import annotations

from collections.abc import Sequence
from typing import IO

Row = Sequence[object]

# Piped output has no terminal width; wide enough that a dead-letter reason stays on one line.
PIPE_WIDTH = 200


def print_table(title: str, headers: Sequence[str], rows: Sequence[Row], stream: IO[str]) -> None:
    """Print a title line, then the table unless it has no rows."""
    stream.write(title + "\n")
    if not rows:
        return
    try:
        import rich  # noqa: F401
    except ImportError:  # pragma: no cover - rich is a dependency; plain text still works
        stream.write(plain_table(headers, rows))
        return
    _rich_table(headers, rows, stream)


def plain_table(headers: Sequence[str], rows: Sequence[Row]) -> str:
    """The table as aligned plain-text columns."""
    cells = [list(headers), *([_text(value) for value in row] for row in rows)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(headers))]
    lines = [
        "  ".join(text.ljust(width) for text, width in zip(line, widths, strict=True))
        for line in cells
    ]
    return "".join(line.rstrip() + "\n" for line in lines)


def _rich_table(headers: Sequence[str], rows: Sequence[Row], stream: IO[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(header_style="bold")
    for header in headers:
        table.add_column(header, overflow="fold")
    for row in rows:
        table.add_row(*(_text(value) for value in row))
    width = None if stream.isatty() else PIPE_WIDTH
    Console(file=stream, width=width, highlight=False, emoji=False, markup=False).print(table)


def _text(value: object) -> str:
    return "-" if value is None else str(value)
