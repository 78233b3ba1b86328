"""Benchmark: Stage 1 jump detection + ramp fitting against STScI stcal and a numpy memory floor.

Data: linear ramps (416 x 72 SLITLESSPRISM frames, a Gaussian trace on a faint background) with
Gaussian Poisson-like and read noise and injected cosmic rays, made directly with numpy (the full
simulator is slower).  Everything runs in this process on the same arrays:

* ours   -- ``detect_jumps_and_fit`` (up-the-ramp jumps fused with the GLS ramp fit, one pass; numba,
            pre-allocated outputs, warmed up), flagging GROUPDQ in place as ``detector.run`` does (the
            flags are reset to the DQ-init state before each repeat, outside the timed region); the
            per-pixel reference signal is included in the time; the time-domain jump detector is
            timed too and reported separately;
* stcal  -- ``stcal.jump.jump.detect_jumps_data`` (two-point difference, 4 sigma, no neighbours,
            sigma-clip mode off) + ``stcal.ramp_fitting.ramp_fit.ramp_fit_data`` (OLS_C, optimal
            weighting, one process) -- install with ``pip install stcal`` (benchmark only);
* floor  -- ``np.sum(data, axis=1, out=...)``: one pass over the ramp array.

Printed: times, slope accuracy (bias and rms of rate/true - 1 on bright pixels) and cosmic-ray recall
/ false positives for ours and stcal.  The LAST line is exactly
``speedup_vs_stcal=<x> fraction_of_floor=<y>`` with fraction_of_floor = our time / floor time.

Usage::

    python benchmarks/bench_stage1.py            # 200 integrations x 50 groups x 416 x 72
    python benchmarks/bench_stage1.py --quick    # 20 x 20, well under a minute
    python benchmarks/bench_stage1.py --nints 100 --ngroups 30
    python benchmarks/bench_stage1.py --memory    # peak RSS of run_stage1_files on one 200 x 100 segment
    python benchmarks/bench_stage1.py --memory --nints 1779 --segments 9   # a full-size 9-segment TSO

``--memory`` writes synthetic flight-like uncal segments (uint16 SCI, ``--nints`` integrations, default
200, x 100 groups, split into ``--segments`` files) to a temporary directory and runs the full Stage 1
(default config: each segment is processed in chunks of integrations sized by
``stage1.memory.limit_gb``) on them in a child process under ``/usr/bin/time -v``; it prints the maximum
resident set size of ``pipeline.run_stage1_files`` (each segment read in chunks and written, nothing
kept).  The full-size
run needs 16 GB of disk in /tmp and ~10 minutes.
"""

from __future__ import annotations

import argparse
import logging
import time

import numpy as np

from tsoreduce.datamodel import DQ, RampData
from tsoreduce.detector import (detect_jumps_and_fit, detect_jumps_time_domain, fit_ramps,
                                poisson_signal_per_group)
from tsoreduce import reference as ref
from tsoreduce import instrument

TG, GAIN, RN = instrument.TFRAME, instrument.GAIN, instrument.READ_NOISE_DN
CR_PER_PIXEL_GROUP = 1e-4
DETECTABLE_SIGMA = 6.0


def make_data(nints, ngroups, seed=0):
    """Ramps (float32 DN), true rates (DN/s) and cosmic rays (i, g, y, x, amplitude)."""
    rng = np.random.default_rng(seed)
    ny, nx = instrument.SUBARRAY_SHAPE
    xc = ref.trace_x_center(np.arange(ny))
    rate = 5.0 + 3000.0 * np.exp(-0.5 * ((np.arange(nx)[None] - xc[:, None]) / 1.5) ** 2)
    rate = rate.astype(np.float32)
    data = np.empty((nints, ngroups, ny, nx), np.float32)
    step = (rate * TG).astype(np.float32)
    sig_p = np.sqrt(rate * TG / GAIN).astype(np.float32)
    g = np.arange(1, ngroups + 1, dtype=np.float32)[:, None, None]
    for i in range(nints):
        inc = rng.standard_normal((ngroups, ny, nx), dtype=np.float32) * sig_p + step
        np.cumsum(inc, axis=0, out=data[i])
        data[i] += 12000.0
        data[i] += rng.standard_normal((ngroups, ny, nx), dtype=np.float32) * np.float32(RN)
    del g
    ncr = int(CR_PER_PIXEL_GROUP * data.size)
    ci = rng.integers(0, nints, ncr)
    cg = rng.integers(1, ngroups, ncr)
    cy = rng.integers(0, ny, ncr)
    cx = rng.integers(0, nx, ncr)
    amp = np.exp(rng.uniform(np.log(20), np.log(3000), ncr)).astype(np.float32)
    for i, gg, y, x, a in zip(ci, cg, cy, cx, amp):
        data[i, gg:, y, x] += a
    return data, rate, (ci, cg, cy, cx, amp)


def score(gdq, rates, true_rate, crs, jump_bit=int(DQ.JUMP_DET)):
    ci, cg, cy, cx, amp = crs
    jump = (gdq & jump_bit) != 0
    truth = np.zeros(jump.shape, bool)
    truth[ci, cg, cy, cx] = True
    sig = np.sqrt(2 * RN**2 + true_rate * TG / GAIN)
    usable = (cg >= 2) & (cg <= gdq.shape[1] - 2)          # group 0 and the last group are DO_NOT_USE
    det = usable & (amp > DETECTABLE_SIGMA * sig[cy, cx])
    recall = float(jump[ci[det], cg[det], cy[det], cx[det]].mean())
    tested = jump[:, 2:-1]
    fp = float(np.count_nonzero(tested & ~truth[:, 2:-1]) / tested.size)
    bright = true_rate > 500
    rel = rates[:, bright] / true_rate[bright] - 1
    ok = np.isfinite(rel)
    return dict(recall=recall, fp=fp, n_detectable=int(det.sum()), bias=float(np.mean(rel[ok])),
                rms=float(np.std(rel[ok])))


def base_gdq(shape):
    gdq = np.zeros(shape, np.uint32)
    gdq[:, 0] = DQ.DO_NOT_USE
    gdq[:, -1] = DQ.DO_NOT_USE
    return gdq


def run_ours(ramp, bufs, method="up_the_ramp"):
    """Jumps + ramp fit on ``ramp``, flagging its GROUPDQ in place (``bufs["gdq"] is ramp.groupdq``
    in the timed runs, as in ``detector.run``)."""
    s_ref = poisson_signal_per_group(ramp)
    if method == "up_the_ramp":
        flagged, rates = detect_jumps_and_fit(ramp, threshold=4.0, read_noise=RN, gain=GAIN,
                                              signal_per_group=s_ref, out=bufs)
        return rates, flagged
    else:
        flagged = detect_jumps_time_domain(ramp, threshold=5.0, read_noise=RN, gain=GAIN, out=bufs["gdq"])
    return fit_ramps(flagged, read_noise=RN, gain=GAIN, signal_per_group=s_ref, out=bufs), flagged


def run_stcal(data, gdq32):
    from stcal.jump.jump import detect_jumps_data
    from stcal.jump.jump_class import JumpData
    from stcal.ramp_fitting.ramp_fit import ramp_fit_data
    from stcal.ramp_fitting.ramp_fit_class import RampData as StRampData

    ny, nx = data.shape[2:]
    flags = {"GOOD": 0, "DO_NOT_USE": 1, "SATURATED": 2, "JUMP_DET": 4, "NO_GAIN_VALUE": 524288,
             "UNRELIABLE_SLOPE": 16777216, "PERSISTENCE": 32, "CHARGELOSS": 128,
             "REFERENCE_PIXEL": 2147483648}
    gain2d = np.full((ny, nx), GAIN, np.float32)
    # stcal's READNOISE is the noise of a read difference (CDS), in DN
    rn_cds = np.full((ny, nx), RN * np.sqrt(2.0), np.float32)
    t0 = time.perf_counter()
    jd = JumpData(gain2d=gain2d, rnoise2d=rn_cds, dqflags=flags)
    jd.nframes = 1
    jd.dt_group = np.ones(1)
    jd.n_reads_groupdiff = np.ones(1) * 2
    jd.set_detection_settings(4.0, 6.0, 5.0, 1000.0, 10.0, False)
    jd.minimum_sigclip_groups = 10**9          # two-point mode, as exoTEDRF runs it
    jd.max_cores = "none"
    jd.init_arrays_from_arrays(data, gdq32.astype(np.uint8), np.zeros((ny, nx), np.uint32))
    gdq_out, _, ncr, _ = detect_jumps_data(jd)
    t_jump = time.perf_counter() - t0
    t0 = time.perf_counter()
    rd = StRampData()
    rd.set_arrays(data, gdq_out.astype(np.uint8), np.zeros((ny, nx), np.uint32), np.zeros((ny, nx), np.float32))
    rd.set_meta(name="MIRI", frame_time=TG, group_time=TG, groupgap=0, nframes=1, drop_frames1=None)
    rd.set_dqflags(flags)
    _, integ_info, _ = ramp_fit_data(rd, False, rn_cds.copy(), gain2d, "OLS_C", "optimal", "none")
    t_fit = time.perf_counter() - t0
    return t_jump, t_fit, np.asarray(gdq_out), np.asarray(integ_info["slope"])


def write_uint16_uncal(path, sci, meta: dict, times):
    """Write ``sci`` (uint16, as flight data) as an uncal file: the primary and SCI headers are the
    ones ``write_uncal`` gives ``meta`` (it writes float32 SCI itself), then zero PIXELDQ / GROUPDQ
    and ``times`` as INT_TIMES.  ``meta`` holds NINTS, NGROUPS, INTSTART and INTEND."""
    from astropy.io import fits
    from tsoreduce.io import write_uncal
    from tsoreduce.io.fits_products import _int_times_hdu

    ngroups, ny, nx = sci.shape[1:]
    tmp = path.with_suffix(".template.fits")
    write_uncal(tmp, RampData(np.zeros((1, ngroups, ny, nx), np.float32), meta=meta), overwrite=True)
    with fits.open(tmp) as h:
        phdr, shdr = h[0].header.copy(), h["SCI"].header.copy()
    tmp.unlink()
    for key in ("NINTS", "NGROUPS", "INTSTART", "INTEND"):  # the template holds one integration
        phdr[key] = meta[key]
    fits.HDUList([fits.PrimaryHDU(header=phdr), fits.ImageHDU(sci, shdr, name="SCI"),
                  fits.ImageHDU(np.zeros((ny, nx), np.uint32), name="PIXELDQ"),
                  fits.ImageHDU(np.zeros(sci.shape, np.uint8), name="GROUPDQ"),
                  _int_times_hdu(times)]).writeto(path, overwrite=True)
    return path


def write_flight_like_uncal(path, nints, ngroups, intstart=1, total_nints=None, seed=1):
    """A synthetic uncal segment with uint16 SCI (as flight data) and the SLITLESSPRISM headers;
    ``intstart`` (1-based) and ``total_nints`` place it in a multi-segment exposure."""
    from tsoreduce.datamodel import IntTimes

    total = nints if total_nints is None else total_nints
    intend = intstart + nints - 1
    meta = {
        "INSTRUME": "MIRI", "EXP_TYPE": "MIR_LRS-SLITLESS", "SUBARRAY": "SLITLESSPRISM", "READPATT": "FAST",
        "NGROUPS": ngroups, "NINTS": total, "INTSTART": intstart, "INTEND": intend, "TFRAME": TG,
        "TGROUP": TG, "SUBSTRT1": instrument.SUBSTRT1, "SUBSTRT2": instrument.SUBSTRT2, "SUBSIZE1": 72, "SUBSIZE2": 416}
    rng = np.random.default_rng(seed)
    xc = ref.trace_x_center(np.arange(416))
    rate = 5.0 + 3000.0 * np.exp(-0.5 * ((np.arange(72)[None] - xc[:, None]) / 1.5) ** 2)
    sci = np.empty((nints, ngroups, 416, 72), np.uint16)
    g = np.arange(1, ngroups + 1)[:, None, None]
    for i in range(nints):
        ramp = 12000 + rate * TG * g + rng.normal(0, RN, (ngroups, 416, 72))
        sci[i] = np.clip(np.round(ramp), 0, 65535)
    tint = (ngroups + 1) * TG / 86400
    t = 60000 + np.arange(intstart - 1, intend) * tint
    times = IntTimes(np.arange(intstart, intend + 1), t, t + tint / 2, t + tint)
    return write_uint16_uncal(path, sci, meta, times)


def _peak_rss(code):
    """Run ``code`` in a child Python under /usr/bin/time -v; (stdout, peak RSS in GB)."""
    import re
    import subprocess
    import sys

    cmd = ["/usr/bin/time", "-v", sys.executable, "-c", code]
    print("command: /usr/bin/time -v python -c \"" + code + "\"")
    res = subprocess.run(cmd, capture_output=True, text=True)
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", res.stderr)
    if res.returncode != 0 or m is None:
        print(res.stderr[-3000:])
        raise SystemExit("memory run failed")
    return res.stdout.strip(), int(m.group(1)) / 1e6


def memory_run(nints, ngroups, nsegments=1):
    """Peak RSS of Stage 1 on ``nints`` integrations split into ``nsegments`` uncal files, through
    ``pipeline.run_stage1_files`` (each segment read in chunks and written, nothing kept)."""
    import tempfile
    from pathlib import Path

    sizes = [nints // nsegments + (1 if k < nints % nsegments else 0) for k in range(nsegments)]
    with tempfile.TemporaryDirectory(dir="/tmp") as d:
        paths, start = [], 1
        t0 = time.perf_counter()
        for k, n in enumerate(sizes):
            path = Path(d) / f"jw_bench_seg{k + 1:03d}_uncal.fits"
            write_flight_like_uncal(path, n, ngroups, intstart=start, total_nints=nints, seed=k + 1)
            paths.append(str(path))
            start += n
        gb = sum(Path(p).stat().st_size for p in paths) / 1e9
        print(f"wrote {nsegments} uncal segment(s), {nints} integrations x {ngroups} groups x 416 x 72 uint16 "
              f"({gb:.2f} GB) in {time.perf_counter() - t0:.0f} s")
        code = ("import time; from tsoreduce.pipeline import run_stage1_files; t=time.perf_counter(); "
                f"r = run_stage1_files({paths!r}, None, {d + '/out'!r}, progress=False); "
                "print('stage1 seconds', round(time.perf_counter()-t, 1), len(r), 'rateints written')")
        out, peak = _peak_rss(code)
        print(out)
        print(f"peak RSS, pipeline.run_stage1_files (each segment written, nothing kept): {peak:.2f} GB")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="20 integrations x 20 groups")
    p.add_argument("--nints", type=int, default=200)
    p.add_argument("--ngroups", type=int, default=50)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--skip-stcal", action="store_true")
    p.add_argument("--memory", action="store_true", help="peak memory of Stage 1 on uncal segment files")
    p.add_argument("--segments", type=int, default=1, help="with --memory: split --nints into this many files")
    a = p.parse_args(argv)
    if a.memory:
        memory_run(a.nints, a.ngroups if a.ngroups != 50 else 100, a.segments)
        return
    logging.basicConfig(level=logging.WARNING)
    nints, ngroups = (20, 20) if a.quick else (a.nints, a.ngroups)

    import numba
    print(f"bench_stage1: {nints} integrations x {ngroups} groups x 416 x 72 "
          f"({nints * ngroups * 416 * 72 * 4 / 1e9:.2f} GB float32), numba threads {numba.get_num_threads()}")
    t0 = time.perf_counter()
    data, true_rate, crs = make_data(nints, ngroups)
    print(f"data generated in {time.perf_counter() - t0:.1f} s; {crs[0].size} cosmic rays injected")
    gdq0 = base_gdq(data.shape)
    ramp = RampData(data, gdq0, meta={"TGROUP": TG})

    # warm-up (numba compile / cache load) on a small slice, then pre-allocated full-size buffers
    small = ramp.select_integrations(slice(0, 5))
    run_ours(small, {"gdq": np.empty_like(small.groupdq)})
    run_ours(small, {"gdq": np.empty_like(small.groupdq)}, method="time_domain")
    shape3 = (nints,) + data.shape[2:]
    work = RampData(data, gdq0.copy(), meta={"TGROUP": TG})   # GROUPDQ flagged in place
    bufs = {"gdq": work.groupdq, "rate": np.empty(shape3, np.float32), "err": np.empty(shape3, np.float32),
            "var_poisson": np.empty(shape3, np.float32), "var_rnoise": np.empty(shape3, np.float32),
            "dq": np.empty(shape3, np.uint32)}
    for key, b in bufs.items():
        if key != "gdq":
            b.fill(0)                                    # first touch outside the timed region
    floor_out = np.zeros((nints,) + data.shape[2:], np.float32)

    def reset_flags():
        np.copyto(work.groupdq, gdq0)

    def best(fn, n, setup=None):
        times = []
        for _ in range(n):
            if setup is not None:
                setup()
            t = time.perf_counter()
            res = fn()
            times.append(time.perf_counter() - t)
        return min(times), res

    t_floor, _ = best(lambda: np.sum(data, axis=1, out=floor_out), a.repeat)
    t_ours, (rates, flagged) = best(lambda: run_ours(work, bufs), a.repeat, reset_flags)
    ours = score(flagged.groupdq, rates.data, true_rate, crs)
    t_td, (rates_td, flagged_td) = best(lambda: run_ours(work, bufs, "time_domain"), max(1, a.repeat - 3),
                                        reset_flags)
    ours_td = score(flagged_td.groupdq, rates_td.data, true_rate, crs)

    print(f"numpy floor (sum over groups)         {t_floor:8.3f} s")
    print(f"ours: up-the-ramp jumps + ramp fit     {t_ours:8.3f} s  ({t_ours / t_floor:.2f} x floor)")
    print(f"ours: time-domain jumps + ramp fit     {t_td:8.3f} s  ({t_td / t_floor:.2f} x floor)")
    fmt = "  {name:28s} recall {recall:.4f} of {n_detectable} (> {s:.0f} sigma)  FP {fp:.2e}  " \
          "rate bias {bias:+.2e}  rms {rms:.3e}"
    print(fmt.format(name="ours (up the ramp)", s=DETECTABLE_SIGMA, **ours))
    print(fmt.format(name="ours (time domain)", s=DETECTABLE_SIGMA, **ours_td))

    speedup = float("nan")
    if a.skip_stcal:
        print("stcal: skipped (--skip-stcal)")
    else:
        try:
            import stcal
        except ImportError:
            print("stcal is NOT installed: no stcal comparison (pip install stcal, benchmark only)")
        else:
            logging.getLogger("stcal").setLevel(logging.WARNING)
            t_j, t_f, gdq_st, rate_st = run_stcal(data, gdq0)
            st = score(gdq_st, rate_st, true_rate, crs)
            t_st = t_j + t_f
            speedup = t_st / t_ours
            print(f"stcal {stcal.__version__}: jump {t_j:.3f} s + ramp fit (OLS_C) {t_f:.3f} s = {t_st:.3f} s")
            print(fmt.format(name="stcal", s=DETECTABLE_SIGMA, **st))
            print(f"speed-up of ours vs stcal: {speedup:.1f} x (jump {t_j / t_ours:.1f} x of our total)")
    print(f"speedup_vs_stcal={speedup:.2f} fraction_of_floor={t_ours / t_floor:.2f}")


if __name__ == "__main__":
    main()
