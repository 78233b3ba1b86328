"""Configuration schema and validation for YAML runs.

Every stage module declares its parameters as a ``CONFIG_SCHEMA``: a dict mapping a key to a
:class:`Param` (a leaf with default, type, allowed values or range and a one-line doc) or to a nested
dict (a sub-section, e.g. one step).  :func:`validate` checks a user section against a schema and
returns the complete section with defaults filled in.  An unknown key, a wrong type or an
out-of-range value raises :class:`~tsoreduce.errors.ConfigError` naming the full key path and what is
allowed, before any work is done.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError

__all__ = ["Param", "validate", "defaults"]


@dataclass(frozen=True)
class Param:
    """One configuration leaf.

    Parameters
    ----------
    default : the value used when the key is absent.
    type : a type or tuple of types accepted (``float`` also accepts ``int``; ``bool`` is never an int).
    doc : one line for ``runs/template.yaml`` and error messages.
    choices : allowed values, or None.
    min, max : inclusive numeric bounds (applied to each element of a list), or None.
    nullable : whether ``null`` (None) is allowed.
    item_type : for ``list`` parameters, the type of each element, or None.
    """

    default: Any
    type: Any
    doc: str
    choices: tuple | None = None
    min: float | None = None
    max: float | None = None
    nullable: bool = False
    item_type: Any = None

    def describe(self) -> str:
        parts = [f"type {_type_name(self.type)}"]
        if self.choices is not None:
            parts.append("one of " + ", ".join(repr(c) for c in self.choices))
        if self.min is not None or self.max is not None:
            parts.append(f"range [{self.min if self.min is not None else '-inf'}, "
                         f"{self.max if self.max is not None else 'inf'}]")
        if self.nullable:
            parts.append("or null")
        return "; ".join(parts)


def _type_name(t) -> str:
    if isinstance(t, tuple):
        return " or ".join(_type_name(x) for x in t)
    return getattr(t, "__name__", str(t))


def _type_ok(value, t) -> bool:
    types = t if isinstance(t, tuple) else (t,)
    for ty in types:
        if ty is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return True
        if ty is int and isinstance(value, int) and not isinstance(value, bool):
            return True
        if ty is bool and isinstance(value, bool):
            return True
        if ty not in (float, int, bool) and isinstance(value, ty):
            return True
    return False


def _check_leaf(path: str, value, p: Param):
    if value is None:
        if p.nullable:
            return None
        raise ConfigError(f"{path}: null is not allowed ({p.describe()}) -- {p.doc}")
    if not _type_ok(value, p.type):
        raise ConfigError(f"{path}: got {value!r} of type {type(value).__name__}, expected "
                          f"{p.describe()} -- {p.doc}")
    if p.choices is not None and value not in p.choices:
        raise ConfigError(f"{path}: {value!r} is not allowed; allowed values: "
                          + ", ".join(repr(c) for c in p.choices))
    items = value if isinstance(value, (list, tuple)) else [value]
    for v in items:
        if p.item_type is not None and isinstance(value, (list, tuple)) and not _type_ok(v, p.item_type):
            raise ConfigError(f"{path}: element {v!r} is not of type {_type_name(p.item_type)}")
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            if p.min is not None and v < p.min:
                raise ConfigError(f"{path}: {v!r} is below the minimum {p.min} ({p.describe()})")
            if p.max is not None and v > p.max:
                raise ConfigError(f"{path}: {v!r} is above the maximum {p.max} ({p.describe()})")
    return list(value) if isinstance(value, tuple) else value


def defaults(schema: dict) -> dict:
    """The section a schema yields when the user gives nothing (nested dicts of defaults)."""
    out = {}
    for k, v in schema.items():
        out[k] = defaults(v) if isinstance(v, dict) else (
            list(v.default) if isinstance(v.default, (list, tuple)) else v.default)
    return out


def validate(user: dict | None, schema: dict, path: str = "") -> dict:
    """Check ``user`` against ``schema`` and return it completed with defaults.

    Parameters
    ----------
    user : dict or None -- the YAML section as loaded.
    schema : dict of :class:`Param` or nested dicts.
    path : the dotted key path of this section, for messages (e.g. ``"stage1.jump"``).

    Raises
    ------
    ConfigError
        for an unknown key (with the closest valid keys), a wrong type, a value outside ``choices`` or
        ``[min, max]``, or a non-mapping where a section is expected.
    """
    if user is None:
        user = {}
    if not isinstance(user, dict):
        raise ConfigError(f"{path or '<top>'}: expected a mapping of keys, got {type(user).__name__}")
    out = {}
    for key in user:
        if key not in schema:
            close = difflib.get_close_matches(str(key), list(schema), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ConfigError(f"{(path + '.') if path else ''}{key}: unknown key{hint} "
                              f"Allowed keys here: {', '.join(sorted(schema))}")
    for key, spec in schema.items():
        kpath = f"{path}.{key}" if path else key
        if isinstance(spec, dict):
            out[key] = validate(user.get(key), spec, kpath)
        elif key in user:
            out[key] = _check_leaf(kpath, user[key], spec)
        else:
            out[key] = list(spec.default) if isinstance(spec.default, (list, tuple)) else spec.default
    return out
