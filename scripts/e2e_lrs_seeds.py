#!/usr/bin/env python
"""Seed scan of the end-to-end LRS check (tests/test_end_to_end_lrs.py): simulator uncal ramps -> Stage 1
-> 2 -> 3 -> Stage 4 least squares, recovered vs injected 0.5-um-bin depths, for several seeds.

    python scripts/e2e_lrs_seeds.py 3 4 5 6 7                          # as the test (optimal extraction)
    python scripts/e2e_lrs_seeds.py 3 5 --map specwcs_0006 --extraction box
    python scripts/e2e_lrs_seeds.py 3 5 --clean       # nonlinearity, RSCD, cosmic rays, EMI off (same
                                                      # photon and read-noise streams)
    python scripts/e2e_lrs_seeds.py 3 --noiseless --extraction box    # the bias without noise

Prints per seed the fraction of bins within 1 sigma and the mean z^2 (the test's rules: >= 0.5 and
< 2), per bin the offset, error, z and the Stage 4 residual / ERR ratio, and over all seeds the mean and
rms z per bin.  ``--map`` sets the bundled wavelength map of both the simulated scene and Stage 2.
"""

from __future__ import annotations

import argparse
import logging

import numpy as np


def run(seed, *, extraction="optimal", noiseless=False, clean=False):
    from tsoreduce import detector, lightcurve
    from tsoreduce import simulate as sim
    from tsoreduce.extraction import run_stage3
    from tsoreduce.simulate.truth import depth_offsets
    from tsoreduce.spectroscopic import run_stage2

    kw = dict(nints=60, ngroups=30, seed=seed, settling=False, dark=False)
    if noiseless:
        kw.update(poisson=False, read_noise=False, cosmic_rays=False, emi=False)
    if clean:
        kw.update(rscd=False, nonlinearity=False, cosmic_rays=False, emi=False)
    s = sim.simulate_lrs(sim.LRSSimConfig(**kw))
    truth = s.truth
    refs = {"linearity": truth.nonlinearity_coeffs, "gain": truth.gain,
            "readnoise": truth.read_noise_dn, "saturation": truth.saturation_dn}
    rates = detector.run(s.segments[0], None, references=refs).product
    cal, diag = (s2res := run_stage2(rates)).product, s2res.diagnostics
    lc = run_stage3(cal, {"extraction": {"method": extraction}}).product.lightcurves
    T = truth.transit
    config = {"limb_darkening": {"parametrisation": "u"},
              "systematics": {"ramp": "none", "polynomial_order": 1, "decorrelate": ["trace_x"]},
              "supersample_factor": int(T["supersample"]),
              "exposure_time": float(T["exp_time_days"]) * 86400, "clip_sigma": None,
              "parameters": {"t0": T["t0"], "per": T["period"], "a_rs": T["a_rs"], "inc": T["inc"],
                             "ecc": 0.0, "w": 90.0, "u1": T["u1"], "u2": T["u2"],
                             "rp_rs": {"value": 0.12, "prior": "uniform", "bounds": [0.0, 0.3]}},
              "fitter": {"method": "lsq"}, "n_processes": 1}
    res = lightcurve.run(lc, config).product
    _, offset, err = depth_offsets(res.spectrum, truth)
    ratio = np.array([c.noise["ratio_resid"] for c in res.channels])
    return lc.wavelength, offset, err, ratio


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("seeds", type=int, nargs="+")
    ap.add_argument("--map", default=None, help="bundled wavelength map (default: the package default)")
    ap.add_argument("--extraction", default="optimal", choices=("optimal", "box"))
    ap.add_argument("--noiseless", action="store_true")
    ap.add_argument("--clean", action="store_true")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    from tsoreduce import reference
    if a.map:
        reference.DEFAULT_WAVELENGTH_MAP = a.map  # read at call time by the simulator and Stage 2
    Z = []
    for seed in a.seeds:
        w, off, err, ratio = run(seed, extraction=a.extraction, noiseless=a.noiseless, clean=a.clean)
        z = off / err
        Z.append(z)
        print(f"seed {seed}: within 1 sigma {np.mean(np.abs(z) < 1):.2f}, mean z^2 {np.mean(z**2):.2f}")
        for wi, o, e, zi, r in zip(w, off, err, z, ratio):
            print(f"  {wi:5.2f} um  {o:+8.1f} +- {e:6.1f} ppm  z {zi:+.2f}  residual/ERR {r:.2f}")
    Z = np.array(Z)
    print("mean z per bin:", np.round(Z.mean(axis=0), 2), f"(+- {1 / np.sqrt(len(Z)):.2f})")
    print("rms z per bin: ", np.round(np.sqrt((Z**2).mean(axis=0)), 2))


if __name__ == "__main__":
    main()
