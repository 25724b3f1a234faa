"""The sandboxed Jinja environment every template renders in, with a shortcut for the lookups
templates do most (`lead.first_name`, `sender.from_name`) that gives what the sandbox's own
`getattr` gives, without its attribute-safety checks and exception round trip.

A plain dict's key that is not also a dict attribute is what the sandbox returns anyway (it
tries the attribute, fails, then the item, unchecked). A SimpleNamespace's public attribute
holding a plain value passes every check the sandbox makes (not underscored, not internal,
not a mutating method, not `str.format`). Everything else takes the sandbox's way."""

from __future__ import annotations

from types import NoneType, SimpleNamespace
from typing import Any

from jinja2.sandbox import ImmutableSandboxedEnvironment

_DICT_ATTRIBUTES = frozenset(dir(dict))
_PLAIN = frozenset({str, int, float, bool, NoneType})
_MISSING = object()


class Sandbox(ImmutableSandboxedEnvironment):
    """`ImmutableSandboxedEnvironment` with the lookup shortcut above."""

    def getattr(self, obj: Any, attribute: str) -> Any:
        kind = type(obj)
        if kind is dict and attribute not in _DICT_ATTRIBUTES:
            value = obj.get(attribute, _MISSING)
            if value is not _MISSING:
                return value
        elif kind is SimpleNamespace and attribute[:1] != "_":
            value = obj.__dict__.get(attribute, _MISSING)
            if type(value) in _PLAIN:
                return value
        return super().getattr(obj, attribute)
