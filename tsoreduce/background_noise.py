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
"""

from __future__ import annotations

import numpy as np

from .datamodel import RateData, dq_has
# the BKGCOLS record belongs to the background step; re-exported here for existing imports
from .spectroscopic.background import format_columns, parse_columns

__all__ = ["background_variance", "parse_columns", "format_columns", "add_background_error"]


def background_variance(calints: RateData, bad_flags) -> np.ndarray | None:
    """Variance of the subtracted background per integration and row, float64 ``(nints, nrows)``, in the
    data units squared; None when the header does not record a background subtraction (BKGMETH).

    Pixels non-finite or flagged ``bad_flags`` in an integration are not counted (as in Stage 2).
    """
    meth = calints.meta.get("BKGMETH")
    cols_txt = calints.meta.get("BKGCOLS")
    if meth not in ("median", "slope") or not cols_txt:
        return None
    cols = parse_columns(cols_txt)
    e = calints.err[:, :, cols].astype(np.float64)
    good = np.isfinite(e) & np.isfinite(calints.data[:, :, cols]) & ~dq_has(calints.dq[:, :, cols], bad_flags)
    n = good.sum(axis=2)
    with np.errstate(all="ignore"):
        s2 = np.where(good, e * e, 0.0).sum(axis=2) / n
        if meth == "median":
            var = 0.5 * np.pi * s2 / n
        else:
            x = cols.astype(float) - float(calints.meta.get("BKGTRACE", np.mean(cols)))
            xg = np.where(good, x[None, None, :], 0.0)
            xbar = xg.sum(axis=2) / n
            sxx = (np.where(good, (x[None, None, :] - xbar[..., None]) ** 2, 0.0)).sum(axis=2)
            var = s2 * (1.0 / n + xbar**2 / sxx)
    k = int(calints.meta.get("BKGSMTH", 0) or 0)
    if k > 1:  # a running median over k rows: ~ (pi / 2) / k of one row's variance
        var = var * 0.5 * np.pi / k
    return np.where(n > 1, var, np.nan)


def add_background_error(err, calints: RateData, response, bad_flags):
    """``err`` ``(nints, nrows)`` with the background-subtraction variance ``response^2 var(b)`` added in
    quadrature (``response`` ``(nrows,)`` or ``(nints, nrows)``).  Returns ``(err, var_b)``;
    ``err`` unchanged and ``var_b`` None without a recorded background subtraction."""
    var_b = background_variance(calints, bad_flags)
    if var_b is None:
        return err, None
    extra = np.nan_to_num(np.asarray(response, float) ** 2 * var_b)
    return np.sqrt(np.asarray(err, float) ** 2 + extra), var_b


def optimal_response(deep_frame, err2, trace, aperture_halfwidth, box_weights):
    """``d flux / d b`` per row of Horne's estimator with the deep-frame profile (negatives 0, normalised
    per row) and the median variance ``err2`` ``(nrows, ncols)`` inside the aperture: ``sum(P / V) /
    sum(P^2 / V)``.  An approximation when the extraction's own profile is smoothed (same support)."""
    w = box_weights(trace, 2 * aperture_halfwidth, deep_frame.shape[1])
    P = np.clip(np.nan_to_num(deep_frame), 0, None) * w
    with np.errstate(all="ignore"):
        P = P / P.sum(axis=1, keepdims=True)
        V = np.where(np.isfinite(err2) & (err2 > 0), err2, np.inf)
        r = (P / V).sum(axis=1) / (P * P / V).sum(axis=1)
    return np.where(np.isfinite(r), r, w.sum(axis=1))
