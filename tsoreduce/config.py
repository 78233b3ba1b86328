"""Configuration of YAML runs: the top-level layout of a run file, loading and validating it, and the
generated ``runs/template.yaml``.

Every stage module declares its parameters as a ``CONFIG_SCHEMA``: a dict mapping a key to a
:class:`Param` (a leaf with default, type, allowed values or range and a one-line doc) or to a nested
dict (a sub-section, e.g. one step).  :func:`validate` checks a user section against a schema and
returns the complete section with defaults filled in.  An unknown key, a wrong type or an
out-of-range value raises :class:`~tsoreduce.errors.ConfigError` naming the full key path and what is
allowed, before any work is done.  The schema machinery lives in :mod:`tsoreduce.config_schema`
and is re-exported here.
"""

from __future__ import annotations

from .config_schema import Param, config_error, dataclass_schema, defaults, validate
from .errors import ConfigError

__all__ = ["Param", "validate", "defaults", "config_error", "dataclass_schema"]


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

import difflib
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
    """The one place stage modules are imported (here and by ``tsoreduce.pipeline``).

    A module that is not installed -- the stage's own or a dependency it imports -- is a ConfigError
    naming it; any other error the import raises (a SyntaxError, an exception at module level)
    propagates as itself, so a broken stage is never reported as a configuration problem.
    """
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ConfigError(f"{section}: the stage module {module_name} cannot be imported: module "
                          f"{exc.name!r} is not installed ({exc}); this stage cannot run") from exc


def stage_schema(section: str) -> dict:
    """The ``CONFIG_SCHEMA`` of the stage module behind YAML ``section`` (imported lazily).

    Parameters
    ----------
    section : str
        A key of :data:`SECTION_MODULES` (``"stage1"`` ... ``"stage4"``, ``"mrs"``).

    Returns
    -------
    dict
        The schema (key -> :class:`Param` or nested dict).

    Raises
    ------
    ConfigError
        Not a stage section, or its module is missing, fails to import, or has no CONFIG_SCHEMA.
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


def simulate_schema() -> dict:
    """The ``input.simulate`` schema: every field of :class:`tsoreduce.simulate.LRSSimConfig`.

    Returns
    -------
    dict
        ``{field name: Param}`` (:func:`dataclass_schema` of the class).
    """
    return dataclass_schema(_sim_config_class())


def _tupleize(v):
    return tuple(_tupleize(x) for x in v) if isinstance(v, list) else v


def lrs_sim_config(section: dict):
    """Build a :class:`tsoreduce.simulate.LRSSimConfig` from a validated ``input.simulate`` section.

    Parameters
    ----------
    section : dict
        The validated section (YAML lists become the tuples the dataclass uses).

    Returns
    -------
    LRSSimConfig
        The simulator configuration.

    Raises
    ------
    ConfigError
        Impossible values (the dataclass's own checks), named by key.
    """
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

    Parameters
    ----------
    spec : str, int, list or None
        The stage specification (None or ``"all"``: every allowed stage).
    allowed : sequence of int
        The stages that can run for this input.

    Returns
    -------
    list of int
        Sorted, unique stage numbers.

    Raises
    ------
    ConfigError
        Anything else, or a stage outside ``allowed``.
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
    """Stages that can run from an input of this kind.

    Parameters
    ----------
    input_kind : str
        A key of :data:`INPUT_KINDS` (``"simulate"``, ``"uncal"``, ``"rateints"``, ...).

    Returns
    -------
    list of int
        simulate/uncal -> 1-4, rateints -> 2-4, calints -> 3-4, ...
    """
    return list(range(INPUT_KINDS[input_kind][0], 5))


def first_stage(config: dict) -> int:
    """The first stage a validated run's input feeds.

    Parameters
    ----------
    config : dict
        A validated run configuration.

    Returns
    -------
    int
        1 for simulate/uncal, 2 for rateints, 3 for calints/mrs, 4 for light curves.
    """
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
            deep = getattr(_import_stage_module(SECTION_MODULES[section][0], section), "validate_config",
                           None)
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
    """The text of a YAML file and what it holds.

    Parameters
    ----------
    path : str or pathlib.Path
        The YAML file.

    Returns
    -------
    text : str
        The file's text.
    value : object
        What it holds (None when empty).

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ConfigError
        A YAML syntax error (with the line).
    """
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

    Parameters
    ----------
    path : str or pathlib.Path
        The YAML run file.
    stages : str, int or list, optional
        Overrides the file's ``stages`` (as :func:`parse_stages` accepts).
    output_dir : str or pathlib.Path, optional
        Overrides the file's ``output_dir``.
    check_files : bool
        Check that input files exist and are consistent.

    Returns
    -------
    dict
        The validated run configuration, defaults filled, paths absolute.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ConfigError
        A YAML syntax error (with the line), an empty file, and every validation failure.
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

    Returns
    -------
    str
        The YAML text.
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
