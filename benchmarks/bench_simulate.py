"""Benchmark: building the raw reads of simulated LRS integrations with the fused numba kernels
(Poisson by CDF inversion + one pass for cumulative sum, RSCD, bias, inverse linearity, read noise, EMI,
clipping) against a plain-numpy baseline doing the same physics with ``Generator.poisson`` and array
operations (the first version of the simulator).

    python benchmarks/bench_simulate.py [nints] [ngroups]

Prints both timings per integration, their ratio, and a check that both give statistically the same
ramps (mean and variance of the last-minus-first read over the trace and over the background).
"""

import sys
import time

import numpy as np
from tsoreduce import instrument
from tsoreduce.simulate import LRSSimConfig, invert_linearity_polynomial
from tsoreduce.simulate import lrs


def baseline_integration(b, i, rng):
    """The same integration in plain numpy (exact Poisson per frame from Generator.poisson)."""
    cfg, m = b.cfg, b.maps
    ng = cfg.ngroups
    per_frame = b.electrons_rate(i) * cfg.tframe
    ramp = np.cumsum(rng.poisson(per_frame, size=(ng,) + per_frame.shape), axis=0) / cfg.gain
    for h in b.hits_by_int.get(i, ()):
        ramp[int(h["group"]):, int(h["row"]), int(h["col"])] += h["amplitude_dn"]
    prev = 0.0 if i == 0 else b.electrons_rate(i - 1) / cfg.gain * ng * cfg.tframe
    ramp += b.rscd_shape[:, None, None] * (cfg.rscd_amplitude_dn + cfg.rscd_flux_fraction * prev)
    ramp += m["bias"][None]
    ramp = invert_linearity_polynomial(ramp, m["nonlinearity_coeffs"], tol_dn=1e-5)
    ramp += rng.standard_normal(ramp.shape) * m["read_noise_dn"][None]
    for f, a, cb, sb in b.emi_pix:
        ag = 2 * np.pi * f * (b.t_int[i] + b.t_group)
        ramp += a * (np.sin(ag)[:, None, None] * cb[None] + np.cos(ag)[:, None, None] * sb[None])
    ramp = np.clip(np.minimum(ramp, m["saturation_dn"][None]), 0, 65535)
    return np.rint(ramp).astype(np.float32)


def main():
    nints = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    ngroups = int(sys.argv[2]) if len(sys.argv) > 2 else 30
    cfg = LRSSimConfig(nints=nints, ngroups=ngroups)
    truth, times, maps, seqs = lrs._build_truth(cfg)
    b = lrs.det.RampBuilder(cfg, {"rate_star": truth.rate_star, "rate_background": truth.rate_background},
                            maps, truth.cosmic_rays, truth.emi, seqs["noise"], instrument.SUBARRAY_SHAPE)
    out = np.empty((ngroups,) + instrument.SUBARRAY_SHAPE, np.float32)
    b.integration(0, out)  # compile / load the numba cache, touch the buffers
    baseline_integration(b, 0, np.random.default_rng(0))

    fast = np.empty((nints,) + out.shape, np.float32)
    t0 = time.perf_counter()
    for i in range(nints):
        b.integration(i, fast[i])
    t_fast = (time.perf_counter() - t0) / nints
    slow = np.empty_like(fast)
    rng = np.random.default_rng(1)
    t0 = time.perf_counter()
    for i in range(nints):
        slow[i] = baseline_integration(b, i, rng)
    t_slow = (time.perf_counter() - t0) / nints

    print(f"{nints} integrations x {ngroups} groups x 416 x 72")
    print(f"baseline numpy   : {t_slow * 1e3:8.1f} ms per integration")
    print(f"numba kernels    : {t_fast * 1e3:8.1f} ms per integration")
    print(f"speed-up         : {t_slow / t_fast:8.2f} x")
    # noise check: scatter of the last-minus-first read about each pixel's mean over integrations
    cds_f = fast[:, -1].astype(float) - fast[:, 0]
    cds_s = slow[:, -1].astype(float) - slow[:, 0]
    trace = truth.rate_star[0] > 500
    bkg = (truth.rate_star[0] < 0.1) & (np.arange(72) >= 4)
    for name, sel in (("trace", trace), ("background", bkg)):
        rf = cds_f[:, sel] - cds_f[:, sel].mean(0)
        rs = cds_s[:, sel] - cds_s[:, sel].mean(0)
        print(f"{name:10s} last-first read: mean {cds_f[:, sel].mean():9.2f} vs "
              f"{cds_s[:, sel].mean():9.2f} DN, scatter var {rf.var():9.2f} vs {rs.var():9.2f} DN^2")

if __name__ == "__main__":
    main()
