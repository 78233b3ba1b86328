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
import logging
import sys
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=11)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    sys.path.insert(0, str(Path.cwd()))
    from tsoreduce.extraction import box_extract, find_trace, optimal_extract
    from tsoreduce.simulate.hot_pixels import noiseless_hot_pixels
    from tsoreduce.spectroscopic import run_stage2

    rates, truth, rows, cols = noiseless_hot_pixels(seed=args.seed)
    cal, diag = (s2res := run_stage2(rates, {"pca": {"skip": True}})).product, s2res.diagnostics
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
