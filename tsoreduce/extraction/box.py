"""Stage 3 step 3a: box extraction with fractional edge pixels, and the box width minimising the
white-light scatter (exoTEDRF ``do_box_extraction`` and ``extract_width='optimize'``, Radica 2024;
sources: docs/sources.md).  Integrations are processed in blocks (bounded memory)."""

from __future__ import annotations

import logging

import numpy as np
from .. import instrument
from ..datamodel import RateData
from ..spectroscopic import local_median_rows
from ._blocks import blocks, clean, element_dq
from .profile import ESTIMATED_VARIANCE_FACTOR

log = logging.getLogger(__name__)

__all__ = ["box_weights", "box_extract", "white_light_scatter", "optimize_box_width"]


def box_weights(trace, width, ncols=instrument.SUBARRAY_SHAPE[1]):
    """Aperture weights of a box around the trace.

    The fraction of each pixel [j-0.5, j+0.5] inside [trace - width/2, trace + width/2]; reference
    columns 0-3 get 0 (exoTEDRF ``do_box_extraction``, Radica 2024).

    Parameters
    ----------
    trace : array_like
        ``(nrows,)`` trace centre columns (0-based).
    width : float
        Full width of the box (px).
    ncols : int
        Number of detector columns.

    Returns
    -------
    numpy.ndarray
        ``(nrows, ncols)`` weights in [0, 1].
    """
    t = np.asarray(trace, float)[:, None]
    j = np.arange(ncols, dtype=float)[None, :]
    w = np.clip(np.minimum(j + 0.5, t + width / 2) - np.maximum(j - 0.5, t - width / 2), 0.0, 1.0)
    w[:, : instrument.N_REFERENCE_COLUMNS] = 0.0
    return w


def _box_err2(err, bad, est):
    """ERR^2 of a block with the variance of estimated pixels replaced by
    :data:`~tsoreduce.extraction.profile.ESTIMATED_VARIANCE_FACTOR` x the median ERR^2 of the measured
    pixels within +-3 rows of the same column (the ERR of a replaced hot pixel describes the hot value,
    not the estimate)."""
    e2 = np.nan_to_num(np.asarray(err, np.float64)) ** 2
    if est.any():
        meas = ~bad & ~est & np.isfinite(err)
        med = local_median_rows(e2, ~meas, 3, where=est)[est]
        e2[est] = ESTIMATED_VARIANCE_FACTOR * np.where(np.isfinite(med), med, e2[est])
    return e2


def box_extract(calints: RateData, trace, width=7.0):
    """Box extraction with fractional edge pixels.

    ``flux_i(y) = sum_x w(y,x) D_i(y,x)``; ``err = sqrt(sum_x w^2 ERR^2)`` (weights from
    :func:`box_weights`).  A pixel whose flux Stage 2 estimated (FLUX_ESTIMATED, DO_NOT_USE clear)
    enters with its estimate and an inflated variance, and marks the element FLUX_ESTIMATED; pixels
    non-finite or flagged DO_NOT_USE/DEAD/HOT/SATURATED without an estimate count as 0 and mark the
    element DO_NOT_USE.  Progress bar over the integration blocks when
    :func:`tsoreduce.contract.progress_enabled`.

    Parameters
    ----------
    calints : RateData
        ``(nints, nrows, ncols)`` background-subtracted integrations.
    trace : array_like
        ``(nrows,)`` trace centre columns.
    width : float
        Full box width (px).

    Returns
    -------
    flux, err : numpy.ndarray
        ``(nints, nrows)`` float64, in the data units summed over the aperture.
    dq : numpy.ndarray
        ``(nints, nrows)`` uint32 element flags.
    """
    w = box_weights(trace, width, calints.data.shape[2])
    nints, nrows = calints.data.shape[:2]
    flux, err = np.empty((nints, nrows)), np.empty((nints, nrows))
    nbad, nest = np.empty((nints, nrows)), np.empty((nints, nrows))
    for blk in blocks(nints, "box extraction"):
        d, bad, est = clean(calints.data[blk], calints.dq[blk])
        flux[blk] = np.einsum("iyx,yx->iy", d, w)
        err[blk] = np.sqrt(np.einsum("iyx,yx->iy", _box_err2(calints.err[blk], bad, est), w * w))
        nbad[blk] = np.einsum("iyx,yx->iy", bad.astype(float), w)
        nest[blk] = np.einsum("iyx,yx->iy", est.astype(float), w)
    return flux, err, element_dq(nbad, nest)


def white_light_scatter(flux) -> float:
    """Relative point-to-point scatter of a light curve (exoTEDRF's width-optimisation metric).

    ``median|f_i - (f_{i-1}+f_{i+1})/2| / median f``: insensitive to the transit shape.

    Parameters
    ----------
    flux : array_like
        ``(nints,)`` light curve, any units.

    Returns
    -------
    float
        The relative scatter; NaN with fewer than 3 points.
    """
    f = np.asarray(flux, float)
    if f.size < 3:
        return float("nan")
    return float(np.median(np.abs(f[1:-1] - 0.5 * (f[:-2] + f[2:]))) / np.abs(np.median(f)))


def optimize_box_width(calints: RateData, trace, rows, widths=np.arange(2.0, 12.01, 0.5)):
    """The box width minimising the white-light scatter (exoTEDRF ``extract_width='optimize'``).

    Parameters
    ----------
    calints : RateData
        ``(nints, nrows, ncols)`` background-subtracted integrations.
    trace : numpy.ndarray
        ``(nrows,)`` trace centre columns.
    rows : array_like of int
        Rows summed into the white light curve.
    widths : array_like
        Box widths tried (px).

    Returns
    -------
    best_width : float
        The width (px) with the lowest :func:`white_light_scatter`.
    widths : numpy.ndarray
        The widths tried (px).
    scatter : numpy.ndarray
        The relative scatter of each.
    """
    rows = np.asarray(rows)
    widths = np.asarray(widths, float)
    W = np.stack([box_weights(trace[rows], wdt, calints.data.shape[2]) for wdt in widths])
    white = np.empty((widths.size, calints.nints))
    for blk in blocks(calints.nints, "box width scan"):
        d = clean(calints.data[blk][:, rows], calints.dq[blk][:, rows])[0]
        white[:, blk] = np.einsum("iyx,kyx->ki", d, W)
    sc = np.asarray([white_light_scatter(f) for f in white])
    best = float(widths[int(np.nanargmin(sc))])
    log.info("box width scan %.1f-%.1f px: best %.1f px (p2p scatter %.0f ppm)", widths[0], widths[-1],
             best, 1e6 * np.nanmin(sc))
    return best, widths, sc


