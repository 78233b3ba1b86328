"""Run a whole reduction from a validated run config: plan, resume, products, provenance, summary.

Library use is first-class: each stage is one documented function working on files,

* :func:`run_simulation` -- ``input.simulate`` -> uncal segments + truth + reference files
* :func:`run_stage1_files` -- uncal segments -> one rateints file per segment (``tsoreduce.detector.run``,
  each segment read in chunks of integrations by :func:`run_stage1_segment`)
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

import contextlib
import importlib
import logging
import os
import time
import uuid
from pathlib import Path

from . import __version__, _stage1_chunks
from ._lock import OutputLock
from ._util import atomic_write_text, output_write_error
from .config import SECTION_MODULES, _import_stage_module, first_stage, validate
from .contract import show_progress
from .errors import ConfigError, NotImplementedStepError, OverwriteError
from .run_summary import format_summary, key_numbers, result_numbers
from .run_plan import (DONE, RUNNING, STAGE_DIRS, STAGE_LABELS, StagePlan, _provenance, _read_marker,
                       _write_json_atomic, format_plan, is_done, plan, stage_hashes)

__all__ = ["StagePlan", "plan", "run", "format_plan", "format_summary", "run_simulation",
           "run_stage1_files", "run_stage1_segment", "chunk_plan", "run_stage2_files",
           "run_stage3_files", "run_mrs_files", "run_stage4_files", "stage_hashes", "is_done"]

log = logging.getLogger(__name__)


# ---- lazy access to the stage modules and I/O (tests replace these) ------------------------------

def _stage_module(section: str):
    """The stage module behind YAML ``section``, imported when first used (tests put fakes in its
    place): :func:`tsoreduce.config._import_stage_module`, the one place stage modules are imported."""
    return _import_stage_module(SECTION_MODULES[section][0], section)


def _stage_function(section: str, name: str):
    """The function ``name`` of the stage module behind ``section``."""
    fn = getattr(_stage_module(section), name, None)
    if fn is None:
        raise NotImplementedStepError(f"{section}: {SECTION_MODULES[section][0]} has no {name}()")
    return fn


def _io():
    return importlib.import_module("tsoreduce.io")


# ---- file-level stage functions (the library API) ------------------------------------------------

def run_simulation(sim_config: dict, outdir, *, overwrite: bool = False) -> dict:
    """Simulate a LRS TSO with ``tsoreduce.simulate.write_lrs_simulation``.

    Parameters
    ----------
    sim_config : dict
        LRSSimConfig fields (the validated ``input.simulate`` section).
    outdir : str or pathlib.Path
        Directory for the uncal segments, truth file and reference files.
    overwrite : bool
        Replace files already there (a resumed or forced run; the simulation is seeded, so it writes
        the same files again).

    Returns
    -------
    dict
        ``uncal`` (list of paths), ``truth`` (path), ``spectrum`` (the injected spectrum per row, or
        None) and ``references`` ({reftype: path}) as written by the simulator.
    """
    from .config import lrs_sim_config
    lrs = importlib.import_module("tsoreduce.simulate.lrs")
    Path(outdir).mkdir(parents=True, exist_ok=True)
    out = lrs.write_lrs_simulation(lrs_sim_config(sim_config), outdir, overwrite=overwrite)
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

    Each segment is run through :func:`run_stage1_segment` (chunks sized by ``stage1.memory``, so
    memory is bounded by one chunk) and written as ``<segment>_rateints.fits`` in ``outdir`` (DN/s,
    ``provenance`` in the header); nothing is kept in memory.  Each segment is a work unit of the
    current execution backend (:func:`tsoreduce.execution.current`: serial in this process unless a
    run's ``execution`` section or a ``session`` says otherwise); the units read and write by path.

    Parameters
    ----------
    uncal_paths : iterable of str or pathlib.Path
        The uncal segment files, in time order.
    config : dict or None
        The ``stage1`` section (None: the defaults of ``tsoreduce.detector.CONFIG_SCHEMA``).
    outdir : str or pathlib.Path
        Directory of the rateints products (created if needed).
    references : dict, optional
        Reference arrays or paths for :func:`tsoreduce.detector.run` (paths travel best to workers).
    plot_dir : str or pathlib.Path, optional
        Directory for the figures, made from the first segment only; None: no figures.
    overwrite : bool
        Replace existing products.
    provenance : dict, optional
        Software version and configuration written into each product's header.
    progress : bool
        Show progress bars (segments; chunks when the units run in this process).
    skip_existing : bool
        Keep segments already written (resume of an interrupted run).

    Returns
    -------
    list of str
        The rateints paths, in segment order.

    Raises
    ------
    OverwriteError
        If a product would overwrite its input, or exists and ``overwrite`` is False.
    """
    _stage_module("stage1")  # a stage that cannot be imported fails here, before any work
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
    with show_progress(progress), _stage1_caption(src, config, plot_dir is not None):
        rate = run_stage1_segment(src, config, plot_dir=plot_dir, references=references)
    _io().write_rateints(dst, rate, overwrite=overwrite, provenance=provenance)
    log.info("Stage 1: wrote %s (%d integrations)", Path(dst).name, rate.nints)
    return dst


def chunk_plan(nints: int, ngroups: int, config: dict | None = None,
               frame_shape=None) -> list[tuple[int, int, int, int]]:
    """How :func:`run_stage1_segment` splits a file of ``nints`` integrations into chunks.

    With the time-domain jump method every chunk reads ``window // 2`` extra integrations on each
    side (halos), so the running median around a kept integration is the one the whole segment would
    give; the per-pixel noise (MAD) and the reference signal per group are then estimated per chunk.
    The chunk size follows ``stage1.memory`` (``limit_gb`` at 12 bytes of working set per ramp
    sample, measured with ``benchmarks/bench_stage1.py --memory``, or ``chunk_integrations``);
    chunks are made even in size.

    Parameters
    ----------
    nints, ngroups : int
        Integrations and groups of the file.
    config : dict or None
        The ``stage1`` section (validated against the Stage 1 ``CONFIG_SCHEMA``).
    frame_shape : tuple of int, optional
        ``(nrows, ncols)`` of one frame (default: the SLITLESSPRISM subarray,
        ``tsoreduce.instrument.SUBARRAY_SHAPE``).

    Returns
    -------
    list of tuple of int
        ``(read_start, read_stop, keep_start, keep_stop)`` per chunk (0-based integrations of the
        file): the chunk reads ``read_start:read_stop`` and keeps the rateints of
        ``keep_start:keep_stop``.
    """
    cfg = validate(config, _stage_module("stage1").CONFIG_SCHEMA, "stage1")
    if frame_shape is None:
        from .instrument import SUBARRAY_SHAPE as frame_shape
    return _stage1_chunks.plan_chunks(nints, ngroups, cfg, frame_shape)


def run_stage1_segment(path, config: dict | None = None, *, plot_dir=None, references=None):
    """Stage 1 on one uncal file, in chunks of integrations with bounded memory.

    The chunks come from :func:`chunk_plan` (``stage1.memory``); each is read with
    ``tsoreduce.io.read_uncal(path, integrations=...)``, run through the Stage 1 steps in place (the
    chunk is this function's own copy, so ``tsoreduce.detector.run``'s working copy is not needed) and
    dropped; the kept integrations' rateints are joined in order.  Figures are made for the first
    chunk.  A WARNING repeated by every chunk is logged once.  A progress bar per chunk inside
    ``tsoreduce.contract.show_progress(True)``.

    Parameters
    ----------
    path : str or pathlib.Path
        The uncal file.
    config : dict or None
        The ``stage1`` section (None: the defaults).
    plot_dir : str or pathlib.Path, optional
        Directory for the figures (first chunk); None: no figures.
    references : dict, optional
        Reference arrays or paths, as for :func:`tsoreduce.detector.run`.

    Returns
    -------
    tsoreduce.datamodel.RateData
        The rateints ``(nints, nrows, ncols)`` of the whole file, DN/s (or e-/s).
    """
    stage = _stage_module("stage1")
    cfg = validate(config, stage.CONFIG_SCHEMA, "stage1")
    return _stage1_chunks.run_in_chunks(path, cfg, stage, _io(), plot_dir=plot_dir, references=references)


def _stage1_caption(src, config, active: bool):
    """The caption every Stage 1 figure of segment ``src`` carries (a no-op without figures)."""
    if not active:
        return contextlib.nullcontext()
    from .plotting.detector import figure_caption
    try:
        text = _segment_caption(src, config)
    except (OSError, KeyError, ValueError) as exc:  # read_uncal raises the named error next
        log.debug("Stage 1 figure caption of %s: %s", src, exc)
        text = Path(src).name
    return figure_caption(text)


def _segment_caption(src, config: dict | None = None) -> str:
    return _stage1_chunks.segment_caption(src, validate(config, _stage_module("stage1").CONFIG_SCHEMA, "stage1"))


def run_stage2_files(rateints_paths, config: dict | None, outdir, *, name="tso", plot_dir=None,
                     references=None, overwrite=False, provenance=None, progress=True) -> str:
    """Stage 2 on rateints segments: read and join them in time order, run Stage 2, write calints.

    The segments are joined by ``tsoreduce.io.read_segments``; Stage 2 is
    ``tsoreduce.spectroscopic``'s runner; the product is ``<name>_calints.fits`` in ``outdir``.

    Parameters
    ----------
    rateints_paths : iterable of str or pathlib.Path
        The rateints files (ours or the STScI pipeline's).
    config : dict or None
        The ``stage2`` section.
    outdir : str or pathlib.Path
        Directory of the products (created if needed).
    name : str
        Prefix of the product names.
    plot_dir : str or pathlib.Path, optional
        Directory for the figures; None: no figures.
    references : dict, optional
        Reference files by type (e.g. ``flat``, ``specwcs``).
    overwrite : bool
        Replace existing products.
    provenance : dict, optional
        Software version and configuration written into the products' headers.
    progress : bool
        Show progress bars.

    Returns
    -------
    str
        The calints path.
    """
    stage2 = _stage_module("stage2")
    io = _io()
    Path(outdir).mkdir(parents=True, exist_ok=True)
    rates = io.read_segments([str(p) for p in rateints_paths])

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
    """Stage 3 on calints: x1dints and the spectroscopic + white light curves.

    Writes ``<name>_x1dints.fits`` and ``<name>_lightcurves.h5`` (``tsoreduce.io.write_lightcurves``)
    in ``outdir``.

    Parameters
    ----------
    calints_paths : iterable of str or pathlib.Path
        The calints files.
    config : dict or None
        The ``stage3`` section.
    outdir : str or pathlib.Path
        Directory of the products (created if needed).
    name : str
        Prefix of the product names.
    plot_dir : str or pathlib.Path, optional
        Directory for the figures; None: no figures.
    overwrite : bool
        Replace existing products.
    provenance : dict, optional
        Software version and configuration written into the products' headers.
    progress : bool
        Show progress bars.

    Returns
    -------
    tuple of str
        (x1dints path, light-curve path), or (x1dints path,) when light curves are skipped.
    """
    run_stage3 = _stage_function("stage3", "run_stage3")
    io = _io()
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    # Stage 3 uses ERR, not the variance cubes: two cubes less in memory
    cal = io.read_segments([str(p) for p in calints_paths], variances=False)

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

    Each stage runs through its file-level runner (``run_stage1_files`` ... ``run_stage4_files``)
    inside ``tsoreduce.contract.show_progress(progress)``, under the lock of ``output_dir``.

    Parameters
    ----------
    config : dict
        The validated run config.
    stages : str, int or list, optional
        Override of ``config["stages"]`` ("1-4", [2, 3], ...); None keeps the config's.
    force : bool
        Recompute finished stages and overwrite their products.
    dry_run : bool
        Only plan; returns ``{"plan": [...], "text": ..., "conflicts": [...]}`` and writes nothing.
    progress : bool
        Show tqdm progress bars.

    Returns
    -------
    dict
        The summary: output_dir, stages (per stage: action, seconds, products, figures), numbers (key
        results), also written to ``output_dir/summary.json``.

    Raises
    ------
    OutputWriteError
        If the output directory cannot be created.
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
    with OutputLock(out_dir, config.get("_source", "")), show_progress(progress):
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
        summary["numbers"] = key_numbers(config, out_dir, _io().read_lightcurves)
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
        extra = {"result": result_numbers(result)}
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
