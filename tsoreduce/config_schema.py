"""Configuration schemas: the :class:`Param` leaf, validation of a section against a schema, and
schemas built from configuration dataclasses.

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

__all__ = ["Param", "validate", "defaults", "config_error", "dataclass_schema"]


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
    """The section a schema yields when the user gives nothing.

    Parameters
    ----------
    schema : dict
        Key -> :class:`Param` or nested schema dict.

    Returns
    -------
    dict
        Nested dicts of the defaults.
    """
    out = {}
    for k, v in schema.items():
        out[k] = defaults(v) if isinstance(v, dict) else (
            list(v.default) if isinstance(v.default, (list, tuple)) else v.default)
    return out


def config_error(messages: list[str]) -> ConfigError:
    """One ConfigError listing every message.

    Parameters
    ----------
    messages : list of str
        The problems, each starting with its key path.

    Returns
    -------
    ConfigError
        The error (its ``.errors`` keeps the list), to be raised by the caller.
    """
    unique = list(dict.fromkeys(messages))
    text = unique[0] if len(unique) == 1 else (
        f"{len(unique)} problems, nothing was run:\n" + "\n".join(f"  - {m}" for m in unique))
    exc = ConfigError(text)
    exc.errors = unique
    return exc


def validate(user: dict | None, schema: dict, path: str = "", *, errors: list | None = None) -> dict:
    """Check ``user`` against ``schema`` and return it completed with defaults.

    Parameters
    ----------
    user : dict or None
        The YAML section as loaded.
    schema : dict
        Key -> :class:`Param` or nested schema dict.
    path : str
        The dotted key path of this section, for messages (e.g. ``"stage1.jump"``).
    errors : list, optional
        A list to which every failure is appended (each message starts with its key path); when
        given nothing is raised and a failing key keeps its default.

    Returns
    -------
    dict
        ``user`` completed with defaults (a new dict; nested sections likewise).

    Raises
    ------
    ConfigError
        (when ``errors`` is None) listing every unknown key (with the closest valid keys), wrong type,
        value outside ``choices`` or ``[min, max]``, and non-mapping where a section is expected.
    """
    collect = errors is not None
    errs: list = errors if collect else []
    n_before = len(errs)
    if user is None:
        user = {}
    if not isinstance(user, dict):
        errs.append(f"{path or '<top>'}: expected a mapping of keys, got {type(user).__name__}")
        user = {}
    out = {}
    for key in user:
        if key not in schema:
            close = difflib.get_close_matches(str(key), list(schema), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            errs.append(f"{(path + '.') if path else ''}{key}: unknown key{hint} "
                        f"Allowed keys here: {', '.join(sorted(schema))}")
    for key, spec in schema.items():
        kpath = f"{path}.{key}" if path else key
        default = list(spec.default) if isinstance(getattr(spec, "default", None), (list, tuple)) else \
            getattr(spec, "default", None)
        if isinstance(spec, dict):
            out[key] = validate(user.get(key), spec, kpath, errors=errs)
        elif key in user:
            try:
                out[key] = _check_leaf(kpath, user[key], spec)
            except ConfigError as exc:
                errs.append(str(exc))
                out[key] = default
        else:
            out[key] = default
    if not collect and len(errs) > n_before:
        raise config_error(errs[n_before:])
    return out


def _annotation_type(annotation) -> tuple | None:
    """(type, nullable) from a field annotation such as ``"float | None"`` (string or type)."""
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
    parts = {p.strip() for p in str(text).split("|")}
    nullable = "None" in parts or "Optional" in str(text)
    for name, ty in (("float", (int, float)), ("int", int), ("str", str), ("bool", bool),
                     ("tuple", list), ("list", list)):
        if name in parts:
            return ty, nullable
    return None


def dataclass_schema(config_class, names=None) -> dict:
    """A config schema from the fields of a configuration dataclass (types, defaults, descriptions).

    Each field becomes a :class:`Param` whose type is that of its default (``float`` accepts ints;
    a ``None`` default makes the field nullable, typed from its annotation), with ``doc`` from the
    field's ``metadata["doc"]`` (:func:`tsoreduce._util.field_doc`) and ``min``/``max``/``choices``/
    ``item_type``/``nullable`` from the same metadata when given.  Fields whose defaults cannot be
    written in YAML (arrays, objects) are left out.

    Parameters
    ----------
    config_class : type
        A dataclass, e.g. :class:`tsoreduce.simulate.LRSSimConfig`.
    names : iterable of str, optional
        Only these fields, in this order (default: every init field).

    Returns
    -------
    dict
        ``{field name: Param}``.

    Raises
    ------
    ConfigError
        A requested name is not a field of ``config_class``.
    """
    import dataclasses
    fields = {f.name: f for f in dataclasses.fields(config_class) if f.init and not f.name.startswith("_")}
    unknown = [n for n in (names or ()) if n not in fields]
    if unknown:
        raise ConfigError(f"{config_class.__name__} has no field(s) {unknown}")
    schema = {}
    for name in (names or fields):
        param = _field_param(fields[name])
        if param is not None:
            schema[name] = param
    return schema


def _field_param(f):
    """The :class:`Param` of one dataclass field (None when its default is not YAML-writable)."""
    import dataclasses
    if f.default is not dataclasses.MISSING:
        default = f.default
    elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        default = f.default_factory()  # type: ignore[misc]
    else:
        default = None
    md = dict(f.metadata or {})
    if default is None:
        ptype, nullable = _annotation_type(f.type) or ((int, float, str, list), True)
        nullable = True
    elif isinstance(default, bool):
        ptype, nullable = bool, False
    elif isinstance(default, int):
        ptype, nullable = int, False
    elif isinstance(default, float):
        ptype, nullable = float, False
    elif isinstance(default, (list, tuple)):
        ptype, nullable = list, False
        default = _listify(default)
    elif isinstance(default, str):
        ptype, nullable = str, False
    elif isinstance(default, dict):
        ptype, nullable = dict, False
    else:  # arrays or objects cannot be written in YAML: leave them at their default
        return None
    doc = " ".join(str(md.get("doc") or f.name.replace("_", " ")).split())
    if len(doc) > 160:
        doc = doc[:155].rsplit(" ", 1)[0].rstrip(" ,;:") + " [...]"
    extra = {k: md[k] for k in ("item_type",) if k in md}
    return Param(default, md.get("type", ptype), doc, choices=md.get("choices"), min=md.get("min"),
                 max=md.get("max"), nullable=md.get("nullable", nullable), **extra)


def _listify(v):
    return [_listify(x) for x in v] if isinstance(v, (list, tuple)) else v
