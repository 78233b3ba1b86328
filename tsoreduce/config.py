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


def config_error(messages: list[str]) -> ConfigError:
    """One ConfigError listing every message (``.errors`` keeps the list)."""
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
    user : dict or None -- the YAML section as loaded.
    schema : dict of :class:`Param` or nested dicts.
    path : the dotted key path of this section, for messages (e.g. ``"stage1.jump"``).
    errors : a list to which every failure is appended (each message starts with its key path);
        when given nothing is raised and a failing key keeps its default.

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


# --------------------------------------------------------------------------------------------------
# YAML runs: the top-level layout, loading, and the generated template
# --------------------------------------------------------------------------------------------------
#
# A run file has these top-level keys (everything but ``input`` is optional):
#
#   name:        run name, prefix of product file names
#   output_dir:  where products, figures, the log and the "done" markers go
#   input:       exactly one of  simulate: {LRSSimConfig fields} | uncal: glob | rateints: glob |
#                calints: glob | lightcurves: path | mrs: {...}   (+ optional references: {reftype: path})
#   stages:      "all", "1-4", "2-3", 4, [1, 2] ...
#   plots:       make diagnostic figures (bool)
#   stage1 / stage2 / stage3 / stage4 / mrs:  sections validated against that stage module's CONFIG_SCHEMA
#   execution:   where the work units run (serial | processes | dask), tsoreduce.execution.CONFIG_SCHEMA
#
# Relative paths in a run file are resolved against the directory that contains the YAML file (so a
# run works from any current directory); paths given on the command line are relative to the current
# directory as usual.

import glob as _glob
import importlib
import logging
import os
from pathlib import Path

__all__ += ["SECTION_MODULES", "INPUT_KINDS", "RUN_SCHEMA", "load_run_config", "validate_run_config",
            "stage_schema", "simulate_schema", "lrs_sim_config", "parse_stages", "render_template", "first_stage",
            "possible_stages"]

log = logging.getLogger(__name__)

#: YAML section -> (stage module, what the section configures)
SECTION_MODULES = {
    "stage1": ("tsoreduce.detector", "Stage 1, detector: uncal ramps -> rateints (DN/s)"),
    "stage2": ("tsoreduce.spectroscopic", "Stage 2, spectroscopic: rateints -> calints"),
    "stage3": ("tsoreduce.extraction", "Stage 3, extraction: calints -> x1dints + light curves"),
    "stage4": ("tsoreduce.lightcurve", "Stage 4, light curves: fits -> transmission/emission spectrum"),
    "mrs": ("tsoreduce.mrs", "MRS branch: s3d cubes per integration -> light curves (replaces stage 3)"),
}

#: input kind -> (first stage it feeds, doc)
INPUT_KINDS = {
    "simulate": (1, "simulate a small LRS TSO (uncal + truth + reference files) with these "
                    "tsoreduce.simulate.LRSSimConfig fields, then reduce it"),
    "uncal": (1, "glob or list of uncal FITS files (segments), e.g. data/*_uncal.fits"),
    "rateints": (2, "glob or list of rateints FITS files (ours or the STScI pipeline's)"),
    "calints": (3, "glob or list of calints FITS files (ours or the STScI pipeline's)"),
    "lightcurves": (4, "a light-curve table read by tsoreduce.io.read_lightcurves: ours (HDF5/ECSV), "
                       "SPARTA-style HDF5 or a Eureka!-style white-light ECSV; or a list of them, one per "
                       "visit, each a path or {path, visit, band}, for a joint fit (stage4.joint)"),
    "mrs": (3, "MRS cube time series: a mapping validated by tsoreduce.mrs.INPUT_SCHEMA"),
}

_STAGE_SECTION = {1: "stage1", 2: "stage2", 3: "stage3", 4: "stage4"}

RUN_SCHEMA = {
    "name": Param("tso", str, "run name; prefix of the product file names"),
    "output_dir": Param(None, str, "directory for products, figures, run.log and done markers "
                        "(default: <name>_output beside the YAML file)", nullable=True),
    "stages": Param("all", (str, int, list), "stages to run: 'all', '1-4', '2-3', 4 or a list like "
                    "[1, 2]; the command line --stages/--start-at override it"),
    "plots": Param(True, bool, "write the diagnostic figures of every stage"),
}


def _import_stage_module(module_name: str, section: str):
    try:
        return importlib.import_module(module_name)
    except Exception as exc:  # a missing or half-written stage module
        raise ConfigError(f"{section}: the stage module {module_name} cannot be imported "
                          f"({type(exc).__name__}: {exc}); this stage cannot run") from exc


def stage_schema(section: str) -> dict:
    """The ``CONFIG_SCHEMA`` of the stage module behind YAML ``section`` (imported lazily).

    Raises ConfigError if the module is missing, fails to import, or has no CONFIG_SCHEMA.
    """
    if section not in SECTION_MODULES:
        raise ConfigError(f"{section}: not a stage section; allowed: {', '.join(SECTION_MODULES)}")
    mod = _import_stage_module(SECTION_MODULES[section][0], section)
    schema = getattr(mod, "CONFIG_SCHEMA", None)
    if not isinstance(schema, dict):
        raise ConfigError(f"{section}: {mod.__name__} has no CONFIG_SCHEMA dict")
    return schema


def _sim_config_class():
    mod = _import_stage_module("tsoreduce.simulate.lrs", "input.simulate")
    cls = getattr(mod, "LRSSimConfig", None)
    if cls is None:
        raise ConfigError("input.simulate: tsoreduce.simulate.lrs has no LRSSimConfig")
    return cls


def _docstring_params(cls) -> dict:
    """Field docs from a class docstring: numpydoc ``name : text`` lines, or the prose style
    ``Heading\n    name (default, meaning), ...`` -> {name: "Heading: default, meaning"}."""
    import inspect
    import re
    doc = inspect.getdoc(cls) or ""
    out, current = {}, None
    for line in doc.splitlines():
        stripped = line.strip()
        if line and not line[0].isspace() and " : " in line:
            names, _, rest = line.partition(" : ")
            current = [n.strip() for n in names.split(",")]
            for n in current:
                out[n] = rest.strip()
        elif current and stripped and line[0].isspace():
            for n in current:
                out[n] = (out[n] + " " + stripped).strip()
        elif not stripped:
            current = None
    if out:
        return out
    # prose style: remember the section heading (unindented line), then find "name (...)" fragments
    heading, text_by_heading = "", {}
    for line in doc.splitlines():
        if line and not line[0].isspace():
            heading = line.strip()
        text_by_heading.setdefault(heading, []).append(line.strip())
    for heading, lines in text_by_heading.items():
        text = " ".join(lines)
        for m in re.finditer(r"\b([a-z][a-z0-9_]*) \(", text):
            name, i, depth = m.group(1), m.end(), 1
            j = i
            while j < len(text) and depth:
                depth += {"(": 1, ")": -1}.get(text[j], 0)
                j += 1
            inner = " ".join(text[i:j - 1].split())
            if name not in out and inner:
                out[name] = f"{heading}: {name} ({inner})" if heading and heading != name else inner
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


def simulate_schema() -> dict:
    """A config schema derived from the fields of :class:`tsoreduce.simulate.LRSSimConfig`.

    Each field becomes a :class:`Param` whose type is that of its default (``float`` accepts ints;
    a ``None`` default makes the field nullable and accepts numbers, strings or lists), with
    ``min``/``max``/``choices``/``doc`` taken from the dataclass field's ``metadata`` when given,
    else the doc from the class docstring.
    """
    import dataclasses
    cls = _sim_config_class()
    docs = _docstring_params(cls)
    schema = {}
    for f in dataclasses.fields(cls):
        if not f.init or f.name.startswith("_"):
            continue
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
            default = list(default)
        elif isinstance(default, str):
            ptype, nullable = str, False
        elif isinstance(default, dict):
            ptype, nullable = dict, False
        else:  # arrays or objects cannot be written in YAML: leave them at their default
            continue
        fallback = (f"switch: simulate the {f.name.replace('_', ' ')} effect" if ptype is bool
                    else f.name.replace("_", " "))
        doc = " ".join(str(md.get("doc") or docs.get(f.name) or fallback).split())
        if len(doc) > 160:
            doc = doc[:155].rsplit(" ", 1)[0].rstrip(" ,;:") + " [...]"
        schema[f.name] = Param(default, md.get("type", ptype), doc,
                               choices=md.get("choices"), min=md.get("min"), max=md.get("max"),
                               nullable=md.get("nullable", nullable))
    return schema


def _tupleize(v):
    return tuple(_tupleize(x) for x in v) if isinstance(v, list) else v


def lrs_sim_config(section: dict):
    """Build a :class:`tsoreduce.simulate.LRSSimConfig` from a validated ``input.simulate`` section
    (YAML lists become the tuples the dataclass uses).  Raises ConfigError for impossible values."""
    import dataclasses
    cls = _sim_config_class()
    tuple_fields = {f.name for f in dataclasses.fields(cls)
                    if isinstance(f.default, tuple)}
    kwargs = {k: (_tupleize(v) if k in tuple_fields else v) for k, v in section.items()}
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        raise ConfigError(f"input.simulate: {exc}") from exc
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"input.simulate: {type(exc).__name__}: {exc}") from exc


def parse_stages(spec, allowed=(1, 2, 3, 4)) -> list[int]:
    """Turn ``'all'``, ``'1-4'``, ``'2,3'``, ``3`` or ``[1, 2]`` into a sorted list of stage numbers.

    Raises ConfigError for anything else or for a stage outside ``allowed``.
    """
    allowed = sorted(allowed)
    if spec is None or spec == "all":
        return list(allowed)
    out: list[int] = []
    items = spec if isinstance(spec, list) else [spec]
    for item in items:
        if isinstance(item, bool):
            raise ConfigError(f"stages: {spec!r} is not a stage specification")
        if isinstance(item, int):
            out.append(item)
            continue
        for part in str(item).replace(" ", "").split(","):
            if not part:
                continue
            try:
                if "-" in part:
                    a, b = part.split("-", 1)
                    out.extend(range(int(a), int(b) + 1))
                else:
                    out.append(int(part))
            except ValueError:
                raise ConfigError(f"stages: {spec!r} is not a stage specification; use 'all', "
                                  f"'1-4', '2,3', 3 or a list such as [1, 2]") from None
    out = sorted(set(out))
    bad = [s for s in out if s not in allowed]
    if bad or not out:
        raise ConfigError(f"stages: {spec!r} selects stage(s) {bad or out} which cannot run here; "
                          f"allowed stages for this input: {allowed}")
    return out


def possible_stages(input_kind: str) -> list[int]:
    """Stages that can run from an input of this kind (simulate/uncal -> 1-4, rateints -> 2-4, ...)."""
    return list(range(INPUT_KINDS[input_kind][0], 5))


def first_stage(config: dict) -> int:
    return INPUT_KINDS[config["input"]["kind"]][0]


def _resolve_path(p, base: Path) -> str:
    p = os.path.expanduser(os.path.expandvars(str(p)))
    return os.path.normpath(str(Path(p) if os.path.isabs(p) else (base / p)))


def _expand_files(kind: str, value, base: Path, must_exist: bool) -> list[str]:
    items = value if isinstance(value, list) else [value]
    files: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise ConfigError(f"input.{kind}: expected a path/glob string or a list of them, got {item!r}")
        pattern = _resolve_path(item, base)
        matches = sorted(_glob.glob(pattern)) if _glob.has_magic(pattern) else (
            [pattern] if os.path.exists(pattern) else [])
        if not matches and must_exist:
            raise ConfigError(f"input.{kind}: no file matches {item!r} (resolved to {pattern}; "
                              f"relative paths are relative to the YAML file's directory)")
        files.extend(matches)
    return files


def _validate_visit_list(items: list, base: Path, check_files: bool) -> list[dict]:
    """``input.lightcurves`` as a list (a joint Stage 4 fit, one light curve per visit): each item a
    path string or ``{path, visit, band}``; labels default to v1, v2 ...; paths resolved and checked."""
    if not items:
        raise ConfigError("input.lightcurves: the list of visits is empty")
    out, labels = [], set()
    for k, item in enumerate(items):
        where = f"input.lightcurves[{k}]"
        item = {"path": item} if isinstance(item, str) else item
        if not isinstance(item, dict):
            raise ConfigError(f"{where}: expected a path string or a mapping {{path, visit, band}}, got {item!r}")
        unknown = [x for x in item if x not in ("path", "visit", "band")]
        if unknown:
            raise ConfigError(f"{where}.{unknown[0]}: unknown key; allowed: path, visit, band")
        if not isinstance(item.get("path"), str):
            raise ConfigError(f"{where}.path: a light-curve file path (string) is required")
        for key in ("visit", "band"):
            if item.get(key) is not None and not isinstance(item[key], (str, int, float)):
                raise ConfigError(f"{where}.{key}: expected a string, got {item[key]!r}")
        label = str(item.get("visit") if item.get("visit") is not None else f"v{k + 1}")
        if label in labels:
            raise ConfigError(f"{where}.visit: label {label!r} is used twice")
        labels.add(label)
        path = _resolve_path(item["path"], base)
        if check_files and not os.path.isfile(path):
            raise ConfigError(f"{where}.path: no file {item['path']!r} (resolved to {path}; relative paths are "
                              "relative to the YAML file's directory)")
        out.append({"path": path, "visit": label,
                    "band": None if item.get("band") is None else str(item["band"])})
    return out


def _validate_input(user, base: Path, check_files: bool) -> dict:
    if not isinstance(user, dict):
        raise ConfigError("input: expected a mapping with exactly one of "
                          + ", ".join(INPUT_KINDS) + " (and optionally references)")
    kinds = [k for k in user if k in INPUT_KINDS]
    unknown = [k for k in user if k not in INPUT_KINDS and k != "references"]
    if unknown:
        close = difflib.get_close_matches(str(unknown[0]), list(INPUT_KINDS) + ["references"], n=2)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(f"input.{unknown[0]}: unknown key{hint} Allowed keys here: "
                          + ", ".join(list(INPUT_KINDS) + ["references"]))
    if len(kinds) != 1:
        raise ConfigError(f"input: give exactly one of {', '.join(INPUT_KINDS)}; got "
                          f"{kinds or 'none'}")
    kind = kinds[0]
    out: dict = {"kind": kind}
    if kind == "simulate":
        out["simulate"] = validate(user["simulate"], simulate_schema(), "input.simulate")
        lrs_sim_config(out["simulate"])  # the dataclass's own checks, before any work
    elif kind == "mrs":
        mod = _import_stage_module(SECTION_MODULES["mrs"][0], "input.mrs")
        schema = getattr(mod, "INPUT_SCHEMA", None)
        section = user["mrs"]
        if schema is not None:
            section = validate(section, schema, "input.mrs")
        elif not isinstance(section, dict):
            raise ConfigError("input.mrs: expected a mapping")
        # every string value that names a path is resolved relative to the YAML directory
        # the cube paths (string or list) and any *path/*file key resolve against the YAML directory
        out["mrs"] = _resolve_section_paths(section, base, extra_keys=("cubes",))
    elif kind == "lightcurves" and isinstance(user["lightcurves"], list):
        out["lightcurve_visits"] = _validate_visit_list(user["lightcurves"], base, check_files)
        out["lightcurves"] = [e["path"] for e in out["lightcurve_visits"]]
    elif kind == "lightcurves":
        if not isinstance(user["lightcurves"], str):
            raise ConfigError("input.lightcurves: expected one path string, or a list of visits (path strings or "
                              "{path, visit, band}) for a joint fit")
        out["lightcurves"] = _expand_files(kind, user["lightcurves"], base, check_files)[:1] or [
            _resolve_path(user["lightcurves"], base)]
    else:
        out[kind] = _expand_files(kind, user[kind], base, check_files)
    refs = user.get("references") or {}
    if not isinstance(refs, dict) or not all(isinstance(v, str) for v in refs.values()):
        raise ConfigError("input.references: expected a mapping {reftype: path}, e.g. "
                          "{linearity: refs/linearity.fits}")
    out["references"] = {str(k): _resolve_path(v, base) for k, v in refs.items()}
    return out


def validate_run_config(user: dict, base_dir=".", *, stages=None, check_files: bool = True) -> dict:
    """Validate a whole run (the YAML mapping) and return it completed with every default.

    Parameters
    ----------
    user : the YAML mapping as loaded.
    base_dir : directory against which relative paths are resolved (the YAML file's directory).
    stages : optional override of the ``stages`` key (e.g. from ``--stages``).
    check_files : require input files to exist now (``False`` for templates and dry checks).

    Returns
    -------
    dict with keys name, output_dir (absolute), input (with ``kind`` and resolved file lists),
    stages (sorted list of ints), plots, stage1..stage4, mrs, and ``_base_dir``.  The sections of
    the stages that will run are validated against their module's CONFIG_SCHEMA (the module is
    imported now); other sections are validated when their module imports, else kept as given.

    Raises
    ------
    ConfigError naming the key path and the allowed values, before any work is done.
    """
    if not isinstance(user, dict):
        raise ConfigError(f"<top>: a run file must be a mapping of keys, got {type(user).__name__}")
    from .config_rules import check_rules, check_run_rules
    errors: list[str] = []  # every failure, reported together at the end

    def attempt(fn, *args, **kw):
        try:
            return fn(*args, **kw)
        except ConfigError as exc:
            errors.extend(getattr(exc, "errors", None) or [str(exc)])
            return None

    base = Path(base_dir).resolve()
    allowed_top = list(RUN_SCHEMA) + ["input"] + list(SECTION_MODULES) + ["execution"]
    for key in user:
        if key not in allowed_top:
            close = difflib.get_close_matches(str(key), allowed_top, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            errors.append(f"{key}: unknown key{hint} Allowed keys here: {', '.join(allowed_top)}")
    top = validate({k: user[k] for k in RUN_SCHEMA if k in user}, RUN_SCHEMA, errors=errors)
    cfg: dict = {"_base_dir": str(base), "name": top["name"], "plots": top["plots"]}
    if not top["name"] or any(c in top["name"] for c in "/\\ "):
        errors.append(f"name: {top['name']!r} must be a non-empty string without spaces or slashes")
    cfg["output_dir"] = _resolve_path(top["output_dir"] or f"{top['name']}_output", base)
    # where the work units run (not part of any stage hash: results do not depend on it)
    cfg["execution"] = attempt(importlib.import_module("tsoreduce.execution").validate_config,
                               user.get("execution"))
    if "input" not in user:
        errors.append("input: missing; a run needs an input section (one of "
                      + ", ".join(INPUT_KINDS) + ")")
        cfg["input"] = None
    else:
        cfg["input"] = attempt(_validate_input, user["input"], base, check_files)
    if cfg["input"] is not None:
        allowed = possible_stages(cfg["input"]["kind"])
        cfg["stages"] = attempt(parse_stages, stages if stages is not None else top["stages"], allowed)
    else:  # the sections are still checked, for the stages asked for (all if that is unclear)
        try:
            cfg["stages"] = parse_stages(stages if stages is not None else top["stages"])
        except ConfigError:
            cfg["stages"] = None
    chosen = cfg["stages"] or [1, 2, 3, 4]
    running = {_STAGE_SECTION[s] for s in chosen}
    if cfg["input"] is not None and cfg["input"]["kind"] == "mrs" and 3 in chosen:
        running = (running - {"stage3"}) | {"mrs"}
    for section in SECTION_MODULES:
        given = user.get(section)
        if section in running:
            schema = attempt(stage_schema, section)
            if schema is None:
                cfg[section] = given or {}
                continue
            n_before = len(errors)
            cfg[section] = _resolve_section_paths(validate(given, schema, section, errors=errors), base)
            errors.extend(f"{k}: {m}" for k, m in check_rules(section, cfg[section]))
            deep = getattr(importlib.import_module(SECTION_MODULES[section][0]), "validate_config", None)
            if callable(deep) and len(errors) == n_before:
                # a stage's own cross-key checks (e.g. Stage 4 priors), on a section the schema passed
                attempt(deep, cfg[section])
            continue
        try:
            schema = stage_schema(section)
        except ConfigError as exc:
            if given is not None:
                log.warning("%s is not validated now (that stage does not run): %s", section, exc)
            cfg[section] = given or {}
            continue
        cfg[section] = _resolve_section_paths(validate(given, schema, section, errors=errors), base)
        errors.extend(f"{k}: {m}" for k, m in check_rules(section, cfg[section]))
    errors.extend(f"{k}: {m}" for k, m in check_run_rules(cfg))
    if errors:
        raise config_error(errors)
    return cfg


_PATH_KEY_ENDINGS = ("path", "file", "_dir", "files")


def _resolve_section_paths(section: dict, base: Path, extra_keys=()) -> dict:
    """Resolve every string value whose key ends in ``path``, ``file``, ``files`` or ``_dir``
    (e.g. ``stage2.wavelength.specwcs_path``) against the YAML file's directory."""
    out = {}
    for k, v in section.items():
        is_path = str(k).endswith(_PATH_KEY_ENDINGS) or k in extra_keys
        if isinstance(v, dict):
            out[k] = _resolve_section_paths(v, base, extra_keys)
        elif isinstance(v, str) and is_path:
            out[k] = _resolve_path(v, base)
        elif isinstance(v, list) and is_path and all(isinstance(x, str) for x in v):
            out[k] = [_resolve_path(x, base) for x in v]
        else:
            out[k] = v
    return out


def read_yaml(path) -> tuple[str, object]:
    """The text of the YAML file ``path`` and what it holds (None when empty).

    Raises FileNotFoundError if ``path`` does not exist; ConfigError for a YAML syntax error (with
    the line)."""
    import yaml
    text = Path(path).read_text()
    try:
        return text, yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc


def load_run_config(path, *, stages=None, output_dir=None, check_files: bool = True) -> dict:
    """Read and validate a YAML run file; see :func:`validate_run_config` for the result.

    Relative paths inside the file are resolved against the file's directory.  ``output_dir``
    (e.g. from ``--output-dir``) overrides the file's, relative to the current directory.

    Raises
    ------
    FileNotFoundError if ``path`` does not exist; ConfigError for YAML syntax errors (with the line)
    and for every validation failure.
    """
    path = Path(path)
    text, user = read_yaml(path)
    if user is None:
        raise ConfigError(f"{path}: the file is empty")
    cfg = validate_run_config(user, path.parent, stages=stages, check_files=check_files)
    if output_dir is not None:
        cfg["output_dir"] = os.path.abspath(os.path.expanduser(str(output_dir)))
    cfg["_source"] = str(path.resolve())
    cfg["_text"] = text
    return cfg


# ---- template ------------------------------------------------------------------------------------

def _yaml_scalar(value) -> str:
    import yaml
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix(
        "\n...").removesuffix("...").strip()


def _param_comment(p: Param) -> str:
    extra = []
    if p.choices is not None:
        extra.append("one of " + ", ".join(_yaml_scalar(c) for c in p.choices))
    if p.min is not None or p.max is not None:
        extra.append(f"range [{p.min if p.min is not None else '-inf'}, "
                     f"{p.max if p.max is not None else 'inf'}]")
    if p.nullable:
        extra.append("null allowed")
    doc = p.doc.strip().rstrip(".")
    return doc + (f" ({'; '.join(extra)})" if extra else "")


def _render_schema(schema: dict, indent: int, lines: list[str], commented: bool = False):
    pad = " " * indent
    cm = "# " if commented else ""
    for key, spec in schema.items():
        if isinstance(spec, dict):
            lines.append(f"{pad}{cm}{key}:")
            _render_schema(spec, indent + 2, lines, commented)
        else:
            default = list(spec.default) if isinstance(spec.default, tuple) else spec.default
            lines.append(f"{pad}{cm}{key}: {_yaml_scalar(default)}  # {_param_comment(spec)}")


def render_template() -> str:
    """The text of ``runs/template.yaml``: every key of a run with its default and a comment.

    Generated from :data:`RUN_SCHEMA`, the LRSSimConfig fields and every stage module's
    CONFIG_SCHEMA, so the committed template cannot go stale (a test compares them).  The template
    is a reference listing, not a complete run: ``stage4.parameters`` is empty there and a transit
    fit needs t0, per, rp_rs, a_rs and inc declared (see ``runs/demo.yaml``).
    Regenerate with ``tsoreduce --write-template runs/template.yaml``.
    """
    lines = [
        "# tsoreduce run template: every key with its default value and meaning.",
        "# GENERATED by tsoreduce.config.render_template() -- do not edit by hand; regenerate with",
        "#   tsoreduce --write-template runs/template.yaml",
        "# Relative paths are relative to the directory of this YAML file.",
        "# Omitted keys take the defaults shown here; unknown keys, wrong types and out-of-range",
        "# values stop the run before any work, naming the key and the allowed values.",
        "",
    ]
    for key, p in RUN_SCHEMA.items():
        lines.append(f"{key}: {_yaml_scalar(p.default)}  # {_param_comment(p)}")
    lines += ["", "# input: exactly one of the kinds below (+ optional references: {reftype: path})",
              "input:"]
    for kind, (first, doc) in INPUT_KINDS.items():
        if kind == "simulate":
            lines.append(f"  simulate:  # {doc} (stages {first}-4)")
            _render_schema(simulate_schema(), 4, lines)
        elif kind == "mrs":
            lines.append(f"  # mrs:  # {doc} (stages {first}-4)")
            try:
                schema = getattr(_import_stage_module("tsoreduce.mrs", "mrs"), "INPUT_SCHEMA", None)
            except ConfigError:
                schema = None
            if schema:
                _render_schema(schema, 4, lines, commented=True)
        else:
            example = {"uncal": "'data/jw01234*_uncal.fits'", "rateints": "'stage1/*_rateints.fits'",
                       "calints": "'stage2/*_calints.fits'",
                       "lightcurves": "'lightcurves.h5'"}[kind]
            lines.append(f"  # {kind}: {example}  # {doc} " + (f"(stages {first}-4)" if first < 4 else "(stage 4)"))
    lines.append("  # references: {linearity: refs/linearity.fits}  # optional reference files "
                 "{reftype: path} for Stage 1 (a simulation supplies its own)")
    for section, (module, doc) in SECTION_MODULES.items():
        lines += ["", f"# {doc}  [{module}.CONFIG_SCHEMA]", f"{section}:"]
        _render_schema(stage_schema(section), 2, lines)
    lines += ["", "# where the work units (Stage 1 segments, Stage 4 channel fits) run; results do not depend "
              "on it  [tsoreduce.execution.CONFIG_SCHEMA]", "execution:"]
    _render_schema(importlib.import_module("tsoreduce.execution").CONFIG_SCHEMA, 2, lines)
    return "\n".join(lines) + "\n"
