"""Demo support: compare the recovered spectrum of a simulated run with the injected one.

Used by :mod:`tsoreduce.pipeline` when ``input.simulate`` is used; also callable directly.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

__all__ = ["spectrum_numbers", "compare_with_truth"]

log = logging.getLogger(__name__)

_DEPTH_COLS = ("transit_depth", "depth", "rp_rs2")
_ERR_COLS = ("transit_depth_err", "depth_err", "transit_depth_error")


def _col(table, names):
    for n in names:
        if n in table.colnames:
            return n
    return None


def spectrum_numbers(path) -> dict:
    """Key numbers of a spectrum table: number of channels, wavelength range (um), median depth and
    median 1-sigma error (ppm)."""
    from astropy.table import Table
    t = Table.read(path, format="ascii.ecsv")
    out = {"spectrum.nchannels": len(t)}
    wcol = _col(t, ("wavelength", "wave", "wavelength_um"))
    if wcol:
        w = np.asarray(t[wcol], float)
        out["spectrum.wavelength_min_um"] = float(np.nanmin(w))
        out["spectrum.wavelength_max_um"] = float(np.nanmax(w))
    d, e = _col(t, _DEPTH_COLS), _col(t, _ERR_COLS)
    if d:
        out["spectrum.median_depth_ppm"] = float(np.nanmedian(np.asarray(t[d], float)))
    if e:
        out["spectrum.median_depth_err_ppm"] = float(np.nanmedian(np.asarray(t[e], float)))
    return out


def compare_with_truth(sim_dir, stage4_dir, *, plot: bool = True) -> list[str]:
    raise NotImplementedError  # wired when the simulator's truth file format is known
