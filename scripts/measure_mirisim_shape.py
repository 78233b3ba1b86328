#!/usr/bin/env python
"""Spectral-shape agreement of tsoreduce Stages 2-3 on the MIRISim NGTS-10 rateints with an independent
reduction of the same file (issue 13 part 1).

Independent reduction: the STScI calints (jwst 2.0.1, CRDS jwst_1535, WAVELENGTH from
jwst_miri_specwcs_0009) reduced with plain numpy -- per row, the median of columns 4-20 and 54-71 as
background and the sum of columns 27-47 (21 px around the trace) as flux, averaged over the 4
integrations, wavelength = the calints WAVELENGTH at column 37.  Ours: run_stage2 + run_stage3 on the
rateints (no WAVELENGTH extension, so the bundled map ``--map`` is used), with the settings of
runs/mirisim_ngts10.yaml.  Both spectra are turned into flux densities (flux per row / |d lambda / d row|
of their own wavelength map), ours is interpolated onto the independent wavelengths, and the figure is
the median |ratio / median(ratio) - 1| over 5-12 um, per spectral element and per 0.25 um bin (flux
integrated over the bin from the cumulative flux of each spectrum; the binning averages down the
photon noise of this faint source, ~10-400 DN/s per row on a 17.8 DN/s/pixel background).

    python scripts/measure_mirisim_shape.py --map specwcs_0006    # before (the 2022 map)
    python scripts/measure_mirisim_shape.py --map specwcs_0009    # after (the current default)
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
FOLDER = REPO.parent / "shared" / "data" / "mirisim_ngts10"


def _density(w, f):
    dw = np.abs(np.gradient(w))
    return f / dw


def _binned(w, f, edges):
    """Flux inside each [edges[k], edges[k+1]] from the cumulative flux (rows as contiguous intervals)."""
    o = np.argsort(w)
    w, f = w[o], f[o]
    mid = 0.5 * (w[1:] + w[:-1])
    e = np.r_[w[0] - (mid[0] - w[0]), mid, w[-1] + (w[-1] - mid[-1])]
    cum = np.r_[0.0, np.cumsum(f)]
    return np.diff(np.interp(edges, e, cum))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--map", default="specwcs_0009", help="bundled wavelength map for the rateints run")
    p.add_argument("--method", default="box", choices=("box", "optimal"), help="Stage 3 extraction")
    p.add_argument("--folder", type=Path, default=FOLDER)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    sys.path.insert(0, str(REPO))
    from tsoreduce import io
    from tsoreduce.extraction import run_stage3
    from tsoreduce.spectroscopic import run_stage2

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rate = io.read_rateints(args.folder / "ERS_NGTS10_2022_new_drift_041_rateints.fits")
        cal = io.read_calints(args.folder / "ERS_NGTS10_2022_new_drift_041_calints.fits")
    s2 = {"wavelength": {"source": "default", "map": args.map}, "bad_pixels": {"skip_temporal": True},
          "pca": {"n_components": 3}}
    s3 = {"extraction": {"method": args.method, "box_width": 21.0}, "lightcurves": {"skip": True}}
    c2, diag = (s2res := run_stage2(rate, s2)).product, s2res.diagnostics
    spec = run_stage3(c2, s3).product.x1dints
    w_ours = spec.wavelength
    f_ours = np.nanmean(spec.data, axis=0)

    d = np.where(np.isfinite(cal.data), cal.data, np.nan).astype(float)
    bkg = np.nanmedian(np.concatenate([d[:, :, 4:21], d[:, :, 54:72]], axis=2), axis=2)
    f_ind = np.nanmean(np.nansum(d[:, :, 27:48] - bkg[:, :, None], axis=2), axis=0)
    w_ind = cal.wavelength[:, 37].astype(float)
    ok = np.isfinite(w_ind) & (w_ind > 0)
    w_ind, f_ind = w_ind[ok], f_ind[ok]

    dens_ours = _density(w_ours, f_ours)
    dens_ind = _density(w_ind, f_ind)
    o = np.argsort(w_ours)
    interp = np.interp(w_ind, w_ours[o], dens_ours[o])
    band = (w_ind >= 5) & (w_ind <= 12)
    ratio = interp[band] / dens_ind[band]
    ratio /= np.median(ratio)
    fig = float(np.median(np.abs(ratio - 1)))
    edges = np.arange(5.0, 12.0 + 1e-9, 0.25)
    rb = _binned(w_ours, f_ours, edges) / _binned(w_ind, f_ind, edges)
    rb /= np.median(rb)
    print(f"map {args.map} ({spec.meta.get('R_SPCWCS')}), {args.method} extraction, 5-12 um: median "
          f"|ratio - 1| per element ({band.sum()}) {100 * fig:.2f} %, per 0.25 um bin ({rb.size}) "
          f"{100 * np.median(np.abs(rb - 1)):.2f} % (max {100 * np.max(np.abs(rb - 1)):.2f} %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
