"""Run a whole reduction from a validated run config: plan, resume, products, provenance, summary.

Library use is first-class: each stage is one documented function working on files,

* :func:`run_simulation` -- ``input.simulate`` -> uncal segments + truth + reference files
* :func:`run_stage1_files` -- uncal segments -> one rateints file per segment (``tsoreduce.detector.run_stage1``)
* :func:`run_stage2_files` -- rateints -> one calints file (``tsoreduce.spectroscopic.run_stage2``)
* :func:`run_stage3_files` -- calints -> x1dints + light-curve table (``tsoreduce.extraction.run_stage3``)
* :func:`run_mrs_files` -- MRS cubes -> light-curve table (``tsoreduce.mrs.run_mrs``), instead of stage 3
* :func:`run_stage4_files` -- light-curve table -> fits + spectrum.ecsv (``tsoreduce.lightcurve.run_stage4``)

and :func:`run` chains them as the YAML says, e.g. ``run(load_run_config("runs/demo.yaml"))``.

Output layout (``output_dir``)::

    run.log  run_config.yaml  summary.json
    simulation/   uncal segments, truth, reference files          (input.simulate only)
    stage1/       <segment>_rateints.fits, figures/
    stage2/       <name>_calints.fits, figures/
    stage3/       <name>_x1dints.fits, <name>_lightcurves.h5, figures/
    stage4/       spectrum.ecsv, white_fit.ecsv, chains, figures/ (+ injected_spectrum.ecsv for a simulation)

Resume: a stage is finished when its ``.done.json`` marker holds the stage's config hash (a hash
chained over the input and every section up to that stage) and the id of the upstream stage's run,
and every product it lists exists.  A finished stage is skipped unless ``force``.  A stage that was
interrupted leaves a ``.running.json`` marker with its hash: a re-run with the same configuration
resumes it (Stage 1 keeps the segments already written).  Anything else already in a stage directory
(other configuration, stale upstream) is never overwritten without ``force``: the run stops before
any work with :class:`~tsoreduce.errors.OverwriteError` (``--dry-run`` marks such a stage CONFLICT).
Products are written atomically by the I/O writers (``tsoreduce._util.atomic_path``: temp file, fsync,
umask permissions, rename) with the package version and configuration in their headers.

Before any work the input headers are checked (:mod:`tsoreduce.input_checks`) and the run takes the
lock of ``output_dir`` (:mod:`tsoreduce._lock`): a second run on the same directory is refused with
:class:`~tsoreduce.errors.OutputLockedError`; the lock of a run that died is taken over with a WARNING.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import logging
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from . import __version__
from ._lock import OutputLock
from ._util import atomic_write_json, atomic_write_text, output_write_error
from .config import SECTION_MODULES, first_stage
from .errors import ConfigError, NotImplementedStepError, OverwriteError

__all__ = ["StagePlan", "plan", "run", "format_plan", "format_summary", "run_simulation",
           "run_stage1_files", "run_stage2_files", "run_stage3_files", "run_mrs_files",
           "run_stage4_files", "stage_hashes", "is_done"]

log = logging.getLogger(__name__)

STAGE_DIRS = {0: "simulation", 1: "stage1", 2: "stage2", 3: "stage3", 4: "stage4"}
STAGE_LABELS = {0: "simulate (input.simulate -> uncal)", 1: "Stage 1 detector (uncal -> rateints)",
                2: "Stage 2 spectroscopic (rateints -> calints)",
                3: "Stage 3 extraction (calints -> x1dints + light curves)",
                4: "Stage 4 light-curve fits (-> spectrum)"}
DONE, RUNNING = ".done.json", ".running.json"


# ---- lazy access to the stage modules and I/O (tests replace these) ------------------------------

def _stage_function(section: str, name: str):
    """The runner ``name`` of the stage module behind ``section``, imported only when used."""
    module = SECTION_MODULES[section][0]
    try:
        mod = importlib.import_module(module)
    except Exception as exc:
        raise ConfigError(f"{section}: the stage module {module} cannot be imported "
                          f"({type(exc).__name__}: {exc})") from exc
    fn = getattr(mod, name, None)
    if fn is None:
        raise NotImplementedStepError(f"{section}: {module} has no {name}()")
    return fn


def _io():
    return importlib.import_module("tsoreduce.io")


_OPTIONAL_KWARGS = ("progress", "name", "overwrite", "copy", "provenance", "diagnostics_file")


def _call(fn, *args, **kwargs):
    """Call a stage runner, dropping the optional keywords (progress, name, overwrite, copy) it does
    not accept, so stage modules can add them independently."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        params = None
    if params is not None and not any(p.kind == p.VAR_KEYWORD for p in params.values()):
        for k in _OPTIONAL_KWARGS:
            if k in kwargs and k not in params:
                kwargs.pop(k)
    return fn(*args, **kwargs)


# ---- hashing and markers -------------------------------------------------------------------------

def _hash(obj) -> str:
    text = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def stage_hashes(config: dict) -> dict[int, str]:
    """Config hash of every stage: chained over the input section and each stage section in turn.

    Stage *n*'s products depend on the input and on sections 1..n, so a change anywhere upstream
    changes the hash of every later stage.  Plot switches and the output directory are excluded.
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
    """The done marker of ``stage_dir`` if it matches ``config_hash`` and all its products exist."""
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
    """One step of a run: which stage, where, what it reads, and what will happen."""

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

    The input files' headers are checked first (:func:`tsoreduce.input_checks.check_segments`: MIRI
    LRS slitless, segments of one exposure, none twice, none missing).

    ``mark_conflicts`` (``--dry-run``): a stage whose directory holds products that would be
    overwritten gets the action ``"CONFLICT"`` (the reason in ``reason``) instead of raising.

    Raises
    ------
    ConfigError if a stage needs products of an earlier stage that are missing or were made with
    another configuration; OverwriteError if a stage directory holds products that would be
    overwritten without ``force`` (unless ``mark_conflicts``); SegmentMismatchError,
    DuplicateSegmentError, WrongInstrumentError for inconsistent input files.
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
    """Human-readable plan (what ``--dry-run`` prints)."""
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


# ---- file-level stage functions (the library API) ------------------------------------------------

def run_simulation(sim_config: dict, outdir, *, overwrite: bool = False) -> dict:
    """Simulate a LRS TSO with ``tsoreduce.simulate.write_lrs_simulation``.

    Parameters
    ----------
    sim_config : dict of LRSSimConfig fields (the validated ``input.simulate`` section).
    outdir : directory for the uncal segments, truth file and reference files.
    overwrite : replace files already there (a resumed or forced run; the simulation is seeded, so
        it writes the same files again).

    Returns
    -------
    dict(uncal=[paths], truth=path, spectrum=path (injected, per row) or None,
    references={reftype: path}) as written by the simulator.
    """
    from .config import lrs_sim_config
    lrs = importlib.import_module("tsoreduce.simulate.lrs")
    Path(outdir).mkdir(parents=True, exist_ok=True)
    out = _call(lrs.write_lrs_simulation, lrs_sim_config(sim_config), outdir, overwrite=overwrite)
    return {"uncal": [str(p) for p in out["uncal"]], "truth": str(out.get("truth")),
            "spectrum": str(out["spectrum"]) if out.get("spectrum") else None,
            "references": {k: str(v) for k, v in (out.get("references") or {}).items()}}


def _product_name(src: str, new_suffix: str) -> str:
    stem = Path(src).name
    for suf in (".fits.gz", ".fits", ".h5", ".ecsv"):
        if stem.endswith(suf):
            stem = stem[: -len(suf)]
    for old in ("_uncal", "_rateints", "_rate", "_calints", "_x1dints"):
        if stem.endswith(old):
            stem = stem[: -len(old)]
    return f"{stem}_{new_suffix}.fits"


def run_stage1_files(uncal_paths, config: dict | None, outdir, *, references=None, plot_dir=None,
                     overwrite=False, provenance=None, progress=True, skip_existing=False) -> list[str]:
    """Stage 1 on uncal segment files, one segment at a time, each in chunks of integrations.

    Each segment is run through ``tsoreduce.detector.run_stage1_segment(path, config, plot_dir=,
    references=)`` (chunks sized by ``stage1.memory``, so memory is bounded by one chunk) and written as
    ``<segment>_rateints.fits`` in ``outdir`` (DN/s, ``provenance`` in the header).  Figures are made
    for the first segment only.  ``skip_existing`` keeps segments already written (resume).  Each
    segment is a work unit of the current execution backend (:func:`tsoreduce.execution.current`:
    serial in this process unless a run's ``execution`` section or a ``session`` says otherwise).

    Returns the rateints paths in segment order.  Raises OverwriteError for an existing product
    unless ``overwrite``; never writes over an input file.
    """
    _stage_function("stage1", "run_stage1")  # the stage module imports (else ConfigError), here
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    paths = [str(p) for p in uncal_paths]
    from . import execution
    ex = execution.current()
    chunk_bars = progress and not ex.distributes  # per-chunk bars only in this process
    out, units = [], []
    for i, src in enumerate(paths):
        dst = outdir / _product_name(src, "rateints")
        if Path(src).resolve() == dst.resolve():
            raise OverwriteError(f"{dst}: the product would overwrite its input")
        out.append(str(dst))
        if skip_existing and dst.exists():
            log.info("Stage 1: %s already written, kept (resume)", dst.name)
            continue
        units.append((src, str(dst), config, references, str(plot_dir) if plot_dir is not None and i == 0
                      else None, overwrite, provenance, chunk_bars))
    ex.map(_stage1_segment_unit, units, labels=[Path(u[0]).name for u in units],
           desc="Stage 1 segments", progress=progress)
    return out


def _stage1_segment_unit(unit) -> str:
    """One Stage 1 work unit: uncal segment ``src`` -> rateints ``dst`` (read and written by path, so it
    runs in any worker process).  Returns ``dst``."""
    src, dst, config, references, plot_dir, overwrite, provenance, progress = unit
    run_stage1 = _stage_function("stage1", "run_stage1")
    run_segment = getattr(importlib.import_module(SECTION_MODULES["stage1"][0]), "run_stage1_segment", None)
    io = _io()
    with _stage1_caption(src, config, plot_dir is not None):
        if run_segment is not None:
            # chunks of integrations with bounded memory (stage1.memory)
            rate = _call(run_segment, src, config, plot_dir=plot_dir, references=references,
                         progress=progress)
        else:
            ramp = io.read_uncal(src)
            rate = _call(run_stage1, ramp, config, plot_dir=plot_dir, copy=False, references=references,
                         progress=progress)
            del ramp
    io.write_rateints(dst, rate, overwrite=overwrite, provenance=provenance)
    log.info("Stage 1: wrote %s (%d integrations)", Path(dst).name, rate.nints)
    return dst


def _stage1_caption(src, config, active: bool):
    import contextlib
    if not active:
        return contextlib.nullcontext()
    from .plotting.detector import figure_caption, segment_caption
    try:
        text = segment_caption(src, config)
    except (OSError, KeyError, ValueError) as exc:  # read_uncal raises the named error next
        log.debug("Stage 1 figure caption of %s: %s", src, exc)
        text = Path(src).name
    return figure_caption(text)


def run_stage2_files(rateints_paths, config: dict | None, outdir, *, name="tso", plot_dir=None,
                     references=None, overwrite=False, provenance=None, progress=True) -> str:
    """Stage 2 on rateints segments: read and join them in time order (``read_segments``), run
    ``tsoreduce.spectroscopic.run_stage2(rates, config, plot_dir=, references=)`` and write
    ``<name>_calints.fits`` in ``outdir``.  ``references``: optional {"flat": path, "specwcs": path}.

    Returns the calints path.  Raises OverwriteError for an existing product unless ``overwrite``.
    """
    stage2 = importlib.import_module(SECTION_MODULES["stage2"][0])
    io = _io()
    Path(outdir).mkdir(parents=True, exist_ok=True)
    rates = io.read_segments([str(p) for p in rateints_paths])
    from .contract import show_progress
    with show_progress(progress):
        result = stage2.run(rates, config, plot_dir=plot_dir, references=references)
    del rates  # the product shares ERR and the variances; the input SCI/DQ are no longer needed
    calints = result.product
    # the hot-pixel map and deep frame are products, with or without figures
    stage2.write_stage2_diagnostics(Path(outdir) / f"{name}_stage2_diagnostics.fits", result.diagnostics,
                                    overwrite=True)
    dst = Path(outdir) / f"{name}_calints.fits"
    io.write_calints(dst, calints, overwrite=overwrite, provenance=provenance)
    log.info("Stage 2: wrote %s (%d integrations)", dst.name, calints.nints)
    return str(dst)


def run_stage3_files(calints_paths, config: dict | None, outdir, *, name="tso", plot_dir=None,
                     overwrite=False, provenance=None, progress=True) -> tuple[str, str]:
    """Stage 3 on calints: ``tsoreduce.extraction.run_stage3`` -> ``<name>_x1dints.fits`` and the
    spectroscopic + white light curves ``<name>_lightcurves.h5`` (``tsoreduce.io.write_lightcurves``).

    Returns (x1dints path, light-curve path), or (x1dints path,) when light curves are skipped.
    """
    run_stage3 = _stage_function("stage3", "run_stage3")
    io = _io()
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    # Stage 3 uses ERR, not the variance cubes: two cubes less in memory
    cal = io.read_segments([str(p) for p in calints_paths], variances=False)
    from .contract import show_progress
    with show_progress(progress):
        result = run_stage3(cal, config, plot_dir=plot_dir)
    x1d, lc = result.product.x1dints, result.product.lightcurves
    x1d_path = outdir / f"{name}_x1dints.fits"
    lc_path = outdir / f"{name}_lightcurves.h5"
    io.write_x1dints(x1d_path, x1d, overwrite=overwrite, provenance=provenance)
    if lc is None:  # stage3.lightcurves.skip
        log.info("Stage 3: wrote %s (light curves skipped by configuration)", x1d_path.name)
        return (str(x1d_path),)
    _write_lightcurves(lc_path, lc, overwrite=overwrite, provenance=provenance)
    log.info("Stage 3: wrote %s and %s (%d channels x %d integrations)", x1d_path.name,
             lc_path.name, lc.nchan, lc.nints)
    return str(x1d_path), str(lc_path)


def run_mrs_files(mrs_input: dict, config: dict | None, outdir, *, name="tso", plot_dir=None,
                  overwrite=False, provenance=None, progress=True) -> list[str]:
    """MRS branch from files (replaces Stage 3 for MRS cubes): read or simulate the cubes, run the
    branch, write its products.

    Parameters
    ----------
    mrs_input : dict
        The ``input.mrs`` section (``tsoreduce.mrs.INPUT_SCHEMA``): ``cubes`` (path, glob or list of
        s3d files) or ``simulate`` settings (``tsoreduce.simulate.mrs``); simulated cubes are written
        under ``outdir/cubes`` and read back when ``write_cubes``.
    config : dict or None
        The ``mrs`` section.
    outdir : str or os.PathLike
        Output directory: ``<name>_mrs_x1dints.fits``, ``<name>_mrs_photometry.ecsv``,
        ``<name>_mrs_stitched_spectrum.ecsv`` and ``<name>_lightcurves.h5`` (the input of Stage 4).
    name : str
        File name prefix.
    plot_dir : str or os.PathLike, optional
        Figures directory (None: no figures).
    overwrite : bool
        Replace existing products.
    provenance : dict, optional
        The run's provenance (config hash in the light-curve file).
    progress : bool or None
        Progress bars (``tsoreduce.contract.show_progress``); None keeps the caller's setting.

    Returns
    -------
    list of str
        The files written, the light curves last.

    Raises
    ------
    ConfigError
        For an invalid ``input.mrs`` (cubes and simulate both or neither, a malformed crop).
    OverwriteError
        If a product exists and ``overwrite`` is false.
    """
    import contextlib

    from .config import validate
    from .contract import show_progress

    inp = validate(mrs_input, _stage_function("mrs", "INPUT_SCHEMA"), "input.mrs")
    read_cube_bands = _stage_function("mrs", "read_cube_bands")
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    before = {f for f in outdir.rglob("*") if f.is_file()}
    sim, wr, box = inp.get("simulate") or {}, inp.get("wavelength_range"), inp.get("box")
    if wr is not None and len(wr) != 2:
        raise ConfigError(f"input.mrs.wavelength_range: expected [min, max] um, got {wr!r}")
    if box is not None and len(box) != 4:
        raise ConfigError(f"input.mrs.box: expected [x0, x1, y0, y1], got {box!r}")
    crop = {"wavelength_range": tuple(wr) if wr else None, "box": tuple(box) if box else None}
    if sim.get("enabled") and inp.get("cubes"):
        raise ConfigError("input.mrs: give either cubes or simulate.enabled, not both")
    if sim.get("enabled"):
        from .simulate.mrs import MRSSimConfig, simulate_mrs_cubes, write_mrs_cubes
        kw = {k: v for k, v in sim.items() if k != "enabled"}
        kw["bands"] = tuple(kw.get("bands", ("1A",)))
        cubes, _truth = simulate_mrs_cubes(MRSSimConfig(**kw))
        log.info("MRS: simulated %s (%d integrations)", ", ".join(cubes), kw.get("nints", 40))
        if inp.get("write_cubes", True):
            paths = write_mrs_cubes(cubes, outdir / "cubes", layout=inp.get("layout", "per_integration"),
                                    overwrite=True)
            log.info("MRS: wrote %d simulated s3d files to %s; reading them back", len(paths), outdir / "cubes")
            cubes = read_cube_bands(paths, **crop)
    elif inp.get("cubes"):
        cubes = read_cube_bands(inp["cubes"], **crop)
    else:
        raise ConfigError("input.mrs: needs cubes (path, glob or list) or simulate.enabled: true")
    with contextlib.nullcontext() if progress is None else show_progress(progress):
        result = _stage_function("mrs", "run")(cubes, config, plot_dir=plot_dir)
    _stage_function("mrs", "write_products")(result.product, outdir, name=name, overwrite=overwrite)
    lc = result.product.lightcurves
    lc_path = outdir / f"{name}_lightcurves.h5"
    _write_lightcurves(lc_path, lc, overwrite=overwrite, provenance=provenance)
    log.info("MRS: wrote %s (%d channels x %d integrations)", lc_path.name, lc.nchan, lc.nints)
    written = sorted(str(f) for f in outdir.rglob("*") if f.is_file() and f not in before
                     and "figures" not in f.relative_to(outdir).parts and not f.name.startswith(".")
                     and f != lc_path)
    return written + [str(lc_path)]


def _write_lightcurves(path, lc, *, overwrite, provenance):
    io = _io()
    path = Path(path)
    if path.exists() and not overwrite:
        raise OverwriteError(f"{path} exists; pass overwrite=True (--force) to replace it")
    lc = lc.replace(meta={**lc.meta, "TSOVER": __version__,
                          "CFGHASH": (provenance or {}).get("config_hash", "")})
    io.write_lightcurves(path, lc, overwrite=True)


def run_stage4_files(lightcurves, config: dict | None, outdir, *, plot=True, provenance=None,
                     progress=True):
    """Stage 4 from files: read the light curves, run the stage, write its products into ``outdir``.

    Parameters
    ----------
    lightcurves : str, os.PathLike, LightCurves or list
        One visit: a path read with ``tsoreduce.io.read_lightcurves`` (ours, SPARTA-style HDF5 or
        Eureka!-style ECSV) or a LightCurves, fitted by ``tsoreduce.lightcurve.run``.  A list: the
        visits of one joint fit (``input.lightcurves`` entries: paths, ``{path, visit, band}`` or
        ``{lc, visit, band}`` dicts), fitted by ``tsoreduce.lightcurve.run_joint``.
    config : dict or None
        The ``stage4`` section.
    outdir : str or os.PathLike
        Output directory: the product tables (``spectrum.ecsv``, ``white_fit.ecsv``, ... one per
        table), the chains (HDF5) and, with ``plot``, ``figures/``.
    plot : bool
        Write the figures.
    provenance : dict, optional
        The run's provenance; ``config_hash`` and ``config`` go into every table's metadata.
    progress : bool or None
        Progress bars (``tsoreduce.contract.show_progress``); None keeps the caller's setting.

    Returns
    -------
    tsoreduce.lightcurve.products.FitProducts
        The stage's product with ``files`` (key -> path written, figures as ``fig_<name>``).

    Raises
    ------
    OverwriteError
        If an output would replace an input light-curve file (checked before any fitting).
    """
    import contextlib

    from .contract import show_progress

    outdir = Path(outdir)
    joint = isinstance(lightcurves, (list, tuple))
    if joint:
        entries = [{"path": e} if isinstance(e, (str, os.PathLike)) else e for e in lightcurves]
        sources = [e["path"] for e in entries if isinstance(e, dict) and "path" in e]
    else:
        sources = [lightcurves if isinstance(lightcurves, (str, os.PathLike))
                   else lightcurves.meta.get("_source_path")]
    names = _stage_function("stage4", "output_names")(joint)
    for src in filter(None, sources):
        if any(Path(src).resolve() == (outdir / n).resolve() for n in names):
            raise OverwriteError(f"stage4 output in {outdir} would overwrite its input {src}")
    if joint:
        if any("path" in e for e in entries):
            entries = [{"lc": _io().read_lightcurves(e["path"]), "visit": e.get("visit"), "band": e.get("band")}
                       if "path" in e else e for e in entries]
        stage_run, product = _stage_function("stage4", "run_joint"), entries
    else:
        stage_run = _stage_function("stage4", "run")
        product = lightcurves if not isinstance(lightcurves, (str, os.PathLike)) else \
            _io().read_lightcurves(lightcurves)
    outdir.mkdir(parents=True, exist_ok=True)
    with contextlib.nullcontext() if progress is None else show_progress(progress):
        result = stage_run(product, config, plot_dir=outdir / "figures" if plot else None)
    products = result.product
    products.files = _stage_function("stage4", "write_products")(products, outdir, provenance=provenance)
    products.files.update({f"fig_{Path(f).stem}": Path(f) for f in result.figures})
    return products


# ---- running the plan ----------------------------------------------------------------------------

class _RunLogHandler(logging.FileHandler):
    """run.log: a write that fails (disk full) must not print logging's traceback per record; the run
    itself fails on its next product write with a one-line OutputWriteError."""

    def handleError(self, record):  # noqa: N802 (logging API)
        self.setLevel(logging.CRITICAL + 1)  # stop writing to the broken log


def _attach_log(out_dir: Path):
    handler = _RunLogHandler(out_dir / "run.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    root = logging.getLogger("tsoreduce")
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > logging.INFO:
        root.setLevel(logging.INFO)
    return handler


def _figures(d: Path) -> list[str]:
    return sorted(str(p) for p in d.rglob("*") if p.suffix in (".png", ".pdf", ".svg")) if d.is_dir() else []


def run(config: dict, stages=None, *, force: bool = False, dry_run: bool = False,
        progress: bool = True) -> dict:
    """Run the stages of a validated run config (from :func:`tsoreduce.config.load_run_config`).

    Parameters
    ----------
    config : validated run config.
    stages : override of ``config["stages"]`` ("1-4", [2, 3], ...); None keeps the config's.
    force : recompute finished stages and overwrite their products.
    dry_run : only plan; returns {"plan": [...]} and writes nothing.
    progress : show tqdm progress bars.

    Returns
    -------
    summary dict: output_dir, stages (per stage: action, seconds, products, figures), numbers
    (key results), also written to ``output_dir/summary.json``.
    """
    if dry_run:
        plans = plan(config, stages, force=force, mark_conflicts=True)
        return {"plan": plans, "text": format_plan(config, plans),
                "conflicts": [p for p in plans if p.action == "CONFLICT"]}
    plan(config, stages, force=force)  # input and overwrite checks before anything is created
    out_dir = Path(config["output_dir"])
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise output_write_error(exc.filename or out_dir, exc) from exc
    with OutputLock(out_dir, config.get("_source", "")):
        # planned again under the lock: another run may have finished a stage in between
        return _run_locked(config, plan(config, stages, force=force), out_dir, force=force,
                           progress=progress)


def _run_locked(config: dict, plans: list[StagePlan], out_dir: Path, *, force: bool,
                progress: bool) -> dict:
    try:
        handler = _attach_log(out_dir)
    except OSError as exc:
        raise output_write_error(out_dir / "run.log", exc) from exc
    t_start = time.perf_counter()
    summary = {"name": config["name"], "output_dir": str(out_dir), "version": __version__,
               "stages": {}, "numbers": {}}
    from . import execution  # the backend of the work units, for the whole run
    backend = execution.open_session(config.get("execution"))
    try:
        log.info("tsoreduce %s: run %r, config %s", __version__, config["name"], config.get("_source"))
        log.info("plan:\n%s", format_plan(config, plans))
        _write_run_config(config, out_dir)
        state: dict = {}
        for p in plans:
            t0 = time.perf_counter()
            if p.action == "skip":
                marker = is_done(p.directory, p.config_hash)
                log.info("%s: skipped, %s", p.label, p.reason)
            else:
                marker = _run_one(config, p, force=force, progress=progress, state=state)
            state[p.stage] = marker
            summary["stages"][p.stage] = {
                "label": p.label, "action": p.action, "seconds": round(time.perf_counter() - t0, 2),
                "products": [str(p.directory / x) for x in marker.get("products", [])],
                "figures": _figures(p.directory)}
        summary["numbers"] = _key_numbers(config, out_dir)
        summary["seconds"] = round(time.perf_counter() - t_start, 2)
        _write_json_atomic(out_dir / "summary.json", summary)
        # run.log only: the command line prints the summary itself (once, on stdout)
        log.info("summary:\n%s", format_summary(summary), extra={"file_only": True})
    finally:
        backend.close()
        logging.getLogger("tsoreduce").removeHandler(handler)
        handler.close()
    return summary


def _write_run_config(config: dict, out_dir: Path):
    import yaml
    clean = {k: v for k, v in config.items() if not k.startswith("_")}
    atomic_write_text(out_dir / "run_config.yaml",
                      f"# validated configuration of the last run (tsoreduce {__version__})\n"
                      + yaml.safe_dump(clean, sort_keys=False, width=100))


def _upstream_products(config, out_dir: Path, n: int, state: dict) -> tuple[list[str], str | None]:
    """Input files of stage n and the run id of the stage that made them (None for user input)."""
    inp = config["input"]
    key = {1: "uncal", 2: "rateints", 3: "calints", 4: "lightcurves"}[n]
    if n == first_stage(config) and inp["kind"] != "simulate":
        return list(inp.get(key, [])), None
    m = state.get(n - 1) or _read_marker(out_dir / STAGE_DIRS[n - 1] / DONE)
    d = out_dir / STAGE_DIRS[n - 1]
    files = [str(d / p) for p in m.get("products", [])]
    wanted = {1: "_uncal.fits", 2: "_rateints.fits", 3: "_calints.fits", 4: "_lightcurves.h5"}[n]
    return [f for f in files if f.endswith(wanted)], m.get("run_id")


def _remove_old_products(d: Path):
    """--force: delete the products listed in the stage's previous done marker (inside ``d`` only),
    so writers that refuse to overwrite (e.g. the simulator) can write them again."""
    old = _read_marker(d / DONE) or {}
    for rel in old.get("products", []):
        f = (d / rel).resolve()
        if d.resolve() in f.parents and f.is_file():
            f.unlink()
            log.info("--force: removed the previous product %s", f)


def _remove_stale_temp_files(d: Path):
    """Temporary files of writes a killed run left (``tsoreduce._util.atomic_path`` names them
    ``.<product>.<random>.tmp<suffix>``); safe to remove: this run holds the output_dir lock."""
    stale = [f for f in d.rglob(".*.tmp*") if f.is_file()]
    for f in stale:
        f.unlink()
    if stale:
        log.warning("%s: removed %d temporary file(s) of an interrupted write: %s", d, len(stale),
                    ", ".join(f.name for f in stale[:5]))


def _run_one(config: dict, p: StagePlan, *, force: bool, progress: bool, state: dict) -> dict:
    out_dir = Path(config["output_dir"])
    d = p.directory
    d.mkdir(parents=True, exist_ok=True)
    if p.action.startswith("rerun"):
        _remove_old_products(d)
    _remove_stale_temp_files(d)
    (d / DONE).unlink(missing_ok=True)
    _write_json_atomic(d / RUNNING, {"config_hash": p.config_hash, "started": time.strftime("%FT%T")})
    plot_dir = (d / "figures") if config["plots"] else None
    if plot_dir is not None:
        plot_dir.mkdir(exist_ok=True)
    prov = _provenance(config, max(p.stage, 1), p.config_hash)
    overwrite = force or p.action == "resume"
    name = config["name"]
    upstream_id = None
    log.info("%s: %s", p.label, p.action)
    extra: dict = {}
    if p.stage == 0:
        sim = run_simulation(config["input"]["simulate"], d, overwrite=overwrite)
        products = sim["uncal"] + [sim["truth"]] + list(sim["references"].values()) + (
            [sim["spectrum"]] if sim.get("spectrum") else [])
        rel = lambda x: os.path.relpath(x, d)  # noqa: E731
        extra = {"simulation": {"uncal": [rel(x) for x in sim["uncal"]], "truth": rel(sim["truth"]),
                                "references": {k: rel(v) for k, v in sim["references"].items()}}}
    elif p.stage == 1:
        files, upstream_id = _upstream_products(config, out_dir, 1, state)
        refs = dict(config["input"].get("references") or {})
        if config["input"]["kind"] == "simulate":
            sim = (state.get(0) or _read_marker(out_dir / STAGE_DIRS[0] / DONE))["simulation"]
            refs = {**{k: str(out_dir / STAGE_DIRS[0] / v) for k, v in sim["references"].items()},
                    **refs}
        products = run_stage1_files(files, config["stage1"], d, references=refs or None,
                                    plot_dir=plot_dir, overwrite=overwrite, provenance=prov,
                                    progress=progress, skip_existing=p.keep_existing)
    elif p.stage == 2:
        files, upstream_id = _upstream_products(config, out_dir, 2, state)
        products = [run_stage2_files(files, config["stage2"], d, name=name, plot_dir=plot_dir,
                                     references=config["input"].get("references") or None,
                                     overwrite=overwrite, provenance=prov, progress=progress)]
    elif p.stage == 3 and config["input"]["kind"] == "mrs":
        products = run_mrs_files(config["input"]["mrs"], config["mrs"], d, name=name,
                                 plot_dir=plot_dir, overwrite=overwrite, provenance=prov,
                                 progress=progress)
    elif p.stage == 3:
        files, upstream_id = _upstream_products(config, out_dir, 3, state)
        products = list(run_stage3_files(files, config["stage3"], d, name=name, plot_dir=plot_dir,
                                         overwrite=overwrite, provenance=prov, progress=progress))
    else:
        files, upstream_id = _upstream_products(config, out_dir, 4, state)
        visits = config["input"].get("lightcurve_visits") if p.stage == first_stage(config) else None
        # input.lightcurves a list: one joint fit over the visits
        result = run_stage4_files(visits or files[0], config["stage4"], d, plot=config["plots"],
                                  provenance=prov, progress=progress)
        products = sorted(str(x) for x in d.iterdir() if x.is_file() and not x.name.startswith("."))
        extra = {"result": _result_numbers(result)}
        if config["input"]["kind"] == "simulate":
            written, nums = _compare_with_truth(config, out_dir, d, plot=config["plots"])
            products += [w for w in written if w.endswith(".ecsv")]
            extra["result"].update(nums)
    marker = {"stage": p.stage, "config_hash": p.config_hash, "run_id": uuid.uuid4().hex,
              "upstream_run_id": upstream_id, "version": __version__,
              "finished": time.strftime("%FT%T"),
              "products": sorted({os.path.relpath(x, d) for x in products}), **extra}
    _write_json_atomic(d / DONE, marker)
    (d / RUNNING).unlink(missing_ok=True)
    return marker


# ---- demo truth comparison, key numbers, summary -------------------------------------------------

def _compare_with_truth(config: dict, out_dir: Path, d: Path, *, plot: bool):
    """Write injected_spectrum.ecsv beside spectrum.ecsv (same wavelength columns, transit_depth in
    ppm, binned with the simulator's own ``LRSTruth.injected_spectrum``) and the recovered-vs-injected
    figure.  Returns (paths written, comparison numbers)."""
    from .simulate import truth as pipeline_truth
    sim = _read_marker(out_dir / STAGE_DIRS[0] / DONE)["simulation"]
    return pipeline_truth.compare_with_truth(out_dir / STAGE_DIRS[0] / sim["truth"], d, plot=plot)


def _result_numbers(result) -> dict:
    """Key numbers of a Stage4Result for the summary: the white-light fit's free parameters
    (median +- mean error) and reduced chi2."""
    out = {}
    white = getattr(result, "white", None)
    if white is None:  # a joint fit: its global free parameters
        white = getattr(result, "joint", None)
    if white is None:
        return out
    med = getattr(white, "median", None) or getattr(white, "params", None) or {}
    free = getattr(white, "free", None) or list(med)
    for k in free:
        try:
            out[f"white.{k}"] = float(med[k])
            el, eu = getattr(white, "err_lower", {}), getattr(white, "err_upper", {})
            if k in el and k in eu:
                out[f"white.{k}_err"] = float(0.5 * (el[k] + eu[k]))
        except (TypeError, ValueError, KeyError):
            pass
    chi2 = getattr(white, "chi2_red", None)
    if isinstance(chi2, (int, float)):
        out["white.chi2_red"] = float(chi2)
    out.update(_noise_numbers(white, getattr(result, "channels", None) or []))
    return out


def _noise_numbers(white, channels) -> dict:
    """Stage 4 noise figures for the summary (definitions: tsoreduce.noise): the white fit's expected
    (ERR) and residual rms in ppm, their ratio and beta; over the channels the median and maximum
    ratio and beta; and how many fitted parameters are flagged at a prior bound."""
    out = {}
    n = getattr(white, "noise", None) or {}
    for k, name in (("expected_ppm", "expected_ppm"), ("achieved_resid_ppm", "residual_ppm"),
                    ("ratio_resid", "noise_ratio"), ("beta", "beta")):
        if k in n:
            out[f"white.{name}"] = float(n[k])
    ratios = [c.noise.get("ratio_resid") for c in channels if getattr(c, "noise", None)]
    betas = [c.noise.get("beta") for c in channels if getattr(c, "noise", None)]
    import numpy as np
    if ratios:
        out["channels.noise_ratio_median"] = float(np.nanmedian(ratios))
        out["channels.noise_ratio_max"] = float(np.nanmax(ratios))
        out["channels.beta_median"] = float(np.nanmedian(betas))
        out["channels.beta_max"] = float(np.nanmax(betas))
    flagged = [f"{r.label}.{p}" for r in [white] + list(channels) for p, f in (getattr(r, "flags", None) or {}).items()
               if f]
    out["stage4.n_flagged_parameters"] = len(flagged)
    if flagged:
        log.warning("summary: %d fitted parameter(s) at a prior bound or with errors beyond the prior: %s",
                    len(flagged), ", ".join(flagged[:12]) + (" ..." if len(flagged) > 12 else ""))
    return out


def _key_numbers(config: dict, out_dir: Path) -> dict:
    nums: dict = {}
    m3 = _read_marker(out_dir / STAGE_DIRS[3] / DONE)
    lcs = [p for p in (m3 or {}).get("products", []) if p.endswith("_lightcurves.h5")]
    if lcs:
        import numpy as np
        try:
            lc = _io().read_lightcurves(out_dir / STAGE_DIRS[3] / lcs[0])
            nums["lightcurves.nints"] = int(lc.nints)
            nums["lightcurves.nchannels"] = int(lc.nchan)
            nums["lightcurves.n_masked_integrations"] = int(np.count_nonzero(lc.mask))
            if lc.white_flux is not None and lc.nints > 2:
                from .noise import p2p_scatter
                w = lc.white_flux[~lc.mask]
                # point-to-point scatter: robust to the transit and slow trends
                nums["lightcurves.white_p2p_ppm"] = float(p2p_scatter(w) / np.nanmedian(w) * 1e6)
            noise = lc.meta.get("noise") or {}
            if noise.get("white"):
                nums["lightcurves.white_noise_ratio"] = float(noise["white"]["ratio"])
                nums["lightcurves.white_beta"] = float(noise["white"]["beta"])
            if noise.get("ratio"):
                nums["lightcurves.channel_noise_ratio_median"] = float(np.nanmedian(noise["ratio"]))
                nums["lightcurves.channel_noise_ratio_max"] = float(np.nanmax(noise["ratio"]))
        except Exception as exc:  # the summary must never fail a finished run
            log.warning("summary: could not read %s (%s)", lcs[0], exc)
    m4 = _read_marker(out_dir / STAGE_DIRS[4] / DONE)
    if m4:
        nums.update(m4.get("result", {}))
    spec = out_dir / STAGE_DIRS[4] / "spectrum.ecsv"
    if spec.exists():
        from .simulate import truth as pipeline_truth
        nums.update(pipeline_truth.spectrum_numbers(spec))
    return nums


def format_summary(summary: dict) -> str:
    """The end-of-run summary: per stage what was done, products and figures, and key numbers."""
    lines = [f"tsoreduce {summary.get('version')} run {summary.get('name')!r} -> {summary['output_dir']}"
             f"  ({summary.get('seconds', 0):.1f} s)"]
    for n, s in summary["stages"].items():
        lines.append(f"  {s['label']}: {s['action']} ({s['seconds']:.1f} s), "
                     f"{len(s['products'])} product(s), {len(s['figures'])} figure(s)")
        for prod in s["products"][:6]:
            lines.append(f"      {prod}")
        if len(s["products"]) > 6:
            lines.append(f"      ... and {len(s['products']) - 6} more")
    if summary.get("numbers"):
        lines.append("  key numbers:")
        for k, v in summary["numbers"].items():
            # repr: the shortest text that reads back as the same float (t0 60000.00232, not 60000)
            lines.append(f"      {k} = {v!r}" if isinstance(v, float) else f"      {k} = {v}")
    return "\n".join(lines)
