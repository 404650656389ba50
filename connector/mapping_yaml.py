"""Read a mapping file's YAML into plain data that remembers the line of every key and item.

Also the error every mapping-file problem raises, so each message can name the file, the line and
the rule.
"""

from __future__ import annotations

import math
from typing import Any

import yaml

from connector.errors import ConfigError

MAX_SHOWN_KEY = 40

Location = tuple[str | int, ...]
Lines = dict[Location, int]


class MappingFileError(ConfigError):
    """A mapping file that cannot be used; the message names the file, the line and the rule."""

    def __init__(self, file: str, line: int | None, rule: str, problem: str) -> None:
        self.file, self.line, self.rule, self.problem = file, line, rule, problem
        where = f"{file}:{line}" if line else file
        super().__init__(f"{where}: {rule}: {problem}" if rule else f"{where}: {problem}")


def describe(where: Location) -> str:
    """Write a location as `profiles[0].attributes.score`."""
    text = ""
    for part in where:
        if isinstance(part, int):
            text += f"[{part}]"
            continue
        key = part if len(part) <= MAX_SHOWN_KEY else part[: MAX_SHOWN_KEY - 1] + "…"
        text += f".{key}" if text else key
    return text or "top level"


def read_yaml(text: str, file: str) -> tuple[Any, Lines]:
    """Load YAML into plain data, remembering the line of every key and list item."""
    try:
        loader = yaml.SafeLoader(text)
    except yaml.reader.ReaderError as exc:  # characters YAML does not allow are refused up front
        problem = f"the character {chr(exc.character)!r} is not allowed in YAML"
        raise MappingFileError(
            file, text.count("\n", 0, exc.position) + 1, "YAML", problem
        ) from None
    try:
        return _document(loader, file)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or str(exc)
        raise MappingFileError(file, mark.line + 1 if mark else None, "YAML", problem) from None
    except yaml.YAMLError as exc:
        raise MappingFileError(file, None, "YAML", str(exc)) from None
    except RecursionError:
        problem = "nested too deeply, or an anchor contains itself"
        raise MappingFileError(file, None, "YAML", problem) from None
    finally:
        loader.dispose()


def _document(loader: yaml.SafeLoader, file: str) -> tuple[Any, Lines]:
    node = loader.get_single_node()
    if node is None:
        raise MappingFileError(file, 1, "", "the file is empty")
    lines: Lines = {}
    return _build(loader, node, (), lines, file), lines


def _build(
    loader: yaml.SafeLoader, node: yaml.Node, where: Location, lines: Lines, file: str
) -> Any:
    lines.setdefault(where, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        return _build_mapping(loader, node, where, lines, file)
    if isinstance(node, yaml.SequenceNode):
        return [
            _build(loader, item, (*where, index), lines, file)
            for index, item in enumerate(node.value)
        ]
    return _scalar(loader, node)


def _build_mapping(
    loader: yaml.SafeLoader, node: yaml.MappingNode, where: Location, lines: Lines, file: str
) -> dict[str, Any]:
    seen: dict[str, int] = {}
    for key_node, _ in node.value:
        line = key_node.start_mark.line + 1
        if not isinstance(key_node, yaml.ScalarNode):
            raise MappingFileError(file, line, describe(where), "keys must be plain text")
        if key_node.tag != "tag:yaml.org,2002:merge" and key_node.value in seen:
            first = seen[key_node.value]
            problem = f"the key '{key_node.value}' appears twice (first on line {first})"
            raise MappingFileError(file, line, describe(where), problem)
        seen[key_node.value] = line
    loader.flatten_mapping(node)  # `<<: *anchor` merges; the mapping's own keys win
    result: dict[str, Any] = {}
    for key_node, value_node in node.value:
        key = (*where, key_node.value)
        lines[key] = key_node.start_mark.line + 1
        result[key_node.value] = _build(loader, value_node, key, lines, file)
    return result


def _scalar(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    """Construct a scalar, keeping dates and YAML 1.1 words like `yes` and `no` as text."""
    if node.tag == "tag:yaml.org,2002:timestamp":
        return node.value
    if node.tag == "tag:yaml.org,2002:bool" and node.value.lower() not in ("true", "false"):
        return node.value
    value = loader.construct_object(node)
    if isinstance(value, float) and not math.isfinite(value):
        return node.value
    return value if isinstance(value, str | int | float | bool) or value is None else node.value
