"""Benchmark of Stage 4 on the real WASP-43b MIRI LRS phase curve (14 channels, 5-12 um).

Times the spectroscopic fits (least squares + emcee with >= 20,000 samples per channel, orbit fixed at
the white-light values) on 2 worker processes, and compares in the same run the log-probability
throughput of

* the naive baseline: one walker at a time, numpy model on every integration (``LogPosterior.single``),
* the production path: all walkers at once (emcee ``vectorize=True``), batman only on the transit /
  eclipse windows, fused numba likelihood kernel (``LogPosterior.__call__``).

    python benchmarks/bench_stage4.py [--steps 700] [--walkers 32] [--channels 14] [--processes 2]
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np

from tsoreduce.io import read_lightcurves
from tsoreduce.lightcurve import LogPosterior, build_model, fit_channels, fit_white, validate_config
from tsoreduce.lightcurve.stage import _channel_specs, _valid_points

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "wasp43b_miri_lrs" / \
    "wasp43b_miri_lrs_lightcurves.h5"

CFG = {
    "model": "phasecurve", "systematics": {"ramp": "single", "polynomial_order": 1, "decorrelate": [],
                                           "noise": "err_mult"},
    "clip_sigma": 5.0,
    "parameters": {
        "t0": {"value": 59914.6208, "prior": "uniform", "bounds": [59914.60, 59914.64]},
        "per": 0.813473978,
        "rp_rs": {"value": 0.157, "prior": "uniform", "bounds": [0.05, 0.30]},
        "a_rs": {"value": 4.85, "prior": "uniform", "bounds": [3.0, 8.0]},
        "inc": {"value": 82.1, "prior": "uniform", "bounds": [70.0, 90.0]},
        "fp": {"value": 0.0055, "prior": "uniform", "bounds": [0.0, 0.02]},
        "pc_amp1": {"value": 0.002, "prior": "uniform", "bounds": [0.0, 0.01]},
        "pc_offset1": {"value": 10.0, "prior": "uniform", "bounds": [-60.0, 60.0]}},
    "fitter": {"method": "emcee", "nwalkers": 32, "nsteps": 700, "burn_in": 300, "seed": 43},
}


def throughput(lc, cfg, white, nwalk, repeats):
    """log-prob evaluations per second: naive per-walker numpy vs vectorised fused kernel (channel 0)."""
    c = 0
    ok = _valid_points(lc, lc.flux[c], lc.err[c], [], cfg["exclude_first"])
    naive_model = build_model(lc.time[ok], cfg, {}, t_start=lc.time[0])
    params = _channel_specs(naive_model, cfg, lc.flux[c][ok], white)
    fast_model = build_model(lc.time[ok], cfg, {}, t_start=lc.time[0])
    fast_model.freeze_orbit(params.as_dict(), params["rp_rs"].upper())
    naive = LogPosterior(naive_model, params, lc.flux[c][ok], lc.err[c][ok])
    fast = LogPosterior(fast_model, params, lc.flux[c][ok], lc.err[c][ok])
    rng = np.random.default_rng(0)
    x0 = params.start()
    lo, hi = params.bounds()
    theta = x0 + 1e-4 * (hi - lo) * rng.standard_normal((nwalk, x0.size))
    fast(theta), naive.single(theta[0])  # warm-up: numba compilation, batman models
    t = time.perf_counter()
    for _ in range(repeats):
        a = np.array([naive.single(th) for th in theta])
    t_naive = (time.perf_counter() - t) / (repeats * nwalk)
    t = time.perf_counter()
    for _ in range(repeats):
        b = fast(theta)
    t_fast = (time.perf_counter() - t) / (repeats * nwalk)
    assert np.allclose(a, b, rtol=1e-9, atol=1e-6), "vectorised and naive log-probabilities differ"
    return 1.0 / t_naive, 1.0 / t_fast, fast_model.time.size


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=700)
    ap.add_argument("--burn", type=int, default=300)
    ap.add_argument("--walkers", type=int, default=32)
    ap.add_argument("--channels", type=int, default=14)
    ap.add_argument("--processes", type=int, default=2)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if not DATA.exists():
        raise SystemExit(f"WASP-43b light curves not found at {DATA}")
    cfg = dict(CFG)
    cfg["fitter"] = dict(CFG["fitter"], nsteps=args.steps, burn_in=args.burn, nwalkers=args.walkers)
    cfg = validate_config(cfg)
    lc = read_lightcurves(DATA)
    t = time.perf_counter()
    white = fit_white(lc, dict(cfg, fitter=dict(cfg["fitter"], method="lsq")))
    print(f"white light curve least squares: {time.perf_counter() - t:.1f} s "
          f"(t0 {white.median['t0']:.5f}, a/Rs {white.median['a_rs']:.3f}, inc {white.median['inc']:.2f})")

    r_naive, r_fast, npts = throughput(lc, cfg, white, args.walkers, repeats=5)
    print(f"log-probability throughput, channel 0 ({npts} integrations, 1 process):")
    print(f"  naive (one walker at a time, numpy, batman on all points): {r_naive:8.0f} evaluations/s")
    print(f"  vectorised (walkers at once, windowed batman, numba kernel): {r_fast:8.0f} evaluations/s")
    print(f"  ratio vectorised / naive: {r_fast / r_naive:.1f}x")

    chans = list(range(min(args.channels, lc.nchan)))
    t = time.perf_counter()
    res = fit_channels(lc, cfg, white, channels=chans, n_processes=args.processes)
    wall = time.perf_counter() - t
    nsamp = args.walkers * args.steps
    print(f"\n{len(chans)} channels, emcee {args.walkers} walkers x {args.steps} steps = {nsamp} samples per "
          f"channel (burn-in {args.burn}), {args.processes} processes:")
    print(" channel  wavelength  time (s)  logprob evals  evals/s  acceptance  max tau")
    for r in res:
        print(f"  {r.label[-2:]:>6}  {r.wavelength:8.2f}  {r.runtime_s:8.1f}  {r.n_logprob:13d}  "
              f"{r.n_logprob / r.runtime_s:7.0f}  {r.acceptance:10.2f}  {np.nanmax(r.tau):7.1f}")
    tot = sum(r.n_logprob for r in res)
    print(f"total wall time {wall:.1f} s for {len(chans)} channels (target < 120 s); "
          f"{tot / wall:.0f} log-prob evaluations/s over {args.processes} processes")
    print(f"naive baseline estimate for the same evaluations on {args.processes} processes: "
          f"{tot / r_naive / args.processes:.0f} s")


if __name__ == "__main__":
    main()
