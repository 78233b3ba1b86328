"""The noise of the row-wise background subtraction, propagated to the extracted spectra.

Stage 2 subtracts from every pixel of row ``y`` of integration ``i`` one background value ``b(i, y)``
estimated from ``n`` pixels beside the trace.  Its error is common to the whole row, so it does not
average down in the aperture sum: an extraction with response ``R(y) = d flux / d b`` (the sum of the
box weights; for Horne's optimal estimator ``sum(P / V) / sum(P^2 / V)``) gains the variance
``R^2 var(b)``, whereas summing per-pixel errors in quadrature would give only ``sum(w^2) var(b)``.
For a 7-px box on background-dominated rows (10-12 um) this is a +20-40 % variance excess that the
propagated ERR of the STScI-layout products (read + Poisson only) does not contain.

``var(b)``: for the median of ``n`` pixels of variance ``sigma^2``, the large-sample value
``(pi / 2) sigma^2 / n`` (asymptotic relative efficiency of the median, e.g. Kendall & Stuart, *The
Advanced Theory of Statistics*, vol. 1, 10.10); for the straight-line fit, the least-squares variance
of the line at the trace centre, ``sigma^2 (1 / n + xbar^2 / Sxx)`` with ``x`` the column offsets from
the trace centre.  ``sigma^2`` is the mean ERR^2 of the pixels used.

Stage 2 records the estimator in the calints header (BKGMETH, BKGCOLS, BKGTRACE); Stage 3 rebuilds
``var(b)`` from the calints ERR at those columns, so the term survives a round trip through the files.
:func:`spectra_background_error` is the Stage 3 step that adds it to the extracted spectra.
Sources: docs/sources.md.
"""

from __future__ import annotations

import logging

import numpy as np

from ..datamodel import RateData, dq_has
from ..spectroscopic import BAD_PIXEL_FLAGS, nanmedian, parse_columns
from ._blocks import blocks, row_chunks
from .box import box_weights

log = logging.getLogger(__name__)

__all__ = ["background_variance", "add_background_error", "optimal_response", "spectra_background_error"]


def _block_variance(e, good, cols, meth, trace_col):
    """``var(b)`` ``(n, nrows)`` of one block from its ERR at the background columns (float64) and the
    mask of the pixels Stage 2 used."""
    n = good.sum(axis=2)
    with np.errstate(all="ignore"):
        s2 = np.where(good, e * e, 0.0).sum(axis=2) / n
        if meth == "median":
            var = 0.5 * np.pi * s2 / n
        else:
            x = cols.astype(float) - trace_col
            xg = np.where(good, x[None, None, :], 0.0)
            xbar = xg.sum(axis=2) / n
            sxx = (np.where(good, (x[None, None, :] - xbar[..., None]) ** 2, 0.0)).sum(axis=2)
            var = s2 * (1.0 / n + xbar**2 / sxx)
    return np.where(n > 1, var, np.nan)


def background_variance(calints: RateData, bad_flags) -> np.ndarray | None:
    """Variance of the background Stage 2 subtracted, per integration and row.

    Pixels non-finite or flagged ``bad_flags`` in an integration are not counted (as in Stage 2).
    Computed over blocks of integrations (bounded memory).

    Parameters
    ----------
    calints : RateData
        ``(nints, nrows, ncols)`` calints whose ``meta`` records BKGMETH ('median' or 'slope'),
        BKGCOLS, and optionally BKGTRACE and BKGSMTH.
    bad_flags : int
        DQ bits of the pixels Stage 2 left out of the background.

    Returns
    -------
    numpy.ndarray or None
        Float64 ``(nints, nrows)`` in the data units squared (NaN for rows with fewer than 2 usable
        pixels); None when the header records no background subtraction.
    """
    meth = calints.meta.get("BKGMETH")
    cols_txt = calints.meta.get("BKGCOLS")
    if meth not in ("median", "slope") or not cols_txt:
        return None
    cols = parse_columns(cols_txt)
    trace_col = float(calints.meta.get("BKGTRACE", np.mean(cols)))
    var = np.empty(calints.data.shape[:2])
    for blk in blocks(calints.nints, "background error"):
        e = calints.err[blk][:, :, cols].astype(np.float64)
        good = (np.isfinite(e) & np.isfinite(calints.data[blk][:, :, cols])
                & ~dq_has(calints.dq[blk][:, :, cols], bad_flags))
        var[blk] = _block_variance(e, good, cols, meth, trace_col)
    k = int(calints.meta.get("BKGSMTH", 0) or 0)
    if k > 1:  # a running median over k rows: ~ (pi / 2) / k of one row's variance
        var = var * 0.5 * np.pi / k
    return var


def add_background_error(err, calints: RateData, response, bad_flags):
    """Spectra errors with the background-subtraction variance ``response^2 var(b)`` added in quadrature.

    Parameters
    ----------
    err : numpy.ndarray
        ``(nints, nrows)`` extracted-flux errors, data units.
    calints : RateData
        The calints the spectra were extracted from (header BKGMETH, BKGCOLS...).
    response : numpy.ndarray
        ``(nrows,)`` or ``(nints, nrows)``: d flux / d b of the extraction (dimensionless).
    bad_flags : int
        DQ bits of the pixels Stage 2 left out of the background.

    Returns
    -------
    err : numpy.ndarray
        ``(nints, nrows)`` float64; unchanged without a recorded background subtraction.
    var_b : numpy.ndarray or None
        :func:`background_variance`, or None.
    """
    var_b = background_variance(calints, bad_flags)
    if var_b is None:
        return err, None
    extra = np.nan_to_num(np.asarray(response, float) ** 2 * var_b)
    return np.sqrt(np.asarray(err, float) ** 2 + extra), var_b


def optimal_response(deep_frame, err2, trace, aperture_halfwidth):
    """d flux / d b per row of Horne's estimator: ``sum(P / V) / sum(P^2 / V)``.

    P is the deep-frame profile (negatives 0, normalised per row over the aperture) and V the median
    variance; an approximation when the extraction's own profile is smoothed (same support).

    Parameters
    ----------
    deep_frame : numpy.ndarray
        ``(nrows, ncols)`` deep frame, any units.
    err2 : numpy.ndarray
        ``(nrows, ncols)`` median ERR^2 (NaN or <= 0: pixel not used).
    trace : numpy.ndarray
        ``(nrows,)`` trace centre columns.
    aperture_halfwidth : float
        Half-width (px) of the aperture.

    Returns
    -------
    numpy.ndarray
        ``(nrows,)`` response; the aperture width where it is undefined.
    """
    w = box_weights(trace, 2 * aperture_halfwidth, deep_frame.shape[1])
    P = np.clip(np.nan_to_num(deep_frame), 0, None) * w
    with np.errstate(all="ignore"):
        P = P / P.sum(axis=1, keepdims=True)
        V = np.where(np.isfinite(err2) & (err2 > 0), err2, np.inf)
        r = (P / V).sum(axis=1) / (P * P / V).sum(axis=1)
    return np.where(np.isfinite(r), r, w.sum(axis=1))


def _median_err2(calints, c0, c1):
    """Median over integrations of ERR^2 (float64) at columns c0:c1, ``(nrows, ncols)`` NaN elsewhere;
    computed over chunks of rows (no float64 copy of the whole ERR cube)."""
    e2 = np.full(calints.data.shape[1:], np.nan)
    for rows in row_chunks(calints.data.shape):
        e2[rows, c0:c1] = nanmedian(calints.err[:, rows, c0:c1].astype(np.float64) ** 2, axis=0)
    return e2


def spectra_background_error(calints: RateData, deep_frame, trace, extraction: dict, err):
    """Stage 3 step: the spectra's ERR with the row-correlated background-subtraction noise added.

    The response is the box width (box extraction) or Horne's ``sum(P/V)/sum(P^2/V)`` with the
    deep-frame profile (:func:`optimal_response`, optimal extraction).

    Parameters
    ----------
    calints : RateData
        ``(nints, nrows, ncols)`` calints the spectra were extracted from.
    deep_frame : numpy.ndarray
        ``(nrows, ncols)`` deep frame, data units.
    trace : numpy.ndarray
        ``(nrows,)`` trace centre columns.
    extraction : dict
        ``method`` ('box' or 'optimal') and ``width`` (box, px) or ``aperture_halfwidth`` (px).
    err : numpy.ndarray
        ``(nints, nrows)`` extracted-flux errors, data units.

    Returns
    -------
    err : numpy.ndarray
        ``(nints, nrows)`` float64.
    var_b : numpy.ndarray or None
        ``(nints, nrows)`` background variance, or None without a recorded background subtraction.
    """
    ncols = calints.data.shape[2]
    if extraction["method"] == "box":
        response = box_weights(trace, extraction["width"], ncols).sum(axis=1)
    else:
        # only the aperture's columns enter the response (P = 0 elsewhere)
        cols = np.flatnonzero(box_weights(trace, 2 * extraction["aperture_halfwidth"], ncols).any(axis=0))
        e2 = _median_err2(calints, int(cols.min()), int(cols.max()) + 1)
        response = optimal_response(deep_frame, e2, trace, extraction["aperture_halfwidth"])
    err, var_b = add_background_error(err, calints, response, BAD_PIXEL_FLAGS)
    if var_b is not None:
        log.info("x1dints ERR: background-subtraction noise added (%s estimator, median %.3g of the ERR "
                 "variance)", calints.meta.get("BKGMETH"),
                 float(np.nanmedian(np.nan_to_num(response ** 2 * var_b) / np.maximum(err ** 2, 1e-300))))
    else:
        log.info("x1dints ERR: no background subtraction recorded in the calints (BKGMETH); ERR is read + "
                 "Poisson only")
    return err, var_b
