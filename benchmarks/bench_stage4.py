"""Benchmark of Stage 4 on real data, measured as converged samples.

1. The WASP-43b MIRI LRS phase curve (14 channels, 5-12 um): spectroscopic fits (least squares, then emcee
   run until the chain after burn-in is ``--n-tau`` (50) integrated autocorrelation times long, max tau
   over the sampled parameters, capped at ``--steps``; orbit fixed at the white-light values) on
   ``--processes`` worker processes, twice in the same run: the baseline samples every free parameter
   (``marginalise=False``), the new default samples the nonlinear parameters only, with f0, the
   polynomial and the error multiplier marginalised analytically (:mod:`tsoreduce.lightcurve.linear`).
   Reports per channel the steps, max tau, effective samples (ESS = walkers x kept steps / max tau)
   and ESS per second, and the ratios new / baseline.
   In the same run: log-probability throughput naive (one walker, numpy) vs vectorised (walkers at once,
   windowed batman, numba kernel), and ESS/s of emcee's stretch move vs the DE mixture on channel 0.
2. ``--joint``: the five-visit WASP-107b joint fit of runs/wasp107b_joint.yaml (36 free parameters, 21
   sampled with each visit's f0, polynomial and error multiplier marginalised) to convergence, walkers
   split over ``--processes``; ``--joint-baseline`` adds the fit sampling all 36 (74 walkers) for ratios.

    python benchmarks/bench_stage4.py [--n-tau 50] [--steps 20000] [--walkers 32] [--channels 14] [--processes 2]
        [--no-baseline] [--baseline-steps 6000] [--no-full-sampling]
    python benchmarks/bench_stage4.py --joint [--processes 2] [--joint-baseline]

The machine's load average is printed: other processes on the same cores slow every figure.
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
    "fitter": {"method": "emcee", "nwalkers": 32, "nsteps": 20000, "burn_in": 300, "seed": 43, "n_tau": 50},
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
    # the marginalised posterior (f0, poly1, err_mult integrated out) on the same walkers
    from tsoreduce.lightcurve.fitting import MarginalLogPosterior
    from tsoreduce.lightcurve.linear import LinearBaseline, marginal_plan
    from tsoreduce.lightcurve.parameters import ParameterSet

    lin, noise, _ = marginal_plan(fast_model, params.specs)
    base = LinearBaseline(fast_model, params.specs, lc.flux[c][ok], lc.err[c][ok], lin, noise)
    marg = set(base.names)
    sps = ParameterSet({n: (params[n].fixed_at(params[n].value) if n in marg else params[n]) for n in params.names})
    mpost = MarginalLogPosterior(fast_model, sps, lc.flux[c][ok], lc.err[c][ok], base)
    keep = [params.free_names.index(n) for n in sps.free_names]
    mpost(theta[:, keep])
    t = time.perf_counter()
    for _ in range(repeats):
        mpost(theta[:, keep])
    t_marg = (time.perf_counter() - t) / (repeats * nwalk)
    return 1.0 / t_naive, 1.0 / t_fast, fast_model.time.size, 1.0 / t_marg


def ess_rate(lc, cfg, white, moves):
    """(ESS, seconds, steps, converged) of channel 0 fitted to convergence with emcee ``moves`` (1 process)."""
    c = dict(cfg, fitter=dict(cfg["fitter"], moves=moves))
    t = time.perf_counter()
    r = fit_channels(lc, c, white, channels=[0], n_processes=1)[0]
    kept = r.chain.shape[0] - r.burn_in
    return r.ess, time.perf_counter() - t, r.chain.shape[0], kept >= cfg["fitter"]["n_tau"] * np.nanmax(r.tau)


def fit_channels_mode(lc, cfg, white, chans, processes, marginalise, walkers=0):
    """fit_channels with the marginalisation switched on or off (forked workers inherit the switch);
    ``walkers`` 0: 2 x sampled + 2 (8 sampled marginalised, 11 otherwise, in this phase-curve model)."""
    from tsoreduce.lightcurve import stage

    orig = stage._fit_args
    nw = walkers or 2 * (8 if marginalise else 11) + 2
    stage._fit_args = lambda c, channel=False: dict(orig(c, channel), marginalise=marginalise, nwalkers=nw)
    try:
        t = time.perf_counter()
        res = fit_channels(lc, cfg, white, channels=chans, n_processes=processes)
        return res, time.perf_counter() - t
    finally:
        stage._fit_args = orig


def report_channels(res, wall, args, title):
    print(f"\n{title}: {len(res)} channels, emcee {res[0].chain.shape[1]} walkers ({args.moves} moves) until "
          f"{args.n_tau:g} autocorrelation times after burn-in {args.burn}, {args.processes} processes:")
    print(" channel  wavelength  time (s)  steps  nsampled  max tau  tau kept      ESS  ESS/s  evals/s  acceptance")
    nconv = 0
    for r in res:
        steps = r.chain.shape[0]
        ntau = (steps - r.burn_in) / np.nanmax(r.tau)
        nconv += ntau >= args.n_tau
        print(f"  {r.label[-2:]:>6}  {r.wavelength:8.2f}  {r.runtime_s:8.1f}  {steps:5d}  {r.chain.shape[2]:8d}  "
              f"{np.nanmax(r.tau):7.1f}  {ntau:8.1f}  {r.ess:7.0f}  {r.ess / r.runtime_s:5.0f}  "
              f"{r.n_logprob / r.runtime_s:7.0f}  {r.acceptance:10.2f}")
    tot = sum(r.n_logprob for r in res)
    ess = sum(r.ess for r in res)
    print(f"total wall time {wall:.1f} s for {len(res)} channels ({nconv} converged); {ess / wall:.0f} effective "
          f"samples/s, {tot / wall:.0f} log-prob evaluations/s over {args.processes} processes; median max tau "
          f"{np.median([np.nanmax(r.tau) for r in res]):.0f} steps")
    return {"wall": wall, "ess": ess, "nconv": nconv, "evals": tot,
            "tau": np.median([np.nanmax(r.tau) for r in res]),
            "steps_to_converge": sum(args.burn + args.n_tau * np.nanmax(r.tau) for r in res)}


def bench_joint(processes, baseline=False):
    """The five-visit WASP-107b joint fit of runs/wasp107b_joint.yaml to convergence; with ``baseline`` also
    the same fit sampling every free parameter (no marginalisation; 2 x 36 + 2 walkers), for the ratios."""
    import os

    import yaml

    from tsoreduce.config import validate_run_config
    from tsoreduce.lightcurve import joint as J
    from tsoreduce.lightcurve.joint_products import read_visit_entries

    path = Path(__file__).resolve().parents[1] / "runs" / "wasp107b_joint.yaml"
    run = validate_run_config(yaml.safe_load(path.read_text()), path.parent)
    cfg = dict(run["stage4"], n_processes=processes)
    cfg["joint"] = dict(cfg["joint"], per_visit_fits="none")
    entries = read_visit_entries(run["input"]["lightcurve_visits"])
    print(f"load average before: {os.getloadavg()} on {os.cpu_count()} cores")
    # one joint log-posterior call (22 walkers: half the ensemble) in this process vs over the process pool
    from tsoreduce.lightcurve.stage import validate_config
    from tsoreduce.lightcurve.visits import make_visits

    c0 = validate_config(cfg)
    setup = J.JointSetup(make_visits(entries, exclude_first=c0["exclude_first"],
                                     regressors=c0["systematics"]["decorrelate"]), c0)
    t = time.perf_counter()
    x, xerr, _ = J._joint_lsq(setup)
    print(f"joint least squares (per-visit Jacobian): {time.perf_counter() - t:.2f} s")
    mp = J.JointMarginalPosterior.build(setup, x)
    si = [setup.params.free_names.index(n) for n in mp.params.free_names]
    th = x[si][None] + 0.1 * xerr[si][None] * np.random.default_rng(0).standard_normal((22, len(si)))
    mp(th)
    t = time.perf_counter()
    for _ in range(30):
        mp(th)
    r1 = 30 / (time.perf_counter() - t)
    with J.PooledPosterior(mp, processes) as pool:
        pool(th)
        t = time.perf_counter()
        for _ in range(30):
            pool(th)
        r2 = 30 / (time.perf_counter() - t)
    print(f"marginalised joint posterior, 22 walkers per call: {r1:.0f} calls/s in one process, {r2:.0f} calls/s "
          f"over {processes} processes")
    out = {}
    modes = [("NEW (marginalised)", True)] + ([("BASELINE (every parameter sampled)", False)] if baseline else [])
    for title, marg in modes:
        c = dict(cfg)
        orig = J.JointMarginalPosterior.build
        if not marg:
            nfree = 36
            c["fitter"] = dict(cfg["fitter"], nwalkers=2 * nfree + 2)
            J.JointMarginalPosterior.build = classmethod(lambda cls, *a, **k: None)
        try:
            t = time.perf_counter()
            jr = J.fit_joint(entries, c)
            wall = time.perf_counter() - t
        finally:
            J.JointMarginalPosterior.build = orig
        nw = jr.chain.shape[1]
        print(f"{title}: five-visit joint fit, {len(jr.free)} free parameters, {len(jr.sampled)} sampled, {nw} walkers, "
              f"{jr.nsteps} steps (burn-in {jr.burn_in}), max tau {np.max(jr.tau):.1f} steps, "
              f"{(jr.nsteps - jr.burn_in) / np.max(jr.tau):.1f} tau kept, converged {jr.converged}")
        print(f"  {jr.n_logprob} log-prob evaluations, wall {wall:.1f} s (least squares + clipping {wall - jr.mcmc_s:.1f} s, "
              f"emcee + draws {jr.mcmc_s:.1f} s; target < 180 s), ESS {jr.ess:.0f}, {jr.ess / wall:.1f} effective "
              f"samples/s, {processes} processes")
        print(f"  a/Rs {jr.median['a_rs']:.3f} +- {jr.err_lower['a_rs']:.3f}, inc {jr.median['inc']:.3f} +- "
              f"{jr.err_lower['inc']:.3f}, per {jr.median['per']:.7f} +- {jr.err_lower['per']:.7f}")
        out[marg] = (wall, jr.ess, np.max(jr.tau))
    if baseline:
        (w1, e1, t1), (w0, e0, t0) = out[True], out[False]
        print(f"ratios NEW / BASELINE: wall {w0 / w1:.1f}x faster, effective samples/s {(e1 / w1) / (e0 / w0):.1f}x, "
              f"max tau {t0 / t1:.1f}x shorter")
    print(f"load average after: {os.getloadavg()}")
    os.system("uptime")


def main():
    import os

    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20000, help="cap on emcee steps")
    ap.add_argument("--burn", type=int, default=200, help="burn-in steps (walkers start at the least-squares "
                    "covariance ball)")
    ap.add_argument("--n-tau", type=float, default=50.0)
    ap.add_argument("--walkers", type=int, default=0,
                    help="emcee walkers (0: 2 x sampled parameters + 2 per mode, emcee's minimum plus 2: 18 "
                         "marginalised, 24 full sampling)")
    ap.add_argument("--channels", type=int, default=14)
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--joint", action="store_true", help="benchmark the five-visit WASP-107b joint fit instead")
    ap.add_argument("--joint-baseline", action="store_true",
                    help="with --joint: also run the joint fit sampling every parameter (slow), for the ratios")
    ap.add_argument("--no-baseline", action="store_true", help="skip the stretch-vs-DE comparison on channel 0")
    ap.add_argument("--no-full-sampling", action="store_true",
                    help="skip the baseline run that samples every parameter (no marginalisation)")
    ap.add_argument("--baseline-steps", type=int, default=6000, help="cap on steps of the full-sampling baseline")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.joint:
        return bench_joint(args.processes, args.joint_baseline)
    if not DATA.exists():
        raise SystemExit(f"WASP-43b light curves not found at {DATA}")
    print(f"load average before: {os.getloadavg()} on {os.cpu_count()} cores")
    cfg = dict(CFG)
    cfg["fitter"] = dict(CFG["fitter"], nsteps=args.steps, burn_in=args.burn, nwalkers=args.walkers or 32,
                         n_tau=args.n_tau)
    cfg = validate_config(cfg)
    lc = read_lightcurves(DATA)
    t = time.perf_counter()
    white = fit_white(lc, dict(cfg, fitter=dict(cfg["fitter"], method="lsq")))
    print(f"white light curve least squares: {time.perf_counter() - t:.1f} s "
          f"(t0 {white.median['t0']:.5f}, a/Rs {white.median['a_rs']:.3f}, inc {white.median['inc']:.2f})")

    r_naive, r_fast, npts, r_marg = throughput(lc, cfg, white, args.walkers or 32, repeats=5)
    print(f"log-probability throughput, channel 0 ({npts} integrations, 1 process):")
    print(f"  naive (one walker at a time, numpy, batman on all points): {r_naive:8.0f} evaluations/s")
    print(f"  vectorised (walkers at once, windowed batman, numba kernel): {r_fast:8.0f} evaluations/s")
    print(f"  ratio vectorised / naive: {r_fast / r_naive:.1f}x")
    print(f"  marginalised (f0, poly1, err_mult integrated out, numba linear solve): {r_marg:8.0f} evaluations/s "
          f"({r_marg / r_fast:.2f}x vectorised)")
    if not args.no_baseline:
        rates = {}
        for mv in ("stretch", "de"):
            ess, sec, steps, conv = ess_rate(lc, cfg, white, mv)
            rates[mv] = ess / sec
            print(f"  channel 0 to {args.n_tau:g} tau, {mv:>7} moves: {steps} steps, converged {conv}, ESS {ess:.0f} "
                  f"in {sec:.1f} s = {ess / sec:.0f} effective samples/s")
        print(f"  ratio DE / stretch (effective samples per second): {rates['de'] / rates['stretch']:.1f}x")

    chans = list(range(min(args.channels, lc.nchan)))
    args.moves = cfg["fitter"]["moves"]
    res, wall = fit_channels_mode(lc, cfg, white, chans, args.processes, True, args.walkers)
    new = report_channels(res, wall, args, "NEW: nonlinear parameters sampled, f0 / polynomial / err_mult "
                                           "marginalised analytically")
    print(f"target: all {len(chans)} converged in < 60 s on 2 cores: {'MET' if new['nconv'] == len(chans) and wall < 60 else 'NOT MET'} "
          f"({new['nconv']} converged, {wall:.1f} s)")
    print(f"naive baseline estimate for the same evaluations on {args.processes} processes: "
          f"{new['evals'] / r_naive / args.processes:.0f} s")
    if not args.no_full_sampling:
        bcfg = dict(cfg, fitter=dict(cfg["fitter"], nsteps=args.baseline_steps))
        bres, bwall = fit_channels_mode(lc, bcfg, white, chans, args.processes, False, args.walkers)
        base = report_channels(bres, bwall, args, f"BASELINE: every free parameter sampled (cap {args.baseline_steps} "
                                                  "steps)")
        # the baseline's time to 50 tau, extrapolated at its measured cost per step
        steps_run = sum(r.chain.shape[0] for r in bres)
        t_conv = bwall * base["steps_to_converge"] / steps_run
        print(f"\nratios NEW / BASELINE: effective samples per second {(new['ess'] / new['wall']) / (base['ess'] / base['wall']):.1f}x, "
              f"median max tau {base['tau'] / new['tau']:.1f}x shorter, log-prob evaluations/s "
              f"{(new['evals'] / new['wall']) / (base['evals'] / base['wall']):.2f}x; baseline time to converge all "
              f"(extrapolated: burn-in + {args.n_tau:g} tau per channel at its cost per step) {t_conv:.0f} s vs {wall:.1f} s "
              f"= {t_conv / wall:.1f}x")
    print(f"load average after: {os.getloadavg()}")
    os.system("uptime")


if __name__ == "__main__":
    main()
