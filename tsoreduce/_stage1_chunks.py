"""Stage 1 at file level: one uncal file read and reduced in chunks of integrations.

A flight segment of ~200 integrations x 100 groups holds 0.6 G samples, ~7 GB of working set in one
piece; :func:`plan_chunks` cuts it into chunks sized from ``stage1.memory`` (with halo integrations
for the time-domain jump detector) and :func:`run_in_chunks` reads each chunk, runs the Stage 1
steps in place on it (the chunk is this module's own copy) and joins the kept rateints.  The public
entry points are :func:`tsoreduce.pipeline.run_stage1_segment` and
:func:`tsoreduce.pipeline.chunk_plan`; the stage module and the I/O module are passed in, so the
pipeline's lazy imports (and the test fakes) decide which ones run.
"""

from __future__ import annotations

import gc
import logging
from pathlib import Path

from .contract import progress_enabled
from .datamodel import concatenate

log = logging.getLogger("tsoreduce.pipeline")

#: bytes of working set per ramp sample while Stage 1 runs in place on a chunk (float32 data, uint32
#: GROUPDQ and its jump-flag copy, the transient uint16/float32 read), and the fixed overhead of the
#: process; measured with ``python benchmarks/bench_stage1.py --memory`` (7.3 GB for 200 x 100 groups)
_BYTES_PER_SAMPLE = 12.0
_BASE_GB = 0.7

#: the Stage 1 modules whose WARNINGs a chunked segment logs once
_STAGE1_MODULES = ("stage", "dq_init", "emi", "reset", "calibrate", "jumps", "rampfit")


def plan_chunks(nints: int, ngroups: int, cfg: dict, frame_shape) -> list[tuple[int, int, int, int]]:
    """``(read_start, read_stop, keep_start, keep_stop)`` per chunk for a validated ``stage1`` ``cfg``
    (see :func:`tsoreduce.pipeline.chunk_plan`)."""
    mem, j = cfg["memory"], cfg["jump"]
    halo = 0
    if not j["skip"] and j["method"] in ("time_domain", "both"):
        halo = j["time_domain"]["window"] // 2
    per_int = float(ngroups * frame_shape[0] * frame_shape[1]) * _BYTES_PER_SAMPLE
    if mem["chunk_integrations"] is not None:
        core = int(mem["chunk_integrations"])
    else:
        core = int((mem["limit_gb"] - _BASE_GB) * 1e9 // per_int) - 2 * halo
        if core < 1:
            log.warning("stage1.memory.limit_gb = %.2f GB cannot hold one integration of %d groups with "
                        "its halos; using chunks of %d integrations", mem["limit_gb"], ngroups,
                        max(2 * halo, 8))
            core = max(2 * halo, 8)
    if core >= nints:
        return [(0, nints, 0, nints)]
    nchunks = -(-nints // core)
    core = -(-nints // nchunks)                       # even chunk sizes
    plan = []
    for a in range(0, nints, core):
        b = min(a + core, nints)
        plan.append((max(a - halo, 0), min(b + halo, nints), a, b))
    return plan


def run_in_chunks(path, cfg: dict, stage, io, *, plot_dir=None, references=None):
    """Rateints of the uncal file ``path`` for a validated ``stage1`` ``cfg``, reduced chunk by chunk
    with ``stage._run_in_place`` on chunks read by ``io.read_uncal`` (see
    :func:`tsoreduce.pipeline.run_stage1_segment`)."""
    try:
        from astropy.io import fits
        hdr = fits.getheader(path, "SCI")
        nints, ngroups = int(hdr["NAXIS4"]), int(hdr["NAXIS3"])
        shape = (int(hdr["NAXIS2"]), int(hdr["NAXIS1"]))
    except (OSError, KeyError, IndexError):
        nints = None                                   # read_uncal raises the named error
    plan = [(0, None, 0, None)] if nints is None else plan_chunks(nints, ngroups, cfg, shape)
    if len(plan) == 1:
        return stage._run_in_place(io.read_uncal(path), cfg, plot_dir=plot_dir, references=references).product
    log.info("Stage 1: %s in %d chunks of <= %d integrations (memory.limit_gb %.1f)", Path(path).name,
             len(plan), max(b - a for _, _, a, b in plan), cfg["memory"]["limit_gb"])
    parts = []
    iterator = plan
    if progress_enabled():
        from tqdm.auto import tqdm
        iterator = tqdm(plan, desc=f"Stage 1 {Path(path).name}", unit="chunk", leave=False)
    once = _OncePerMessage()
    loggers = [logging.getLogger(f"tsoreduce.detector.{m}") for m in _STAGE1_MODULES]
    for lg in loggers:
        lg.addFilter(once)                              # every chunk repeats the same step warnings
    try:
        for k, (ra, rb, ka, kb) in enumerate(iterator):
            rates = stage._run_in_place(io.read_uncal(path, integrations=(ra, rb)), cfg,
                                        plot_dir=plot_dir if k == 0 else None, references=references).product
            parts.append(rates.select_integrations(slice(ka - ra, kb - ra)))
            del rates
            gc.collect()
    finally:
        for lg in loggers:
            lg.removeFilter(once)
    return concatenate(parts, release=True)


class _OncePerMessage(logging.Filter):
    """Let each distinct WARNING (or worse) through once; INFO and DEBUG pass unchanged."""

    def __init__(self):
        super().__init__()
        self.seen = set()

    def filter(self, record):
        if record.levelno < logging.WARNING:
            return True
        msg = record.getMessage()
        if msg in self.seen:
            return False
        self.seen.add(msg)
        return True


def segment_caption(src, cfg: dict) -> str:
    """What the Stage 1 figures of segment ``src`` show: file, segment number and the integrations
    (the first chunk's when ``stage1.memory`` splits the segment), from the headers."""
    from astropy.io import fits
    with fits.open(src) as hdul:  # headers only: the data are not read
        h, sci = hdul[0].header, hdul["SCI"].header
    nfile = int(sci["NAXIS4"])
    start = int(h.get("INTSTART", 1) or 1)
    first, last, _, _ = plan_chunks(nfile, int(sci["NAXIS3"]), cfg,
                                    (int(sci["NAXIS2"]), int(sci["NAXIS1"])))[0]
    seg = (f"segment {h['EXSEGNUM']}/{h['EXSEGTOT']} " if "EXSEGNUM" in h and "EXSEGTOT" in h else "")
    total = f" of {h['NINTS']}" if "NINTS" in h else ""
    part = "" if (first, last) == (0, nfile) else f" (first chunk of the segment's {nfile})"
    return f"{seg}({Path(src).name}): integrations {start + first}-{start + last - 1}{total}{part}"
