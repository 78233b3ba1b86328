"""A noiseless LRS rate-level scene with flagged hot pixels on the trace, for checks of the bad-pixel
repair and of the extraction of repaired pixels (tests/test_extraction.py,
scripts/measure_repaired_pixels.py)."""

from __future__ import annotations

import dataclasses

import numpy as np

from ..datamodel import DQ
from ..reference.specwcs import trace_x_center
from .lrs import LRSSimConfig, simulate_lrs_rateints

__all__ = ["noiseless_hot_pixels"]


def noiseless_hot_pixels(nints=6, seed=11, rows=(233, 344, 250, 300, 330, 370), excess=500.0):
    """Noiseless rateints (no Poisson, read noise, cosmic rays, EMI) with hot pixels on the trace.

    The ERR / VAR_POISSON / VAR_RNOISE are those of the same simulation with noise on (same model, seed
    and effects), as a ramp fit reports them for noiseless ramps.  Each of ``rows`` gets ``excess`` DN/s
    added at its nominal trace-centre column (:func:`tsoreduce.reference.trace_x_center`, rounded) in
    every integration, flagged HOT.

    Parameters
    ----------
    nints : int
        Integrations to simulate.
    seed : int
        Random seed of the simulation (also of the noisy twin that provides the errors).
    rows : sequence of int
        0-based subarray rows of the hot pixels, one hot pixel per row.
    excess : float
        Rate added to each hot pixel, DN/s.

    Returns
    -------
    rates : RateData
        ``(nints, 416, 72)`` rateints with the hot pixels added and flagged HOT.
    truth : LRSTruth
        The simulation's truth.
    rows, cols : numpy.ndarray
        int, the hot pixels' rows and columns.
    """
    cfg = LRSSimConfig(nints=nints, seed=seed, poisson=False, read_noise=False, cosmic_rays=False, emi=False)
    rates, truth = simulate_lrs_rateints(cfg)
    noisy, _ = simulate_lrs_rateints(dataclasses.replace(cfg, poisson=True, read_noise=True))
    rows = np.asarray(rows)
    cols = np.round(trace_x_center(rows)).astype(int)
    data, dq = rates.data.copy(), rates.dq.copy()
    data[:, rows, cols] += excess
    dq[:, rows, cols] |= np.uint32(DQ.HOT)
    return (rates.replace(data=data, dq=dq, err=noisy.err, var_poisson=noisy.var_poisson,
                          var_rnoise=noisy.var_rnoise), truth, rows, cols)
