"""Strict YAML for the files a person writes: settings, merge maps, class files.

Plain YAML resolves ambiguity silently: ``{0: road, 0: other}`` keeps the last ``0``,
``true:`` is the key ``True`` (== 1 as a cluster id), ``0.9:`` a float that ``int()`` makes 0,
and an alias can expand a few lines into gigabytes. Here each of these is an error naming
the line: duplicate keys (after YAML's own typing, so ``0`` and ``00`` are one key), keys that
are neither text nor an integer (booleans, floats, null, ``yes``/``on``: quote them to mean
the text), and anchors, aliases and merge keys (``&name``, ``*name``, ``<<``).

Mappings come back as :class:`LineMapping` (a dict) that remembers the line of each key, so
readers can name the line of a value they refuse (:func:`key_line`).
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.nodes import MappingNode, Node

MERGE_TAG = "tag:yaml.org,2002:merge"


class StrictYamlError(yaml.YAMLError):
    """A YAML text that plain YAML would read with a silent guess; the message names the line."""


class LineMapping(dict[Any, Any]):
    """A mapping read by :func:`load`; ``lines`` holds the 1-based line of each key."""

    lines: dict[Any, int]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lines = {}


def key_line(mapping: Any, key: Any) -> int | None:
    """Returns the line of ``key`` in a mapping read by :func:`load`, or None (another source, e.g. JSON)."""
    lines = getattr(mapping, "lines", None)
    return lines.get(key) if isinstance(lines, dict) else None


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    if isinstance(value, float):
        return "a number with a fraction"
    return f"a {type(value).__name__}"


class _StrictLoader(yaml.SafeLoader):
    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise StrictYamlError(
                f"line {event.start_mark.line + 1}, column {event.start_mark.column + 1}: YAML anchors and aliases (&name, *name) are not accepted here; "
                "write each value out"
            )
        return super().compose_node(parent, index)

    def construct_strict_mapping(self, node: MappingNode) -> LineMapping:
        mapping = LineMapping()
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            where = f"line {line}, column {key_node.start_mark.column + 1}"
            if key_node.tag == MERGE_TAG:
                raise StrictYamlError(f"{where}: YAML merge keys (<<) are not accepted here; write each key out")
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, bool) or not isinstance(key, (str, int)):
                raise StrictYamlError(
                    f"{where}: key {key_node.value!r} is {_kind(key)}; a key is a name or an integer "
                    f"(quote it, '{key_node.value}', to mean the text)"
                )
            if key in mapping.lines:
                raise StrictYamlError(f"{where}: key {key_node.value!r} is given twice (first on line {mapping.lines[key]})")
            mapping.lines[key] = line
            mapping[key] = self.construct_object(value_node, deep=True)
        return mapping


def _construct_map(loader: _StrictLoader, node: MappingNode) -> Any:
    if not isinstance(node, MappingNode):  # pragma: no cover - the resolver only sends mappings here
        raise StrictYamlError(f"line {node.start_mark.line + 1}: expected a mapping")
    return loader.construct_strict_mapping(node)


_StrictLoader.add_constructor("tag:yaml.org,2002:map", _construct_map)


def load(text: str) -> Any:
    """Returns the YAML ``text`` parsed strictly (see the module docstring); mappings are :class:`LineMapping`.

    Raises:
        StrictYamlError: a duplicate key, a key that is not text or an integer, an anchor, alias or merge key.
        yaml.YAMLError: text that is not YAML (its message has the line and column).
    """
    return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
