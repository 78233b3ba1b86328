"""Batch mode: reduce many exposures, each into its own output folder, with failures isolated.

``tsoreduce batch RUN1.yaml RUN2.yaml ...`` takes run files (each reduces one exposure as
``tsoreduce RUN.yaml`` would) and/or *batch files*: a YAML with an ``exposures`` list whose entries
share every other setting::

    output_dir: archive_output          # exposure <name> goes to archive_output/<name>
    execution: {backend: dask, scheduler: local, workers: 4}   # how the EXPOSURES are distributed
    stages: all                         # shared run settings (any run key but input / name)
    plots: false
    stage4: {parameters: {...}}
    exposures:
      - name: visit1
        input: {uncal: data/visit1/*_uncal.fits}
      - name: visit2
        input: {uncal: data/visit2/*_uncal.fits}
        stage4: {parameters: {t0: {value: 60412.3, prior: fixed}}}   # merged over the shared keys

Each exposure is one work unit of the batch's execution backend (:mod:`tsoreduce.execution`; the
``execution`` key of a batch file or ``--backend/--workers/--scheduler``).  With the serial batch
backend the exposures run one after another in this process, each with its own ``execution``
section (its segments and channel fits may still be distributed); with ``processes`` or ``dask`` each
exposure runs serially inside one worker.  An exposure that fails (a bad file, a configuration error,
a worker that died) is reported in the summary with the error, and the others go on.

Written in the batch directory: ``batch_summary.ecsv`` and ``batch_summary.json`` (one row per
exposure: status, white-light depth and error, white-light point-to-point scatter, channels, seconds,
output folder, error) and ``batch.log`` (the batch's messages and every warning).
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import os
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from ._util import atomic_write, atomic_write_text
from .errors import ConfigError, TsoreduceError

__all__ = ["Exposure", "load_batch", "run_batch", "format_table", "main"]

log = logging.getLogger(__name__)

_BATCH_KEYS = ("exposures", "output_dir", "execution")


@dataclass
class Exposure:
    """One exposure of a batch: its validated run config, or the error that stopped its loading.

    Parameters
    ----------
    name : str
        The exposure's name (its output folder inside the batch directory).
    source : str
        The run or batch file it came from.
    config : dict, optional
        The validated run config (None when loading failed).
    error : str, optional
        Why the exposure will not run.
    plans : list of tsoreduce.run_plan.StagePlan
        Its plan, filled in by :func:`run_batch`.
    output_dir : str, optional
        Its output directory.
    """

    name: str
    source: str
    config: dict | None = None
    error: str | None = None
    plans: list = field(default_factory=list)
    output_dir: str | None = None


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def load_batch(paths, *, output_dir=None) -> tuple[list[Exposure], Path, dict | None]:
    """Read run files and batch files into exposures.

    An exposure whose configuration is invalid (or whose input is missing) carries its error and will
    not run; the others are unaffected.

    Parameters
    ----------
    paths : iterable of str or pathlib.Path
        Run files (one exposure each) and batch files (an ``exposures`` list over a shared base).
    output_dir : str or pathlib.Path, optional
        The batch directory (default: beside the first file).

    Returns
    -------
    exposures : list of Exposure
        In the order given.
    batch_dir : pathlib.Path
        Where the summary and batch.log go.
    execution : dict or None
        The ``execution`` section of the first batch file.

    Raises
    ------
    ConfigError
        For a batch file that is not valid YAML, has no ``exposures`` list or an entry without a
        ``name``; for two exposures with the same name or output folder.
    FileNotFoundError
        For a missing YAML file.
    """
    import yaml
    from .config import load_run_config, read_yaml, validate_run_config

    exposures: list[Exposure] = []
    batch_dir, exec_section = (Path(output_dir).resolve() if output_dir else None), None
    for p in paths:
        p = Path(p)
        _, user = read_yaml(p)
        if isinstance(user, dict) and "exposures" in user:
            entries = user["exposures"]
            if not isinstance(entries, list) or not entries:
                raise ConfigError(f"{p}: exposures: expected a non-empty list of {{name, input, ...}}")
            base = p.parent.resolve()
            out = Path(user.get("output_dir") or f"{p.stem}_output")
            out = out if out.is_absolute() else base / out
            if batch_dir is None:
                batch_dir = out
            if exec_section is None and user.get("execution") is not None:
                exec_section = user["execution"]
            shared = {k: v for k, v in user.items() if k not in _BATCH_KEYS}
            for k, entry in enumerate(entries):
                if not isinstance(entry, dict) or not entry.get("name"):
                    raise ConfigError(f"{p}: exposures[{k}]: each exposure needs a name (and an input)")
                name = str(entry["name"])
                merged = _merge(shared, entry)
                merged.setdefault("output_dir", str(out / name))
                exp = Exposure(name, f"{p}#{name}", output_dir=os.path.join(base, str(merged["output_dir"])))
                try:
                    cfg = validate_run_config(merged, base)
                    cfg["_source"] = f"{p.resolve()}#{name}"
                    cfg["_text"] = yaml.safe_dump(merged, sort_keys=False)
                    exp.config = cfg
                except (ConfigError, OSError) as exc:
                    exp.error = _error_text(exc)
                exposures.append(exp)
        else:
            exp = Exposure(str((user or {}).get("name", p.stem)) if isinstance(user, dict) else p.stem, str(p))
            try:
                exp.config = load_run_config(p)
                exp.name = exp.config["name"]
            except (ConfigError, OSError) as exc:
                exp.error = _error_text(exc)
            exposures.append(exp)
    if not exposures:
        raise ConfigError("batch: no exposures given")
    _check_distinct(exposures)
    if batch_dir is None:
        batch_dir = Path("tsoreduce_batch").resolve()
    return exposures, batch_dir, exec_section


def _check_distinct(exposures):
    seen_names, seen_dirs = {}, {}
    for e in exposures:
        if e.name in seen_names:
            raise ConfigError(f"batch: two exposures are named {e.name!r} ({seen_names[e.name]} and "
                              f"{e.source}); names must be unique")
        seen_names[e.name] = e.source
        d = e.config["output_dir"] if e.config is not None else e.output_dir
        if d is not None:
            d = os.path.realpath(d)
            if d in seen_dirs:
                raise ConfigError(f"batch: {seen_dirs[d]} and {e.source} would both write into {d}; "
                                  f"give each exposure its own output_dir")
            seen_dirs[d] = e.source


# ---- one exposure (a work unit) ------------------------------------------------------------------

def _run_exposure(unit) -> dict:
    """Work unit: reduce one exposure with :func:`tsoreduce.pipeline.run`; never raises (a failure is
    returned as the row's status and error, so the backend does not retry a deterministic failure)."""
    config, force = unit
    from . import pipeline

    t0 = time.perf_counter()
    row = {"name": config["name"], "output_dir": config["output_dir"]}
    try:
        summary = pipeline.run(config, force=force, progress=False)
    except Exception as exc:  # isolation: one exposure's failure is its row, not the batch's
        row.update(status="failed", error=_error_text(exc), traceback=traceback.format_exc(limit=8),
                   seconds=round(time.perf_counter() - t0, 2))
        return row
    row.update(status="ok", error="", seconds=round(time.perf_counter() - t0, 2),
               **_row_numbers(summary.get("numbers", {})))
    return row


def _row_numbers(nums: dict) -> dict:
    """White-light depth (ppm; Rp/Rs squared for a transit, fp for an eclipse) and its error, the
    white light curve's point-to-point scatter (ppm) and the number of channels."""
    depth = err = math.nan
    if "white.rp_rs" in nums:
        rp, erp = nums["white.rp_rs"], nums.get("white.rp_rs_err", math.nan)
        depth, err = 1e6 * rp ** 2, 2e6 * abs(rp) * erp
    if "white.fp" in nums:
        depth, err = 1e6 * nums["white.fp"], 1e6 * nums.get("white.fp_err", math.nan)
    return {"white_depth_ppm": depth, "white_depth_err_ppm": err,
            "white_p2p_ppm": nums.get("lightcurves.white_p2p_ppm", math.nan),
            "nchannels": int(nums.get("spectrum.nchannels", 0) or 0)}


# ---- progress over exposures and stages ----------------------------------------------------------

class _Progress:
    """A bar over (exposure, stage) pairs, advanced from the stages' done markers on disk, so it works
    whatever process runs the exposure (a background thread polls every ``interval`` s)."""

    def __init__(self, exposures, enabled: bool, interval: float = 1.0):
        from tqdm.auto import tqdm
        from . import run_plan
        self._plan = run_plan
        self.units = [(e, p) for e in exposures for p in e.plans]
        self.initial = {id(p): (run_plan._read_marker(p.directory / run_plan.DONE) or {}).get("run_id")
                        for _, p in self.units}
        self.bar = tqdm(total=len(self.units), desc="batch", unit="stage", disable=not enabled)
        self.finished: dict = {}
        self._stop = threading.Event()
        self._interval = interval
        self._thread = threading.Thread(target=self._loop, daemon=True) if enabled else None

    def _state(self):
        done, running = 0, []
        pl = self._plan
        for e, p in self.units:
            m = pl.is_done(p.directory, p.config_hash)
            if m is not None and (p.action == "skip" or m.get("run_id") != self.initial[id(p)]):
                done += 1
            elif e.name not in self.finished and (p.directory / pl.RUNNING).exists():
                running.append(f"{e.name}:S{p.stage}")
        for e, p in self.units:  # a failed exposure's remaining stages will not run: count them out
            if self.finished.get(e.name) == "failed" and pl.is_done(p.directory, p.config_hash) is None:
                done += 1
        return done, running

    def refresh(self):
        done, running = self._state()
        self.bar.n = done
        failed = sum(1 for s in self.finished.values() if s != "ok")
        self.bar.set_postfix_str(f"exposures {len(self.finished)} finished, {failed} failed"
                                 + (f"; running {', '.join(running[:4])}" if running else ""), refresh=False)
        self.bar.refresh()

    def _loop(self):
        while not self._stop.wait(self._interval):
            try:
                self.refresh()
            except Exception:  # a marker half-written by another process: next poll
                pass

    def __enter__(self):
        if self._thread is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.refresh()
        self.bar.close()


# ---- the batch ------------------------------------------------------------------------------------

def run_batch(exposures: list[Exposure], batch_dir, *, execution=None, force=False, progress=True) -> list[dict]:
    """Reduce every exposure, each a work unit of the ``execution`` backend.

    Parameters
    ----------
    exposures : list of Exposure
        From :func:`load_batch`.
    batch_dir : str or pathlib.Path
        Where the summary table and batch.log go.
    execution : dict, optional
        The ``execution`` section distributing the exposures (None: serial).
    force : bool
        Recompute finished stages (``tsoreduce --force`` for every exposure).
    progress : bool
        A bar over exposures and stages.

    Returns
    -------
    list of dict
        One summary row per exposure (``status``, ``error``, key numbers), also written to the batch
        directory.  Failures of single exposures never raise: they are the rows' ``status`` and
        ``error``.

    Raises
    ------
    ConfigError
        For an invalid ``execution`` section (before any work).
    """
    from . import execution as ex_mod
    from . import pipeline

    batch_dir = Path(batch_dir)
    batch_dir.mkdir(parents=True, exist_ok=True)
    ex_cfg = ex_mod.validate_config(execution)
    handler = _attach_batch_log(batch_dir)
    t0 = time.perf_counter()
    try:
        rows: dict = {}
        runnable = []
        for e in exposures:
            if e.config is not None and e.error is None:
                try:  # the plan checks inputs and overwrites before any work
                    e.plans = pipeline.plan(e.config, force=force)
                except Exception as exc:
                    e.error = _error_text(exc)
            if e.error is not None:
                rows[e.name] = {"name": e.name, "output_dir": (e.config or {}).get("output_dir", ""),
                                "status": "failed", "error": e.error, "seconds": 0.0}
                log.warning("batch: %s not run: %s", e.name, e.error)
            else:
                runnable.append(e)
        log.info("batch: %d exposure(s), %d to run, backend %s", len(exposures), len(runnable),
                 ex_cfg["backend"])
        with ex_mod.session(ex_cfg) as ex, _Progress(runnable, progress) as bar:
            bar.finished.update({n: "failed" for n in rows})

            def done(k, res):
                e = runnable[k]
                status = res.get("status", "failed") if isinstance(res, dict) else "failed"
                bar.finished[e.name] = status

            results = ex.map(_run_exposure, [(e.config, force) for e in runnable],
                             labels=[e.name for e in runnable], desc="exposures", progress=False,
                             return_exceptions=True, forward_logs=False, on_result=done)
            try:  # what each worker needed: the figure to size a cluster's memory per worker
                peaks = {str(k): round(v, 3) for k, v in ex.worker_peak_rss_gb().items()}
            except Exception as exc:
                log.info("batch: no per-worker memory figures (%s)", exc)
                peaks = {}
        for e, res in zip(runnable, results):
            if isinstance(res, BaseException):  # the unit itself was lost (e.g. its worker kept dying)
                res = {"name": e.name, "output_dir": e.config["output_dir"], "status": "failed",
                       "error": _error_text(res), "seconds": math.nan}
            rows[e.name] = res
            if res["status"] != "ok":
                log.error("batch: %s failed: %s", e.name, res["error"])
                if res.get("traceback"):
                    log.info("batch: %s failed here:\n%s", e.name, res["traceback"])
            else:
                log.info("batch: %s finished in %.1f s", e.name, res["seconds"])
        ordered = [rows[e.name] for e in exposures]
        _write_summary(batch_dir, ordered, time.perf_counter() - t0, ex_cfg, peaks)
        log.info("batch summary:\n%s", format_table(ordered))
        return ordered
    finally:
        logging.getLogger("tsoreduce").removeHandler(handler)
        handler.close()


class _BatchOrWarning(logging.Filter):
    def filter(self, record):
        return record.name.startswith(__name__) or record.levelno >= logging.WARNING


def _attach_batch_log(batch_dir: Path):
    h = logging.FileHandler(batch_dir / "batch.log")
    h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    h.setLevel(logging.INFO)
    h.addFilter(_BatchOrWarning())
    root = logging.getLogger("tsoreduce")
    root.addHandler(h)
    if root.level == logging.NOTSET or root.level > logging.INFO:
        root.setLevel(logging.INFO)
    return h


_COLUMNS = ("name", "status", "white_depth_ppm", "white_depth_err_ppm", "white_p2p_ppm", "nchannels",
            "seconds", "output_dir", "error")


def _write_summary(batch_dir: Path, rows, seconds, ex_cfg, peaks=None):
    from astropy.table import Table
    from . import __version__

    def col(name):
        vals = [r.get(name) for r in rows]
        if name in ("name", "status", "output_dir", "error"):
            return [str(v or "") for v in vals]
        if name == "nchannels":
            return [int(v or 0) for v in vals]
        return [math.nan if v is None else float(v) for v in vals]

    t = Table({c: col(c) for c in _COLUMNS})
    for c in ("white_depth_ppm", "white_depth_err_ppm", "white_p2p_ppm"):
        t[c].unit = "ppm"
    t["seconds"].unit = "s"
    t.meta.update({"tsoreduce_version": __version__, "batch_seconds": round(seconds, 2),
                   "execution": dict(ex_cfg)})
    atomic_write(batch_dir / "batch_summary.ecsv", lambda tmp: t.write(tmp, format="ascii.ecsv", overwrite=True),
                 suffix=".ecsv")
    atomic_write_text(batch_dir / "batch_summary.json",
                      json.dumps({"seconds": round(seconds, 2), "execution": ex_cfg,
                                  "worker_peak_rss_gb": peaks or {},
                                  "exposures": [{k: v for k, v in r.items() if k != "traceback"}
                                                for r in rows]}, indent=1, default=str))


def _short(text: str, n: int = 160) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


def format_table(rows) -> str:
    """The summary table as text: one line per exposure.

    Parameters
    ----------
    rows : list of dict
        From :func:`run_batch`.

    Returns
    -------
    str
        The table.
    """
    def num(v, fmt):
        return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)

    lines = [f"{'exposure':<20} {'status':<7} {'white depth (ppm)':>21} {'p2p (ppm)':>10} {'chan':>4} "
             f"{'time (s)':>8}  output / error"]
    for r in rows:
        depth = (f"{num(r.get('white_depth_ppm'), '.0f')} +- {num(r.get('white_depth_err_ppm'), '.0f')}"
                 if r.get("status") == "ok" else "-")
        lines.append(f"{r['name'][:20]:<20} {r['status']:<7} {depth:>21} {num(r.get('white_p2p_ppm'), '.0f'):>10} "
                     f"{r.get('nchannels', 0) or 0:>4} {num(r.get('seconds'), '.1f'):>8}  "
                     + (r.get("output_dir", "") if r.get("status") == "ok" else _short(r.get("error", ""))))
    n_bad = sum(1 for r in rows if r["status"] != "ok")
    lines.append(f"{len(rows) - n_bad} of {len(rows)} exposure(s) reduced" + (f", {n_bad} failed" if n_bad else ""))
    return "\n".join(lines)


# ---- command line ---------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``tsoreduce batch``.

    Returns
    -------
    argparse.ArgumentParser
        The parser.
    """
    p = argparse.ArgumentParser(
        prog="tsoreduce batch",
        description="Reduce many exposures, each into its own output folder: run files and/or batch "
                    "files (a YAML with an 'exposures' list sharing every other setting).")
    p.add_argument("files", nargs="+", help="run YAML files and/or batch YAML files")
    p.add_argument("--output-dir", metavar="DIR", help="where batch_summary.ecsv/json and batch.log go "
                   "(default: the first batch file's output_dir, else ./tsoreduce_batch)")
    p.add_argument("--backend", choices=("serial", "processes", "dask"),
                   help="how exposures are distributed (overrides the batch file's execution.backend)")
    p.add_argument("--workers", type=int, help="worker processes (processes; dask local)")
    p.add_argument("--scheduler", help="dask: 'local' or the address of a running scheduler")
    p.add_argument("--force", action="store_true", help="recompute finished stages of every exposure")
    p.add_argument("--dry-run", action="store_true", help="print every exposure's plan; write nothing")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("-v", "--verbose", action="store_true", help="every exposure's messages on the console")
    return p


def main(argv=None) -> int:
    """``tsoreduce batch ...``: reduce many exposures.

    Parameters
    ----------
    argv : list of str, optional
        Command-line arguments (default: ``sys.argv[2:]`` via the main command).

    Returns
    -------
    int
        0 when every exposure was reduced, 1 when some failed, 2 for a configuration error of the
        batch itself (nothing run).
    """
    args = build_parser().parse_args(argv)
    from . import pipeline

    root = logging.getLogger("tsoreduce")
    h = logging.StreamHandler(sys.stderr)
    h.setLevel(logging.INFO if args.verbose else logging.WARNING)
    if not args.verbose:  # the exposures' own warnings are in their run.log and in batch.log
        h.addFilter(lambda r: r.name.startswith(__name__) or r.levelno >= logging.ERROR)
    h.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root.addHandler(h)
    try:
        try:
            exposures, batch_dir, ex_section = load_batch(args.files, output_dir=args.output_dir)
            ex_section = dict(ex_section or {})
            for k in ("backend", "workers", "scheduler"):
                if getattr(args, k) is not None:
                    ex_section[k] = getattr(args, k)
            if args.dry_run:
                for e in exposures:
                    if e.error:
                        print(f"{e.name}: will not run: {e.error}")
                    else:
                        try:
                            print(pipeline.run(e.config, force=args.force, dry_run=True)["text"])
                        except TsoreduceError as exc:
                            print(f"{e.name}: will not run: {_error_text(exc)}")
                return 0
            rows = run_batch(exposures, batch_dir, execution=ex_section, force=args.force,
                             progress=not args.no_progress)
        except FileNotFoundError as exc:
            print(f"tsoreduce batch: error: {exc}", file=sys.stderr)
            return 2
        except ConfigError as exc:
            print(f"tsoreduce batch: configuration error: {exc}", file=sys.stderr)
            return 2
        print(format_table(rows))
        print(f"summary: {batch_dir / 'batch_summary.ecsv'}  log: {batch_dir / 'batch.log'}")
        return 0 if all(r["status"] == "ok" for r in rows) else 1
    finally:
        root.removeHandler(h)
