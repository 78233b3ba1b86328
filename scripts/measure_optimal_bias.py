#!/usr/bin/env python
"""Optimal-extraction bias at low and high S/N on the LRS simulator (issue 13 part 2).

For each seed, ``simulate_lrs_rateints(LRSSimConfig(nints=N, seed=s))`` goes through Stage 2 (PCA
skipped) and the trace fit; on the same calints the flux summed over the 11-12 um rows and all
integrations is extracted with a 21-px box and with optimal extraction at several aperture
half-widths.  Printed: optimal / box-21 (same data, so the noise realisation cancels to first order)
and optimal / truth (the simulator's noiseless star flux of those rows, all columns).

    python scripts/measure_optimal_bias.py --nints 10 --seeds 1 2 3 4
    python scripts/measure_optimal_bias.py --nints 120 --seeds 1
    python scripts/measure_optimal_bias.py --nints 10 --seeds 1 2 3 4 --peak-rate 300
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nints", type=int, default=10)
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    p.add_argument("--halfwidths", type=float, nargs="+", default=[4.0, 6.0, 10.0])
    p.add_argument("--band", type=float, nargs=2, default=[11.0, 12.0])
    p.add_argument("--peak-rate", type=float, default=None,
                   help="LRSSimConfig.peak_rate_dn_s (default the simulator's 2000 DN/s; lower = fainter)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    sys.path.insert(0, str(Path.cwd()))
    from tsoreduce.extraction import box_extract, find_trace, optimal_extract
    from tsoreduce.simulate import LRSSimConfig, simulate_lrs_rateints
    from tsoreduce.spectroscopic import run_stage2

    ratios_box = {h: [] for h in args.halfwidths}
    ratios_true = {h: [] for h in args.halfwidths}
    box_true = []
    for seed in args.seeds:
        kw = {} if args.peak_rate is None else {"peak_rate_dn_s": args.peak_rate}
        rates, truth = simulate_lrs_rateints(LRSSimConfig(nints=args.nints, seed=seed, **kw))
        cal, diag = (s2res := run_stage2(rates, {"pca": {"skip": True}})).product, s2res.diagnostics
        deep = diag["deep_frame"]
        trace, _ = find_trace(deep)
        lam = truth.wavelength
        rows = np.flatnonzero((lam >= args.band[0]) & (lam <= args.band[1]))
        true = float(truth.rate_star[:, rows].sum())
        fb = float(box_extract(cal, trace, 21.0)[0][:, rows].sum())
        box_true.append(fb / true)
        for h in args.halfwidths:
            fo = float(np.nansum(optimal_extract(cal, deep, trace, aperture_halfwidth=h)[0][:, rows]))
            ratios_box[h].append(fo / fb)
            ratios_true[h].append(fo / true)
    print(f"{args.nints} integrations, seeds {args.seeds}, rows {rows[0]}-{rows[-1]} "
          f"({args.band[0]}-{args.band[1]} um); box-21 / truth = {np.mean(box_true):.4f}")
    for h in args.halfwidths:
        rb, rt = np.asarray(ratios_box[h]), np.asarray(ratios_true[h])
        print(f"  optimal half-width {h:4.1f}: / box-21 = {rb.mean():.4f} +- {rb.std(ddof=1) / np.sqrt(rb.size) if rb.size > 1 else np.nan:.4f}"
              f" (per seed {np.array2string(rb, precision=4)}), / truth = {rt.mean():.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
