"""Benchmark: a full-size MIRI LRS TSO from uncal to spectrum on one machine, stage by stage.

Exposure: ``--segments`` (default 9) uncal segments of a 1779-integration x 100-group SLITLESSPRISM
exposure (~198 integrations per segment, uint16 SCI + uint8 GROUPDQ: 1.8 GB per segment, 16 GB for all
9), as flight data are split.  ``--segments 2`` keeps the first two segments (396 integrations) of the
same exposure, so the per-segment cost is the full-size one.

Input (``--source``):
* ``synthetic`` (default) -- numpy ramps written like bench_stage1's flight-like segments: a Gaussian
  trace whose brightness follows a batman transit (Rp/Rs 0.12, 40 % of the exposure in transit) on a
  faint background, Poisson noise per group (normal approximation) and read noise, bias 12000 DN;
  no cosmic rays, no reference files (Stage 1 then applies its documented neutral defaults).  Fast:
  ~0.1 s per integration.
* ``simulator`` -- ``tsoreduce.simulate.write_lrs_simulation`` (every detector effect, reference files);
  ~0.5 s per integration, so ~15 min for the full 1779 x 100.
Generated files are kept in ``--workdir`` and reused by the next run with the same size and source.

Each stage runs in its own child process (``pipeline.run(config, stages=N)`` with the default
configuration of every stage; Stage 4 gets the transit parameters it must be given), so the peak
resident memory (``ru_maxrss`` from ``os.wait4``) and the wall time are per stage.  Printed per stage:
wall time, peak RSS, bytes written to disk (block I/O of the child, ``ru_oublock``) and the size of the
stage's products; then the totals against the issue's targets (every stage < 4 GB, total < 8 min).

Usage::

    python benchmarks/bench_full_tso.py                         # 9 segments (16 GB of uncal)
    python benchmarks/bench_full_tso.py --segments 2            # first 2 segments, then extrapolated
    python benchmarks/bench_full_tso.py --segments 1 --ngroups 20 --workdir /tmp/tso_small
    python benchmarks/bench_full_tso.py --stages 2-4            # re-measure later stages only

With fewer than 9 segments, the last table extrapolates each stage to 9: Stage 1 time is per segment
(segments are independent; memory stays one segment's), Stages 2-4 time and Stages 2-3 memory are
linear in the number of integrations they hold (fit through the measured runs listed in
``--extrapolate-from`` summary files, or scaled from one run with the stage's fixed ~0.3 GB imports).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

FULL_NINTS, FULL_SEGMENTS = 1779, 9
TARGET_GB, TARGET_S = 4.0, 480.0


def segment_sizes(nints_total=FULL_NINTS, nseg=FULL_SEGMENTS):
    return [nints_total // nseg + (1 if k < nints_total % nseg else 0) for k in range(nseg)]


def transit_lc(t_days, t0, per, rp, a_rs, inc):
    import batman
    p = batman.TransitParams()
    p.t0, p.per, p.rp, p.a, p.inc, p.ecc, p.w = t0, per, rp, a_rs, inc, 0.0, 90.0
    p.u, p.limb_dark = [0.1, 0.1], "quadratic"
    return batman.TransitModel(p, t_days).light_curve(p)


def ephemeris(ngroups):
    """Transit of the full exposure: mid-transit at its middle, 40 % of it in transit (as the demo)."""
    from tsoreduce import instrument
    tint = (ngroups + 1) * instrument.TFRAME / 86400.0
    dur = FULL_NINTS * tint
    a_rs, inc = 8.6, 88.0
    b = a_rs * np.cos(np.radians(inc))
    # T14 = P/pi * asin(sqrt((1+k)^2 - b^2) / (a sin i)) = 0.4 dur  ->  P
    per = 0.4 * dur * np.pi / np.arcsin(np.sqrt((1.12) ** 2 - b ** 2) / (a_rs * np.sin(np.radians(inc))))
    return {"t0": 60000.0 + 0.5 * dur, "per": per, "rp": 0.12, "a_rs": a_rs, "inc": inc, "tint": tint}


def write_synthetic_segment(path, k, ngroups, eph, seed):
    """Segment ``k`` (0-based) of the 9-segment exposure: uint16 SCI, GROUPDQ, PIXELDQ, INT_TIMES."""
    from bench_stage1 import write_uint16_uncal
    from tsoreduce import instrument, reference
    from tsoreduce.datamodel import IntTimes

    sizes = segment_sizes()
    nints, intstart = sizes[k], 1 + sum(sizes[:k])
    intend = intstart + nints - 1
    tg = instrument.TFRAME
    meta = {
        "INSTRUME": "MIRI", "EXP_TYPE": "MIR_LRS-SLITLESS", "SUBARRAY": "SLITLESSPRISM", "READPATT": "FAST",
        "NGROUPS": ngroups, "NINTS": FULL_NINTS, "INTSTART": intstart, "INTEND": intend, "TFRAME": tg,
        "TGROUP": tg, "SUBSTRT1": instrument.SUBSTRT1, "SUBSTRT2": instrument.SUBSTRT2, "SUBSIZE1": 72, "SUBSIZE2": 416,
        "EXSEGNUM": k + 1, "EXSEGTOT": FULL_SEGMENTS}
    rng = np.random.default_rng(seed)
    ny, nx = instrument.SUBARRAY_SHAPE
    xc = reference.trace_x_center(np.arange(ny))
    spec = 3000.0 * np.exp(-0.5 * ((np.arange(ny) - 300) / 90.0) ** 2)[:, None]   # DN/s at the peak
    star = (spec * np.exp(-0.5 * ((np.arange(nx)[None] - xc[:, None]) / 1.5) ** 2)).astype(np.float32)
    t_start = 60000.0 + (np.arange(intstart - 1, intend)) * eph["tint"]
    t_mid = t_start + 0.5 * eph["tint"]
    lc = transit_lc(t_mid, eph["t0"], eph["per"], eph["rp"], eph["a_rs"], eph["inc"])
    sci = np.empty((nints, ngroups, ny, nx), np.uint16)
    gain, rn = instrument.GAIN, instrument.READ_NOISE_DN
    for i in range(nints):
        per_group = (5.0 + star * lc[i]) * tg                                   # DN per group
        inc = per_group[None] + np.sqrt(per_group / gain)[None] * rng.standard_normal(
            (ngroups, ny, nx), dtype=np.float32)
        ramp = 12000.0 + np.cumsum(inc, axis=0) + rn * rng.standard_normal((ngroups, ny, nx), dtype=np.float32)
        np.clip(np.rint(ramp), 0, 65535, out=ramp)
        sci[i] = ramp
    times = IntTimes(np.arange(intstart, intend + 1), t_start, t_mid, t_start + eph["tint"])
    return write_uint16_uncal(path, sci, meta, times)


def prepare_input(workdir: Path, nseg: int, ngroups: int, source: str):
    """Uncal segments (reused when the manifest matches) and the Stage 4 parameters."""
    manifest = workdir / "input_manifest.json"
    want = {"segments": nseg, "ngroups": ngroups, "source": source, "nints_total": FULL_NINTS}
    eph = ephemeris(ngroups)
    if manifest.exists():
        m = json.loads(manifest.read_text())
        if m.get("want") == want and all(Path(p).exists() for p in m["uncal"]):
            print(f"reusing {len(m['uncal'])} uncal segment(s) in {workdir}")
            return m
    workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    refs = {}
    if source == "synthetic":
        paths = []
        for k in range(nseg):
            p = workdir / "input" / f"jw09999001001_03101_00001-seg{k + 1:03d}_mirimage_uncal.fits"
            p.parent.mkdir(parents=True, exist_ok=True)
            write_synthetic_segment(p, k, ngroups, eph, seed=k + 1)
            paths.append(str(p))
            print(f"  wrote {p.name} ({p.stat().st_size / 1e9:.2f} GB)", flush=True)
        tp = {"t0": eph["t0"], "period": eph["per"], "a_rs": eph["a_rs"], "inc": eph["inc"]}
    else:
        from tsoreduce.simulate import LRSSimConfig, lrs
        nints = sum(segment_sizes()[:nseg])
        cfg = LRSSimConfig(nints=nints, ngroups=ngroups, nsegments=nseg, seed=1)
        out = lrs.write_lrs_simulation(cfg, workdir / "input")
        paths = [str(p) for p in out["uncal"]]
        refs = {k: str(v) for k, v in (out.get("references") or {}).items()}
        tp = cfg.transit_parameters()
    gb = sum(Path(p).stat().st_size for p in paths) / 1e9
    print(f"input: {nseg} segment(s), {gb:.2f} GB of uncal, written in {time.perf_counter() - t0:.0f} s")
    m = {"want": want, "uncal": paths, "references": refs, "transit": {k: float(v) for k, v in tp.items()},
         "uncal_gb": gb}
    manifest.write_text(json.dumps(m, indent=1))
    return m


def write_run(workdir: Path, m: dict, plots: bool) -> Path:
    import yaml
    tp = m["transit"]
    run = {"name": "full_tso", "output_dir": str(workdir / "out"), "plots": plots,
           "input": {"uncal": m["uncal"], **({"references": m["references"]} if m["references"] else {})},
           "stage4": {"parameters": {
               "per": {"value": tp["period"], "prior": "fixed"},
               "t0": {"value": tp["t0"], "prior": "uniform", "bounds": [tp["t0"] - 0.01, tp["t0"] + 0.01]},
               "rp_rs": {"value": 0.12, "prior": "uniform", "bounds": [0.0, 0.3]},
               "a_rs": {"value": tp["a_rs"], "prior": "normal", "mean": tp["a_rs"], "sigma": 0.3},
               "inc": {"value": tp["inc"], "prior": "uniform", "bounds": [80.0, 90.0]},
               "q1": {"value": 0.04, "prior": "fixed"}, "q2": {"value": 0.25, "prior": "fixed"}}}}
    path = workdir / "run.yaml"
    path.write_text(yaml.safe_dump(run, sort_keys=False))
    return path


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0


def run_stage_measured(run_yaml: Path, stage: int, force: bool) -> dict:
    """As :func:`run_stage`, with the child's rusage (peak RSS, block output) from ``os.wait4``."""
    code = ("import logging, sys; logging.basicConfig(level=logging.WARNING, stream=sys.stderr); "
            "from tsoreduce.config import load_run_config; from tsoreduce import pipeline; "
            f"cfg = load_run_config({str(run_yaml)!r}); "
            f"s = pipeline.run(cfg, stages='{stage}', force={force}, progress=False); "
            "import json; print('NUMBERS', json.dumps(s['numbers']))")
    t0 = time.perf_counter()
    out_path = run_yaml.parent / f".stage{stage}.out"
    err_path = run_yaml.parent / f".stage{stage}.err"
    with open(out_path, "w") as fo, open(err_path, "w") as fe:
        pid = os.posix_spawn(sys.executable, [sys.executable, "-c", code], os.environ,
                             file_actions=[(os.POSIX_SPAWN_DUP2, fo.fileno(), 1),
                                           (os.POSIX_SPAWN_DUP2, fe.fileno(), 2)])
        _, status, ru = os.wait4(pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        print(err_path.read_text()[-4000:])
        raise SystemExit(f"stage {stage} failed")
    numbers = {}
    for line in out_path.read_text().splitlines():
        if line.startswith("NUMBERS "):
            numbers = json.loads(line[8:])
    return {"stage": stage, "wall_s": round(wall, 1), "peak_rss_gb": round(ru.ru_maxrss / 1e6, 3),
            "written_gb": round(ru.ru_oublock * 512 / 1e9, 3), "numbers": numbers,
            "cpu_s": round(ru.ru_utime + ru.ru_stime, 1)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--segments", type=int, default=FULL_SEGMENTS, help="segments of the 9 to reduce")
    p.add_argument("--ngroups", type=int, default=100)
    p.add_argument("--source", choices=("synthetic", "simulator"), default="synthetic")
    p.add_argument("--workdir", default="/tmp/tsoreduce_full_tso", help="input and products (kept)")
    p.add_argument("--stages", default="1-4", help="stages to measure, e.g. 2-4 (earlier ones must exist)")
    p.add_argument("--report", action="store_true", help="only re-print the extrapolation of stored runs")
    p.add_argument("--plots", action="store_true", help="make the figures (default configuration: off "
                   "here so the timing is the reduction's)")
    a = p.parse_args(argv)
    if not 1 <= a.segments <= FULL_SEGMENTS:
        raise SystemExit(f"--segments must be 1..{FULL_SEGMENTS}")
    workdir = Path(a.workdir) / f"seg{a.segments}_g{a.ngroups}_{a.source}"
    if a.report:
        return report(workdir)
    m = prepare_input(workdir, a.segments, a.ngroups, a.source)
    run_yaml = write_run(workdir, m, a.plots)
    from tsoreduce.config import parse_stages
    stages = parse_stages(a.stages)
    nints = sum(segment_sizes()[:a.segments])
    print(f"\nuncal -> spectrum: {a.segments} segment(s), {nints} integrations x {a.ngroups} groups, "
          f"{m['uncal_gb']:.2f} GB of uncal; each stage in its own process; config {run_yaml}")
    rows = []
    for s in stages:
        r = run_stage_measured(run_yaml, s, force=True)
        r["products_gb"] = round(du(workdir / "out" / f"stage{s}") / 1e9, 3)
        rows.append(r)
        print(f"  stage {s}: {r['wall_s']:7.1f} s wall ({r['cpu_s']:.0f} s CPU), peak RSS {r['peak_rss_gb']:.2f} GB, "
              f"written {r['written_gb']:.2f} GB, products {r['products_gb']:.2f} GB", flush=True)
    total = sum(r["wall_s"] for r in rows)
    peak = max(r["peak_rss_gb"] for r in rows)
    print(f"\n| stage | wall (s) | CPU (s) | peak RSS (GB) | written (GB) | products (GB) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['stage']} | {r['wall_s']:.1f} | {r['cpu_s']:.0f} | {r['peak_rss_gb']:.2f} | "
              f"{r['written_gb']:.2f} | {r['products_gb']:.2f} |")
    print(f"| total | {total:.1f} | {sum(r['cpu_s'] for r in rows):.0f} | max {peak:.2f} | "
          f"{sum(r['written_gb'] for r in rows):.2f} | {sum(r['products_gb'] for r in rows):.2f} |")
    nums = rows[-1]["numbers"]
    if "white.rp_rs" in nums:
        print(f"white-light Rp/Rs {nums['white.rp_rs']:.5f} +- {nums.get('white.rp_rs_err', float('nan')):.5f} "
              f"(injected 0.12{' in the synthetic scene' if a.source == 'synthetic' else ''})")
    summary = {"segments": a.segments, "nints": nints, "ngroups": a.ngroups, "source": a.source,
               "uncal_gb": m["uncal_gb"], "stages": rows, "total_s": total}
    (workdir / "bench_summary.json").write_text(json.dumps(summary, indent=1))
    if a.segments < FULL_SEGMENTS:
        extrapolate(rows, a.segments, nints, _other_runs(workdir, a.segments))
    else:
        print(f"targets: every stage < {TARGET_GB} GB: {'met' if peak < TARGET_GB else 'NOT met'} "
              f"(max {peak:.2f} GB); total < {TARGET_S / 60:.0f} min: "
              f"{'met' if total < TARGET_S else 'NOT met'} ({total / 60:.1f} min)")
    print(f"summary: {workdir / 'bench_summary.json'}")


#: resident memory of a child that imported tsoreduce and its stage (numpy, astropy, numba, scipy...),
#: used only when a single run is extrapolated
BASE_GB = 0.35


def _other_runs(workdir: Path, nseg: int):
    """Summaries of earlier runs of this benchmark with another segment count (same groups and source)."""
    out = []
    tag = workdir.name.split("_", 1)[1]
    for f in sorted(workdir.parent.glob(f"seg*_{tag}/bench_summary.json")):
        s = json.loads(f.read_text())
        if s["segments"] != nseg:
            out.append(s)
    return out


def _line_at(xs, ys, x):
    """Value at ``x`` of the least-squares line through (xs, ys); a negative slope (timing noise on a
    shared machine) is taken as flat at the largest measured value."""
    if len(set(xs)) < 2:
        return None, None
    slope, icpt = np.polyfit(np.asarray(xs, float), np.asarray(ys, float), 1)
    if slope < 0:
        return float(max(ys)), 0.0
    return float(slope * x + icpt), float(slope)


def extrapolate(rows, nseg, nints, others=()):
    """Scale each stage to 9 segments.  Stage 1: time per integration x 1779 (segments are
    independent), memory one segment's.  Stages 2-4: wall and CPU time, and Stages 2-3 memory, on the
    line through this run and earlier runs of other sizes (``_line_at``); with a single run,
    proportional above the imports (``BASE_GB``; an upper bound on time, fixed costs scaled too).
    CPU time is the steadier figure when other work shares the machine."""
    print(f"\nextrapolated to {FULL_SEGMENTS} segments ({FULL_NINTS} integrations):")
    print("| stage | wall (s) | CPU (s) | peak RSS (GB) | from |")
    print("|---|---|---|---|---|")
    tot = cpu_tot = peak = 0.0
    for r in rows:
        s = r["stage"]
        pts = [(nints, r["wall_s"], r["cpu_s"], r["peak_rss_gb"])]
        for o in others:
            pts += [(o["nints"], x["wall_s"], x["cpu_s"], x["peak_rss_gb"]) for x in o["stages"] if x["stage"] == s]
        n = [p[0] for p in pts]
        if s == 1:
            w = max(p[1] / p[0] for p in pts) * FULL_NINTS
            c = max(p[2] / p[0] for p in pts) * FULL_NINTS
            mem, how = max(p[3] for p in pts), "per integration x 1779 (slowest run); memory one segment's"
        elif len(set(n)) >= 2:
            w, sw = _line_at(n, [p[1] for p in pts], FULL_NINTS)
            c, sc = _line_at(n, [p[2] for p in pts], FULL_NINTS)
            mem, sm = _line_at(n, [p[3] for p in pts], FULL_NINTS)
            if s == 4:
                mem = max(p[3] for p in pts)
            how = (f"line through {len(pts)} runs ({', '.join(str(int(x)) for x in n)} integrations): "
                   f"{sc:.3f} CPU s and {1e3 * sm:.2f} MB per integration")
        else:
            f_int = FULL_NINTS / nints
            w, c = r["wall_s"] * f_int, r["cpu_s"] * f_int
            mem = BASE_GB + (r["peak_rss_gb"] - BASE_GB) * (f_int if s in (2, 3) else 1.0)
            how = "one run, proportional (upper bound)"
        tot += w
        cpu_tot += c
        peak = max(peak, mem)
        print(f"| {s} | {w:.0f} | {c:.0f} | {mem:.2f} | {how} |")
    print(f"| total | {tot:.0f} ({tot / 60:.1f} min) | {cpu_tot:.0f} | max {peak:.2f} | targets: < {TARGET_GB} GB "
          f"per stage, < {TARGET_S / 60:.0f} min |")


def report(workdir: Path):
    """Re-print the extrapolation from the stored summaries (no new measurement)."""
    s = json.loads((workdir / "bench_summary.json").read_text())
    extrapolate(s["stages"], s["segments"], s["nints"], _other_runs(workdir, s["segments"]))


if __name__ == "__main__":
    main()
