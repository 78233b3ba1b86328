#!/usr/bin/env python
"""Per-row flux of a noiseless simulation with hot pixels on the trace (issue 13 part 5).

``simulate_lrs_rateints`` with no Poisson noise, read noise, cosmic rays or EMI (seed 11), carrying the
ERR of the same simulation with noise on (as Stage 1 reports for noiseless ramps: read noise + Poisson
model); hot pixels
(+500 DN/s, flagged HOT as a CRDS bad-pixel mask would) are put on the trace centre column at
the rows given (default: rows 233 (10.2 um) and 344 (7.2 um) of the issue and four more between 5 and
10.5 um).  Stage 2 (PCA skipped) replaces them (FLUX_ESTIMATED); Stage 3 extracts with a 21-px box and
with optimal extraction (half-width 6).  Printed: extracted / true star flux (all columns) for the hot
rows, and the worst row over 5-10.5 um, for both methods.

    python scripts/measure_repaired_pixels.py
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

import numpy as np


def hot_pixel_simulation(rows=(233, 344, 250, 300, 330, 370), excess=500.0, nints=6, seed=11):
    """(calints-ready RateData with HOT pixels on the trace, truth, hot rows, hot columns)."""
    from tsoreduce import reference
    from tsoreduce.datamodel import DQ
    from tsoreduce.simulate import LRSSimConfig, simulate_lrs_rateints

    cfg = LRSSimConfig(nints=nints, seed=seed, poisson=False, read_noise=False, cosmic_rays=False, emi=False)
    rates, truth = simulate_lrs_rateints(cfg)
    # noiseless data with the ERR a ramp fit reports for them (read noise + Poisson of the noiseless
    # rates), as Stage 1 gives for a noiseless uncal: the same model, seed and effects, noise on
    noisy, _ = simulate_lrs_rateints(dataclasses.replace(cfg, poisson=True, read_noise=True))
    rates = rates.replace(err=noisy.err, var_poisson=noisy.var_poisson, var_rnoise=noisy.var_rnoise)
    rows = np.asarray(rows)
    cols = np.round(reference.trace_x_center(rows)).astype(int)
    data, dq = rates.data.copy(), rates.dq.copy()
    data[:, rows, cols] += excess
    dq[:, rows, cols] |= np.uint32(DQ.HOT)
    return rates.replace(data=data, dq=dq), truth, rows, cols


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=11)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    sys.path.insert(0, str(Path.cwd()))
    from tsoreduce.extraction import box_extract, find_trace, optimal_extract
    from tsoreduce.spectroscopic import run_stage2

    rates, truth, rows, cols = hot_pixel_simulation(seed=args.seed)
    cal, diag = run_stage2(rates, {"pca": {"skip": True}})
    deep = diag["deep_frame"]
    trace, _ = find_trace(deep)
    true = truth.rate_star.sum(axis=2).mean(axis=0)
    lam = truth.wavelength
    band = np.flatnonzero((lam >= 5.0) & (lam <= 10.5))
    for name, (f, _, dq, *_) in (("box 21 px", box_extract(cal, trace, 21.0)),
                                 ("optimal hw 6", optimal_extract(cal, deep, trace, aperture_halfwidth=6.0))):
        r = np.nanmean(f, axis=0) / true
        worst = band[np.argmax(np.abs(r[band] - 1))]
        hot = ", ".join(f"row {y} ({lam[y]:.2f} um) {r[y]:.4f} dq {int(dq[0, y])}" for y in sorted(rows))
        print(f"{name}: {hot}; worst row 5-10.5 um: {worst} ({lam[worst]:.2f} um) {r[worst]:.4f}; "
              f"rows within 1 %: {int(np.sum(np.abs(r[band] - 1) < 0.01))}/{band.size}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
