"""Load YAML while remembering the line of every key, so config errors can say `file:line`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

KeyPath = tuple[str | int, ...]

# A config file is a few hundred values. Aliases are expanded while walking, so a tiny file
# of nested aliases ("billion laughs": 8 anchors of 8 aliases each, ~420 bytes) would
# expand to 8^8 values: the walk stops at these limits and names the line instead.
MAX_VALUES = 100_000
MAX_DEPTH = 64


class YamlSyntaxError(Exception):
    """A file is not valid YAML; carries the line where the parser gave up."""

    def __init__(self, path: Path, line: int, message: str) -> None:
        super().__init__(f"{path}:{line}: {message}")
        self.path = path
        self.line = line
        self.message = message


class _Budget:
    def __init__(self) -> None:
        self.values = 0
        self.line = 1  # the top-level key being expanded: where the user should look


def _walk(loader: yaml.SafeLoader, node: yaml.Node, path: KeyPath,
          lines: dict[KeyPath, int], budget: _Budget | None = None) -> Any:
    budget = budget or _Budget()
    budget.values += 1
    if budget.values > MAX_VALUES or len(path) > MAX_DEPTH:
        what = (f"more than {MAX_VALUES:,} values" if budget.values > MAX_VALUES
                else f"deeper than {MAX_DEPTH} levels")
        raise YamlSyntaxError(Path("?"), budget.line,
                              f"the file expands to {what} (nested aliases `*name` of "
                              "anchors `&name`?); refusing to load it")
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise YamlSyntaxError(
                    Path("?"), key_node.start_mark.line + 1, "merge keys (<<) are not supported"
                )
            if not isinstance(key_node, yaml.ScalarNode):
                raise YamlSyntaxError(Path("?"), key_node.start_mark.line + 1,
                                      "a key must be a plain value, not a list or mapping")
            key = loader.construct_object(key_node, deep=True)
            if not path:
                budget.line = key_node.start_mark.line + 1
            if key in out:
                raise YamlSyntaxError(
                    Path("?"), key_node.start_mark.line + 1, f"duplicate key {key!r}"
                )
            out[key] = _walk(loader, value_node, path + (key,), lines, budget)
            # the key's own line is the most useful place to point at
            lines[path + (key,)] = key_node.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_walk(loader, item, path + (i,), lines, budget)
                for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)


def load_yaml_with_lines(path: Path) -> tuple[Any, dict[KeyPath, int]]:
    """Parse `path`; return the data and a map from key path to 1-based line number."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise YamlSyntaxError(path, line, f"not UTF-8 (byte 0x{data[exc.start]:02x} on line "
                              f"{line}); save the file as UTF-8") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        raise YamlSyntaxError(path, line, f"invalid YAML: {exc.problem or exc}") from None
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow (NUL...)
        line = text.count("\n", 0, exc.position) + 1
        raise YamlSyntaxError(path, line, f"invalid YAML: character {exc.character!r} is "
                              "not allowed") from None
    except (yaml.YAMLError, RecursionError) as exc:
        raise YamlSyntaxError(path, 1, f"invalid YAML: {exc}"[:300]) from None
    if node is None:
        return None, {(): 1}
    lines: dict[KeyPath, int] = {}
    try:
        data = _walk(yaml.SafeLoader(""), node, (), lines)
    except YamlSyntaxError as exc:
        raise YamlSyntaxError(path, exc.line, exc.message) from None
    except yaml.constructor.ConstructorError as exc:
        mark = exc.problem_mark
        raise YamlSyntaxError(path, mark.line + 1 if mark else 1, str(exc.problem)) from None
    return data, lines


def line_for(lines: dict[KeyPath, int], path: KeyPath) -> int:
    """The line of the deepest known prefix of `path` (errors may name keys that are missing)."""
    p = tuple(path)
    while p:
        if p in lines:
            return lines[p]
        p = p[:-1]
    return lines.get((), 1)


def format_path(path: KeyPath) -> str:
    """`('tracks', 0, 'steps', 1, 'id')` -> `tracks[0].steps[1].id`."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"
