"""The plan of a run: what each requested stage will do, decided before any work.

A stage is finished when its ``.done.json`` marker holds the stage's config hash (a hash chained over
the input and every section up to that stage) and the id of the upstream stage's run, and every
product it lists exists (:func:`is_done`).  :func:`plan` checks the input headers, then gives every
stage an action -- run, resume, skip, rerun (--force) or, for ``--dry-run``, CONFLICT -- and refuses
(:class:`~tsoreduce.errors.OverwriteError`) to overwrite products made with another configuration.
:func:`tsoreduce.pipeline.run` carries the plan out.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from . import __version__
from ._util import atomic_write_json
from .config import first_stage
from .errors import ConfigError, OverwriteError

__all__ = ["StagePlan", "plan", "format_plan", "stage_hashes", "is_done", "STAGE_DIRS", "STAGE_LABELS",
           "DONE", "RUNNING"]

STAGE_DIRS = {0: "simulation", 1: "stage1", 2: "stage2", 3: "stage3", 4: "stage4"}
STAGE_LABELS = {0: "simulate (input.simulate -> uncal)", 1: "Stage 1 detector (uncal -> rateints)",
                2: "Stage 2 spectroscopic (rateints -> calints)",
                3: "Stage 3 extraction (calints -> x1dints + light curves)",
                4: "Stage 4 light-curve fits (-> spectrum)"}
DONE, RUNNING = ".done.json", ".running.json"


# ---- hashing and markers -------------------------------------------------------------------------

def _hash(obj) -> str:
    text = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def stage_hashes(config: dict) -> dict[int, str]:
    """Config hash of every stage: chained over the input section and each stage section in turn.

    Stage *n*'s products depend on the input and on sections 1..n, so a change anywhere upstream
    changes the hash of every later stage.  Plot switches and the output directory are excluded.

    Parameters
    ----------
    config : dict
        The validated run config.

    Returns
    -------
    dict of int to str
        16-hex-digit SHA-256 prefixes for stages 0 (input) to 4.
    """
    inp = {k: v for k, v in config["input"].items()}
    h = {0: _hash({"input": inp})}
    prev = h[0]
    for n in (1, 2, 3, 4):
        section = "mrs" if (n == 3 and config["input"]["kind"] == "mrs") else f"stage{n}"
        prev = h[n] = _hash({"upstream": prev, section: config.get(section, {})})
    return h


def _read_marker(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _write_json_atomic(path: Path, obj) -> None:
    atomic_write_json(path, obj)


def is_done(stage_dir, config_hash: str) -> dict | None:
    """The done marker of ``stage_dir`` if it matches ``config_hash`` and all its products exist.

    Parameters
    ----------
    stage_dir : str or pathlib.Path
        A stage's output directory.
    config_hash : str
        The hash the stage must have been run with.

    Returns
    -------
    dict or None
        The marker (``config_hash``, ``run_id``, ``upstream_run_id``, ``products``, ...), or None.
    """
    m = _read_marker(Path(stage_dir) / DONE)
    if not m or m.get("config_hash") != config_hash:
        return None
    if not all((Path(stage_dir) / p).exists() for p in m.get("products", [])):
        return None
    return m


def _provenance(config: dict, stage: int, config_hash: str) -> dict:
    import yaml
    section = "mrs" if (stage == 3 and config["input"]["kind"] == "mrs") else f"stage{stage}"
    text = yaml.safe_dump({"input": config["input"], section: config.get(section, {})},
                          sort_keys=False, width=100)
    return {"software": "tsoreduce", "version": __version__, "stage": stage,
            "config_hash": config_hash, "config": text,
            "run_config": config.get("_source", "")}


# ---- the plan ------------------------------------------------------------------------------------

@dataclass
class StagePlan:
    """One step of a run: which stage, where, what it reads, and what will happen.

    Parameters
    ----------
    stage : int
        0 (simulation) to 4.
    label : str
        Human-readable name of the stage.
    directory : pathlib.Path
        The stage's output directory.
    config_hash : str
        The stage's chained config hash (:func:`stage_hashes`).
    action : str
        ``"run"``, ``"resume"``, ``"skip"``, ``"rerun (--force)"`` or ``"CONFLICT"`` (dry run only).
    reason : str
        Why, for skip / resume / CONFLICT.
    inputs : list
        Input files (informational).
    keep_existing : bool
        Resume: keep the per-segment products already written.
    """

    stage: int
    label: str
    directory: Path
    config_hash: str
    action: str  # "run", "resume", "skip", "rerun (--force)", "CONFLICT" (dry run only)
    reason: str = ""
    inputs: list = field(default_factory=list)
    keep_existing: bool = False  # resume: keep the per-segment products already written


def _stage_list(config: dict, stages) -> list[int]:
    from .config import parse_stages, possible_stages
    chosen = config["stages"] if stages is None else parse_stages(
        stages, possible_stages(config["input"]["kind"]))
    if config["input"]["kind"] == "simulate" and 1 in chosen:
        chosen = [0] + list(chosen)
    return list(chosen)


def plan(config: dict, stages=None, *, force: bool = False, mark_conflicts: bool = False) -> list[StagePlan]:
    """Decide, before any work, what each requested stage will do.

    The input files' headers are checked first (:func:`tsoreduce.input_checks.check_run_inputs`: MIRI
    LRS slitless, segments of one exposure, none twice, none missing).

    Parameters
    ----------
    config : dict
        The validated run config.
    stages : str, int or list, optional
        Override of ``config["stages"]`` ("1-4", [2, 3], ...).
    force : bool
        Recompute finished stages (action ``rerun (--force)``).
    mark_conflicts : bool
        ``--dry-run``: a stage whose directory holds products that would be overwritten gets the
        action ``"CONFLICT"`` (the reason in ``reason``) instead of raising.

    Returns
    -------
    list of StagePlan
        One per stage, in order.

    Raises
    ------
    ConfigError
        If a stage needs products of an earlier stage that are missing or were made with another
        configuration.
    OverwriteError
        If a stage directory holds products that would be overwritten without ``force`` (unless
        ``mark_conflicts``), or an input file lies in a stage's output directory.
    SegmentMismatchError, DuplicateSegmentError, WrongInstrumentError
        For inconsistent input files.
    """
    out_dir = Path(config["output_dir"])
    hashes = stage_hashes(config)
    chosen = _stage_list(config, stages)
    first = first_stage(config)
    _check_inputs_not_outputs(config, out_dir)
    _check_input_headers(config, chosen)
    plans: list[StagePlan] = []
    upstream_changes = False
    for n in chosen:
        d = out_dir / STAGE_DIRS[n]
        h = hashes[n]
        # the upstream products this stage reads must be finished (when not produced in this run)
        upstream = n - 1 if n > first or (n == 1 and config["input"]["kind"] == "simulate") else None
        up_marker = None
        if upstream is not None and upstream not in chosen:
            up_marker = is_done(out_dir / STAGE_DIRS[upstream], hashes[upstream])
            if up_marker is None:
                raise ConfigError(
                    f"stages: {STAGE_LABELS[n]} reads the products of {STAGE_LABELS[upstream]} in "
                    f"{out_dir / STAGE_DIRS[upstream]}, which are missing or were made with another "
                    f"configuration; run stage {upstream} first (e.g. --stages {max(upstream, first)}-{n})")
        done = is_done(d, h)
        if done is not None and up_marker is not None and done.get("upstream_run_id") != up_marker.get("run_id"):
            done = None  # products made from an older run of the upstream stage
        running = _read_marker(d / RUNNING)
        keep = False
        existing = [f for f in d.rglob("*") if f.is_file() and not f.name.startswith(".")] if d.is_dir() else []
        if force:
            action, reason = ("rerun (--force)" if existing else "run"), ""
        elif done is not None and not upstream_changes:
            action, reason = "skip", f"finished {done.get('finished', '')} with the same configuration"
        elif running is not None and running.get("config_hash") == h:
            action, reason = "resume", "interrupted earlier with the same configuration"
            keep = not upstream_changes
        elif existing:
            why = ("its upstream stage is re-run now" if upstream_changes else
                   "they were made with another configuration or from an older upstream product")
            msg = (f"{d} already holds products of {STAGE_LABELS[n]} and {why}; nothing is overwritten "
                   f"without --force (or choose another --output-dir)")
            if not mark_conflicts:
                raise OverwriteError(msg)
            action, reason = "CONFLICT", f"{len(existing)} product(s) would be overwritten: {why}"
        else:
            action, reason = "run", ""
        if action != "skip":
            upstream_changes = True
        label = ("MRS branch (s3d cubes -> light curves)" if n == 3 and config["input"]["kind"] == "mrs"
                 else STAGE_LABELS[n])
        plans.append(StagePlan(n, label, d, h, action, reason, keep_existing=keep))
    return plans


def _check_input_headers(config, chosen):
    """Header checks of the user's input files (see plan() and tsoreduce.input_checks)."""
    from .input_checks import check_run_inputs
    check_run_inputs(config, chosen)


def _check_inputs_not_outputs(config, out_dir: Path):
    inp = config["input"]
    files = [Path(p).resolve() for k in ("uncal", "rateints", "calints", "lightcurves")
             for p in inp.get(k, []) or []]
    for f in files:
        for n, sub in STAGE_DIRS.items():
            if f.parent == (out_dir / sub).resolve() and n >= first_stage(config):
                raise OverwriteError(f"input file {f} lies in the output directory of stage {n} "
                                     f"({out_dir / sub}); choose another output_dir so inputs are "
                                     f"never overwritten")


def format_plan(config: dict, plans: list[StagePlan]) -> str:
    """Human-readable plan (what ``--dry-run`` prints).

    Parameters
    ----------
    config : dict
        The validated run config.
    plans : list of StagePlan
        From :func:`plan`.

    Returns
    -------
    str
        One line per stage: action, label, directory, reason and hash.
    """
    inp = config["input"]
    kind = inp["kind"]
    src = (f"{len(inp[kind])} file(s), first {inp[kind][0]}" if kind in (
        "uncal", "rateints", "calints", "lightcurves") and inp[kind] else kind)
    lines = [f"run {config['name']!r}  (tsoreduce {__version__})",
             f"  config : {config.get('_source', '<dict>')}",
             f"  input  : {kind}: {src}",
             f"  output : {config['output_dir']}"]
    for p in plans:
        lines.append(f"  [{p.action:>15}] {p.label}  -> {p.directory}"
                     + (f"  ({p.reason})" if p.reason else "") + f"  hash {p.config_hash}")
    if any(p.action == "CONFLICT" for p in plans):
        lines.append("  CONFLICT: a real run stops before any work; add --force to recompute those stages "
                     "(their products are replaced) or choose another --output-dir")
    return "\n".join(lines)
