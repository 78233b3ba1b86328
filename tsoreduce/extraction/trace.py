"""Stage 3 step 1-2: the trace (centre column per row) and the per-integration position and width.

:func:`find_trace` runs edgetrigger (Radica et al. 2022, PASP 134, 104502, algorithm by L. Albert) on the
deep frame -- per row, the trace edges are the extrema of the local least-squares slope of the spatial
profile, the centre their mean -- and smooths the centres with a robust polynomial in row; user centroids
or the nominal specwcs trace are accepted instead.  :func:`measure_position_width` measures the
per-integration trace offset and width (decorrelation regressors) from a linear least-squares fit of each
integration with the deep-frame profile, its derivative and its dilation (first-order Taylor expansion of
a shifted / stretched template; cf. SPARTA's template shift fit, github.com/ideasrule/sparta).
Sources: docs/sources.md.
"""

from __future__ import annotations

import logging

import numpy as np
from astropy.stats import mad_std
from scipy import ndimage
from scipy.interpolate import CubicSpline
from scipy.optimize import least_squares

from .._util import MAD_TO_SIGMA
from .. import reference
from .. import instrument
from ..datamodel import RateData
from ..errors import ConfigError, EmptyDataError, ShapeError
from ..spectroscopic import estimate_trace_column

log = logging.getLogger(__name__)

__all__ = ["edgetrigger_centres", "fit_trace_polynomial", "find_trace", "trace_rows", "load_centroids",
           "measure_position_width"]


def _local_slope(prof, halfwidth):
    """Local least-squares slope d(flux)/d(column) over a window of +-halfwidth samples along axis -1
    (correlation with the antisymmetric linear kernel k / sum(k^2); Radica et al. 2022)."""
    k = np.arange(-halfwidth, halfwidth + 1, dtype=float)
    kern = k / np.sum(k * k)
    return ndimage.correlate1d(prof, kern, axis=-1, mode="nearest")


def _parabola_peak(y, i):
    """Sub-sample position of an extremum at index array ``i`` of rows of ``y`` (3-point parabola)."""
    n = y.shape[-1]
    i = np.clip(i, 1, n - 2)
    r = np.arange(y.shape[0])
    a, b, c = y[r, i - 1], y[r, i], y[r, i + 1]
    den = a - 2 * b + c
    with np.errstate(all="ignore"):
        off = np.where(den != 0, 0.5 * (a - c) / den, 0.0)
    return i + np.clip(off, -0.5, 0.5)


def edgetrigger_centres(image, *, halfwidth=2, search_center=None, search_halfwidth=10, oversample=10):
    """Per-row trace centre of a MIRI LRS frame by edge triggering.

    For each row y, the spatial profile f(x) (columns >= 4) is interpolated with a cubic spline onto a
    grid ``oversample`` times finer; the local least-squares slope over +-``halfwidth`` px is computed;
    the rising edge is its maximum and the falling edge its minimum (each refined by a 3-point
    parabola), and the centre is their mean ('mean' mode of Radica et al. 2022, PASP 134, 104502).
    The oversampling removes the pixel-phase bias of locating extrema on the integer grid.

    Parameters
    ----------
    image : numpy.ndarray
        ``(nrows, ncols)`` deep frame (background-subtracted), any units.
    halfwidth : int
        Half-width (px) of the local-slope window.
    search_center : float or None
        Column around which the edges are searched (None: :func:`estimate_trace_column`).
    search_halfwidth : float
        Half-width (px) of the searched column range.
    oversample : int
        Spline oversampling factor along the columns.

    Returns
    -------
    centres : numpy.ndarray
        ``(nrows,)`` trace centre columns (0-based).
    widths : numpy.ndarray
        ``(nrows,)`` edge separations (px).
    """
    img = np.asarray(image, float)
    nrows, ncols = img.shape
    if search_center is None:
        search_center = estimate_trace_column(img)
    c0 = max(instrument.N_REFERENCE_COLUMNS, int(np.floor(search_center - search_halfwidth)))
    c1 = min(ncols, int(np.ceil(search_center + search_halfwidth)) + 1)
    x = np.arange(c0, c1, dtype=float)
    prof = np.nan_to_num(img[:, c0:c1])
    spl = CubicSpline(x, prof, axis=1)
    xf = np.arange(x[0], x[-1] + 1e-9, 1.0 / oversample)
    pf = spl(xf)
    s = _local_slope(pf, halfwidth * oversample)
    edge = halfwidth * oversample  # ignore the window's edge effects
    s[:, :edge] = 0.0
    s[:, -edge:] = 0.0
    rise = _parabola_peak(s, np.argmax(s, axis=1))
    fall = _parabola_peak(-s, np.argmax(-s, axis=1))
    step = 1.0 / oversample
    xr, xl = x[0] + rise * step, x[0] + fall * step
    return 0.5 * (xr + xl), xl - xr


def fit_trace_polynomial(rows, centres, order=3, nrows=instrument.SUBARRAY_SHAPE[0], *, clip=3.0,
                         weights=None):
    """Robust polynomial of trace centre vs row.

    Five passes of ``clip``-sigma clipping of a least-squares fit, then a Huber-loss fit (scipy
    ``least_squares``, ``f_scale`` = robust residual scale), as in the edgetrigger reference
    implementation (APPLESOSS, Radica et al. 2022).  The residual scale is ``1.4826 median|r|`` about
    zero (the residuals of a fit), not a median absolute deviation about their median.

    Parameters
    ----------
    rows : array_like
        ``(n,)`` rows of the measured centres.
    centres : array_like
        ``(n,)`` measured centre columns (NaN: not measured).
    order : int
        Polynomial order.
    nrows : int
        Number of detector rows of the returned trace.
    clip : float
        Clipping threshold in units of the robust residual scale.
    weights : None
        Reserved; not used (every row weighs the same).

    Returns
    -------
    trace : numpy.ndarray
        ``(nrows,)`` centre column of every row.
    coeffs : numpy.ndarray
        Polynomial coefficients in the rescaled row coordinate.
    rms : float
        RMS of the accepted residuals (px).
    kept : numpy.ndarray
        ``(n,)`` bool, rows kept by the clipping.

    Raises
    ------
    EmptyDataError
        With fewer than ``order + 2`` finite centres.
    """
    rows = np.asarray(rows, float)
    c = np.asarray(centres, float)
    ok = np.isfinite(c)
    if ok.sum() < order + 2:
        raise EmptyDataError("<deep frame>", f"only {int(ok.sum())} rows with a measurable trace "
                             f"centre (need >= {order + 2})")
    # rows rescaled to [-1, 1] for a well-conditioned fit
    r0, rs = 0.5 * (rows[ok].min() + rows[ok].max()), max(0.5 * np.ptp(rows[ok]), 1.0)
    u = (rows - r0) / rs
    keep = ok.copy()
    for _ in range(5):  # refit-and-clip: the clipped set changes the fit (not a one-array sigma_clip)
        p = np.polyfit(u[keep], c[keep], order)
        res = c - np.polyval(p, u)
        s = MAD_TO_SIGMA * np.median(np.abs(res[keep]))
        new = ok & (np.abs(res) <= clip * max(s, 1e-6))
        if np.array_equal(new, keep):
            break
        keep = new
    s = max(MAD_TO_SIGMA * np.median(np.abs(res[keep])), 1e-4)
    sol = least_squares(lambda q: np.polyval(q, u[keep]) - c[keep], p, loss="huber", f_scale=s)
    p = sol.x
    trace = np.polyval(p, (np.arange(nrows) - r0) / rs)
    rms = float(np.sqrt(np.mean((np.polyval(p, u[keep]) - c[keep]) ** 2)))
    return trace, p, rms, keep


def trace_rows(deep, center, snr_min, rows_cfg=None):
    """Rows bright enough to measure the trace and the regressors.

    Parameters
    ----------
    deep : numpy.ndarray
        ``(nrows, ncols)`` deep frame, any units.
    center : float
        Trace column.
    snr_min : float
        Minimum peak S/N of a row (peak within +-2 columns of ``center`` over the robust scatter,
        ``astropy.stats.mad_std``, of the columns beyond +-8 px).
    rows_cfg : list of int or None
        ``[first, last]`` rows given by the configuration (overrides the S/N selection).

    Returns
    -------
    numpy.ndarray
        Row indices (int).

    Raises
    ------
    ConfigError
        If ``rows_cfg`` is not a pair.
    EmptyDataError
        If fewer than 10 rows pass ``snr_min``.
    """
    nrows, ncols = deep.shape
    if rows_cfg is not None:
        if len(rows_cfg) != 2:
            raise ConfigError(f"stage3.trace.rows must be [first, last], got {rows_cfg!r}")
        return np.arange(max(0, rows_cfg[0]), min(nrows, rows_cfg[1] + 1))
    c = int(round(center))
    peak = np.nanmax(deep[:, max(c - 2, 0):c + 3], axis=1)
    off = np.r_[instrument.N_REFERENCE_COLUMNS:max(c - 8, instrument.N_REFERENCE_COLUMNS + 1),
                min(c + 9, ncols - 1):ncols]
    noise = float(mad_std(deep[:, off], ignore_nan=True))
    snr = peak / max(noise, 1e-30)
    r = np.flatnonzero(np.isfinite(snr) & (snr > snr_min))
    if r.size < 10:
        raise EmptyDataError("<deep frame>", f"only {r.size} rows with trace S/N > {snr_min}")
    return r


def _user_trace(centroids, poly_order, nrows):
    if centroids is None:
        raise ConfigError("stage3.trace.method = 'user' needs centroids (stage3.trace.centroids_file, "
                          "or find_trace(centroids=...))")
    if isinstance(centroids, tuple) and len(centroids) == 2:
        r, x = (np.asarray(a, float) for a in centroids)
        t, p, rms, _ = fit_trace_polynomial(r, x, poly_order, nrows)
        log.info("trace: user centroids at %d rows, polynomial order %d (rms %.3f px)", r.size,
                 poly_order, rms)
        return t, {"rows": r, "centres": x, "widths": None, "rms": rms, "coeffs": p}
    t = np.asarray(centroids, float)
    if t.shape != (nrows,):
        raise ShapeError(f"user centroids have shape {t.shape}, expected ({nrows},) or (rows, x)")
    log.info("trace: user centroids for every row")
    return t, {"rows": np.arange(nrows), "centres": t, "widths": None, "rms": 0.0, "coeffs": None}


def find_trace(deep_frame, *, method="edgetrigger", halfwidth=2, poly_order=3, rows=None, snr_min=10.0,
               centroids=None):
    """Trace centre column per row.

    Parameters
    ----------
    deep_frame : numpy.ndarray
        ``(nrows, ncols)`` background-subtracted deep frame, any units.
    method : {"edgetrigger", "user", "nominal"}
        ``"edgetrigger"``: :func:`edgetrigger_centres` on the deep frame + robust polynomial
        (:func:`fit_trace_polynomial`); ``"user"``: ``centroids``; ``"nominal"``: the specwcs_0006
        trace (:func:`tsoreduce.reference.trace_x_center`).
    halfwidth : int
        Half-width (px) of the edgetrigger slope window.
    poly_order : int
        Order of the polynomial of centre vs row.
    rows : list of int or None
        ``[first, last]`` rows used by the fit (None: rows with S/N above ``snr_min``).
    snr_min : float
        Minimum peak S/N of a row used by the fit.
    centroids : tuple of numpy.ndarray or numpy.ndarray or None
        With ``method="user"``: a ``(rows, x)`` pair of arrays (smoothed by the polynomial) or an
        ``(nrows,)`` array of centre columns.

    Returns
    -------
    trace : numpy.ndarray
        ``(nrows,)`` centre columns (0-based).
    info : dict
        ``rows`` used, ``centres`` measured, ``widths`` (edge separation, px), ``rms`` of the
        polynomial residuals (px), ``coeffs``.

    Raises
    ------
    ConfigError
        For an unknown method, or ``method="user"`` without centroids.
    ShapeError
        For user centroids of the wrong shape.
    """
    deep = np.asarray(deep_frame, float)
    nrows = deep.shape[0]
    if method == "nominal":
        t = reference.trace_x_center(np.arange(nrows))
        log.info("trace: nominal specwcs_0006 trace (no measurement)")
        return t, {"rows": np.arange(nrows), "centres": t, "widths": None, "rms": 0.0, "coeffs": None}
    if method == "user":
        return _user_trace(centroids, poly_order, nrows)
    if method != "edgetrigger":
        raise ConfigError(f"stage3.trace.method: unknown value {method!r}")
    c = estimate_trace_column(deep)
    use = trace_rows(deep, c, snr_min, rows)
    cen, wid = edgetrigger_centres(deep, halfwidth=halfwidth, search_center=c)
    t, p, rms, keep = fit_trace_polynomial(use, cen[use], poly_order, nrows)
    log.info("trace: edgetrigger on %d rows (%d-%d), polynomial order %d, residual rms %.3f px, "
             "centre at row 300 = %.2f", int(keep.sum()), use.min(), use.max(), poly_order, rms,
             t[min(300, nrows - 1)])
    return t, {"rows": use, "centres": cen[use], "widths": wid[use], "rms": rms, "coeffs": p,
               "kept": keep}


def load_centroids(path):
    """User trace centroids from a table file.

    Parameters
    ----------
    path : str or pathlib.Path
        CSV / ECSV (any format astropy ``Table.read`` reads) with a row column (``row``, ``ypos`` or
        ``y``) and a column column (``x``, ``xpos`` or ``trace_x``; 0-based px).

    Returns
    -------
    tuple of numpy.ndarray
        ``(rows, x)``, each ``(n,)`` float.

    Raises
    ------
    ConfigError
        If the table lacks either column.
    """
    from astropy.table import Table

    t = Table.read(path)
    names = {n.lower(): n for n in t.colnames}
    rk = names.get("row") or names.get("ypos") or names.get("y")
    xk = names.get("x") or names.get("xpos") or names.get("trace_x")
    if rk is None or xk is None:
        raise ConfigError(f"{path}: centroid table needs columns row/ypos and x/xpos, has {t.colnames}")
    return np.asarray(t[rk], float), np.asarray(t[xk], float)


def _offset_grid(trace, halfwidth, ncols):
    """Columns and offsets (column - trace) of a +-halfwidth band around the trace, ``(nrows, 2h+1)``."""
    base = np.round(trace).astype(int)
    cols = base[:, None] + np.arange(-halfwidth, halfwidth + 1)[None, :]
    cols = np.clip(cols, instrument.N_REFERENCE_COLUMNS, ncols - 1)
    return cols, cols - trace[:, None]


def measure_position_width(calints: RateData, deep_frame, trace, *, rows, regressor_halfwidth=4):
    """Per-integration trace offset and width (decorrelation regressors).

    Each integration D_i (rows ``rows``, columns within +-``regressor_halfwidth`` of the trace) is
    fitted by linear least squares with the template ``a P - b P' - s (x - t) P'`` where P is the deep
    frame, P' its derivative along columns and ``x - t`` the offset from the trace: to first order this is P shifted by
    ``dx = b/a`` and stretched by ``1 + s/a`` (Taylor expansion of a shifted, dilated template; cf.
    SPARTA's template shift fit).  All integrations are solved at once (one design matrix).

    Parameters
    ----------
    calints : RateData
        ``(nints, nrows, ncols)`` background-subtracted integrations.
    deep_frame : numpy.ndarray
        ``(nrows, ncols)`` deep frame, same units.
    trace : numpy.ndarray
        ``(nrows,)`` trace centre columns.
    rows : array_like of int
        Rows used (bright ones).
    regressor_halfwidth : int
        Half-width (px) of the fitted band around the trace.

    Returns
    -------
    trace_x : numpy.ndarray
        ``(nints,)`` mean trace column over ``rows`` plus the measured offset (px).
    trace_width : numpy.ndarray
        ``(nints,)`` flux-weighted RMS width of the deep-frame profile times the stretch (px).
    """
    deep = np.asarray(deep_frame, float)
    ncols = deep.shape[1]
    rows = np.asarray(rows)
    cols, off = _offset_grid(trace[rows], regressor_halfwidth, ncols)
    rr = np.repeat(rows[:, None], cols.shape[1], axis=1)
    P = np.nan_to_num(deep[rr, cols])
    # derivative of a cubic spline through each row: central differences underestimate the slope of
    # the ~1-px-sigma MIRI PSF by ~20 %, which would scale every offset by the same factor
    x = np.arange(ncols, dtype=float)
    dspl = CubicSpline(x, np.nan_to_num(deep[rows]), axis=1).derivative()
    dP = np.take_along_axis(dspl(x), cols, axis=1)
    A = np.stack([P.ravel(), -dP.ravel(), -(off * dP).ravel()], axis=1)
    D = np.nan_to_num(calints.data[:, rr, cols].reshape(calints.nints, -1).astype(float))
    coef, *_ = np.linalg.lstsq(A, D.T, rcond=None)
    a, b, s = coef
    with np.errstate(all="ignore"):
        dx = b / a
        stretch = 1.0 + s / a
    pp = np.clip(P, 0, None)
    w0 = np.sqrt(np.sum(pp * off**2) / np.sum(pp) - (np.sum(pp * off) / np.sum(pp)) ** 2)
    return float(np.mean(trace[rows])) + dx, w0 * stretch
