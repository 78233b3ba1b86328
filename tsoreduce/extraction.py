"""Stage 3: trace finding, spectral extraction and light-curve construction (calints -> x1dints).

Steps, in the order :func:`run_stage3` runs them (one function each):

1. :func:`find_trace` -- edgetrigger on the deep frame (Radica et al. 2022, PASP 134, 104502, algorithm
   by L. Albert) applied to MIRI's vertical trace: per row, the trace edges are the
   extrema of the local least-squares slope of the spatial profile, the centre their mean; a robust
   polynomial in row smooths the centres.  User centroids or the nominal specwcs trace are accepted.
2. :func:`measure_position_width` -- per-integration trace offset and width for decorrelation, from a
   linear least-squares fit of each integration with the deep-frame profile, its derivative and its
   dilation (first-order Taylor expansion of a shifted / stretched template; cf. SPARTA's template
   shift fit, github.com/ideasrule/sparta).
3. :func:`box_extract` (fractional edge pixels; optional width minimising white-light scatter,
   exoTEDRF ``extract_width='optimize'``, Radica 2024) or :func:`optimal_extract` (Horne 1986,
   PASP 98, 609; Marsh 1989, PASP 101, 1032: a smooth profile model fitted to the deep frame along
   the dispersion direction, :mod:`tsoreduce.optimal_profile`; variance from ERR; iterative outlier
   rejection).  Pixels whose flux Stage 2 estimated are extracted with their estimate (inflated
   variance) and mark the element FLUX_ESTIMATED; unrepaired bad pixels are excluded (optimal) or
   mark it DO_NOT_USE (box).
4. :func:`wavelength_at_trace` -- the wavelength map (jwst ``assign_wcs`` / CRDS specwcs) sampled at
   the trace; without a map the bundled default (specwcs_0009) with a WARNING.  The map used is
   recorded in the x1dints header (R_SPCWCS, WAVSRC).
5. :func:`bin_lightcurves` -- white and spectroscopic light curves with fractional-pixel bin weights
   (exoTEDRF ``bin_at_resolution``, Radica 2024).

The x1dints product (:class:`~tsoreduce.datamodel.SpectraData`) keeps one spectral element per detector
row with a valid wavelength, in row order (wavelength decreasing, as the STScI x1dints), flux in the
calints units summed over the aperture (DN/s; MJy/sr calints are converted to Jy when PIXAR_SR is known).
"""

from __future__ import annotations

import logging

import numpy as np
from scipy import ndimage
from scipy.interpolate import CubicSpline
from scipy.optimize import least_squares

from . import reference
from .config import Param, validate
from .datamodel import DQ, LightCurves, RateData, SpectraData
from .errors import ConfigError, EmptyDataError, ProductError, ShapeError
from .optimal_profile import ESTIMATED_VARIANCE_FACTOR, estimated_mask, pixel_variance, smooth_profile
from .spectroscopic import BAD_PIXEL_FLAGS, baseline_index, estimate_trace_column, make_deep_frame
from .spectroscopic import _local_median_rows, nanmedian

log = logging.getLogger(__name__)

_BLOCK = 256  # integrations per block in the extraction loops (bounded memory)

__all__ = ["CONFIG_SCHEMA", "run_stage3", "edgetrigger_centres", "fit_trace_polynomial", "find_trace",
           "measure_position_width", "box_weights", "box_extract", "optimize_box_width",
           "optimal_extract", "wavelength_at_trace", "bin_lightcurves", "white_light_scatter"]

CONFIG_SCHEMA = {
    "trace": {
        "method": Param("edgetrigger", str, "trace centres: 'edgetrigger' on the deep frame, 'user' "
                        "(centroids given to run_stage3 or centroids_file) or 'nominal' (specwcs_0006 trace)",
                        choices=("edgetrigger", "user", "nominal")),
        "halfwidth": Param(2, int, "half-width (px) of the local-slope window of edgetrigger", min=1, max=6),
        "poly_order": Param(3, int, "order of the robust polynomial of centre vs row", min=0, max=8),
        "rows": Param(None, list, "[first, last] rows used to fit the trace; null -> rows with S/N above "
                      "snr_min", nullable=True, item_type=int, min=0),
        "snr_min": Param(10.0, float, "minimum peak S/N of a deep-frame row used by the trace fit", min=1.0),
        "centroids_file": Param(None, str, "CSV/ECSV with columns row, x (used when method='user')",
                                nullable=True),
        "regressor_halfwidth": Param(4, int, "half-width (px) of the region used to measure the "
                                     "per-integration offset and width", min=2, max=15),
    },
    "extraction": {
        "method": Param("optimal", str, "'optimal' (Horne 1986) or 'box'", choices=("optimal", "box")),
        "box_width": Param(7.0, float, "full width (px) of the box aperture", min=1.0, max=30.0),
        "optimize_width": Param(False, bool, "choose the box width minimising white-light scatter"),
        "width_grid": Param([2.0, 12.0, 0.5], list, "[min, max, step] of widths tried by optimize_width",
                            item_type=(int, float), min=0.5),
        "aperture_halfwidth": Param(6.0, float, "half-width (px) of the optimal-extraction aperture",
                                    min=1.0, max=20.0),
        "profile_halfwidth": Param(10.5, float, "half-width (px) of the region over which the optimal-"
                                   "extraction profile is normalised (the flux estimated is the flux "
                                   "in it; 10.5 = a 21-px box)", min=2.0, max=30.0),
        "profile_knot_rows": Param(40.0, float, "knot spacing (rows) of the B-spline profile model "
                                   "fitted along each column (Horne 1986 / Marsh 1989)", min=5.0,
                                   max=400.0),
        "clip_sigma": Param(5.0, float, "outlier rejection threshold of optimal extraction", min=2.0),
        "max_iter": Param(10, int, "maximum rejection iterations of optimal extraction", min=1, max=50),
        "shift_profile": Param(True, bool, "move the optimal-extraction profile with the measured "
                               "per-integration trace offset"),
        "rows": Param(None, list, "[first, last] rows written to the x1dints; null -> rows with a valid "
                      "wavelength", nullable=True, item_type=int, min=0),
    },
    "lightcurves": {
        "skip": Param(False, bool, "do not build light curves"),
        "edges": Param(None, list, "wavelength bin edges (um); overrides bin_width/resolution",
                       nullable=True, item_type=(int, float)),
        "resolution": Param(None, (int, float), "constant-R binning (log grid) instead of bin_width",
                            nullable=True, min=1.0),
        "bin_width": Param(0.5, float, "bin width (um) when neither edges nor resolution is given",
                           min=0.01),
        "white_range": Param([5.0, 12.0], list, "wavelength range (um) of the white light curve and of "
                             "the default bins", item_type=(int, float)),
        "normalise": Param(True, bool, "divide each light curve by its baseline median"),
        "baseline_ints": Param(None, list, "integrations defining the baseline ([start, stop) pairs, "
                               "0-based); null -> all", nullable=True, item_type=int),
        "max_bad_fraction": Param(0.5, float, "a channel point (white: the whole integration) whose "
                                  "wavelength weight is NaN or DO_NOT_USE beyond this fraction is NaN and "
                                  "masked, not repaired", min=0.0, max=1.0),
    },
}


# ---------------------------------------------------------------------------------------- 1. trace

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
    image : ``(nrows, ncols)`` deep frame (background-subtracted), any units.
    search_center : column around which the edges are searched (None -> :func:`estimate_trace_column`).

    Returns
    -------
    centres ``(nrows,)`` columns (0-based), widths ``(nrows,)`` edge separations (px).
    """
    img = np.asarray(image, float)
    nrows, ncols = img.shape
    if search_center is None:
        search_center = estimate_trace_column(img)
    c0 = max(reference.N_REFERENCE_COLUMNS, int(np.floor(search_center - search_halfwidth)))
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


def fit_trace_polynomial(rows, centres, order=3, nrows=reference.SUBARRAY_SHAPE[0], *, clip=3.0,
                         weights=None):
    """Robust polynomial of trace centre vs row: 5 passes of ``clip``-sigma clipping of a least-squares
    fit, then a Huber-loss fit (scipy ``least_squares``, ``f_scale`` = robust residual scale), as in
    the edgetrigger reference implementation (APPLESOSS, Radica et al. 2022).  Returns ``(trace (nrows,), coeffs,
    rms of the accepted residuals, mask of rows kept)``.  Raises EmptyDataError with < order+2 rows."""
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
    for _ in range(5):
        p = np.polyfit(u[keep], c[keep], order)
        res = c - np.polyval(p, u)
        s = 1.4826 * np.median(np.abs(res[keep]))
        new = ok & (np.abs(res) <= clip * max(s, 1e-6))
        if np.array_equal(new, keep):
            break
        keep = new
    s = max(1.4826 * np.median(np.abs(res[keep])), 1e-4)
    sol = least_squares(lambda q: np.polyval(q, u[keep]) - c[keep], p, loss="huber", f_scale=s)
    p = sol.x
    trace = np.polyval(p, (np.arange(nrows) - r0) / rs)
    rms = float(np.sqrt(np.mean((np.polyval(p, u[keep]) - c[keep]) ** 2)))
    return trace, p, rms, keep


def _trace_rows(deep, center, snr_min, rows_cfg):
    nrows, ncols = deep.shape
    if rows_cfg is not None:
        if len(rows_cfg) != 2:
            raise ConfigError(f"stage3.trace.rows must be [first, last], got {rows_cfg!r}")
        r = np.arange(max(0, rows_cfg[0]), min(nrows, rows_cfg[1] + 1))
        return r
    c = int(round(center))
    peak = np.nanmax(deep[:, max(c - 2, 0):c + 3], axis=1)
    off = np.r_[reference.N_REFERENCE_COLUMNS:max(c - 8, reference.N_REFERENCE_COLUMNS + 1),
                min(c + 9, ncols - 1):ncols]
    bg = deep[:, off]
    noise = 1.4826 * np.nanmedian(np.abs(bg - np.nanmedian(bg)))
    snr = peak / max(noise, 1e-30)
    r = np.flatnonzero(np.isfinite(snr) & (snr > snr_min))
    if r.size < 10:
        raise EmptyDataError("<deep frame>", f"only {r.size} rows with trace S/N > {snr_min}")
    return r


def find_trace(deep_frame, *, method="edgetrigger", halfwidth=2, poly_order=3, rows=None, snr_min=10.0,
               centroids=None):
    """Trace centre column per row, ``(nrows,)`` (0-based columns).

    ``method``: ``"edgetrigger"`` (:func:`edgetrigger_centres` on the deep frame + robust polynomial),
    ``"user"`` (``centroids`` = ``(rows, x)`` pair of arrays, or an ``(nrows,)`` array; smoothed by the
    same polynomial only when given at a subset of rows) or ``"nominal"`` (specwcs_0006 via
    :func:`tsoreduce.reference.trace_x_center`).

    Returns ``(trace, info)``: info has ``rows`` used, ``centres`` measured, ``widths`` (edge
    separation), ``rms`` of the polynomial residuals, ``coeffs``.
    """
    deep = np.asarray(deep_frame, float)
    nrows = deep.shape[0]
    if method == "nominal":
        t = reference.trace_x_center(np.arange(nrows))
        log.info("trace: nominal specwcs_0006 trace (no measurement)")
        return t, {"rows": np.arange(nrows), "centres": t, "widths": None, "rms": 0.0, "coeffs": None}
    if method == "user":
        if centroids is None:
            raise ConfigError("stage3.trace.method = 'user' needs centroids (run_stage3(centroids=...) "
                              "or stage3.trace.centroids_file)")
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
    if method != "edgetrigger":
        raise ConfigError(f"stage3.trace.method: unknown value {method!r}")
    c = estimate_trace_column(deep)
    use = _trace_rows(deep, c, snr_min, rows)
    cen, wid = edgetrigger_centres(deep, halfwidth=halfwidth, search_center=c)
    t, p, rms, keep = fit_trace_polynomial(use, cen[use], poly_order, nrows)
    log.info("trace: edgetrigger on %d rows (%d-%d), polynomial order %d, residual rms %.3f px, "
             "centre at row 300 = %.2f", int(keep.sum()), use.min(), use.max(), poly_order, rms,
             t[min(300, nrows - 1)])
    return t, {"rows": use, "centres": cen[use], "widths": wid[use], "rms": rms, "coeffs": p,
               "kept": keep}


def _offset_grid(trace, halfwidth, ncols):
    """Columns and offsets (column - trace) of a +-halfwidth band around the trace, ``(nrows, 2h+1)``."""
    base = np.round(trace).astype(int)
    cols = base[:, None] + np.arange(-halfwidth, halfwidth + 1)[None, :]
    cols = np.clip(cols, reference.N_REFERENCE_COLUMNS, ncols - 1)
    return cols, cols - trace[:, None]


def measure_position_width(calints: RateData, deep_frame, trace, *, rows, halfwidth=4):
    """Per-integration trace offset and width (decorrelation regressors).

    Each integration D_i (rows ``rows``, columns within +-``halfwidth`` of the trace) is fitted by linear
    least squares with the template ``a P - b P' - s (x - t) P'`` where P is the deep frame, P' its
    derivative along columns and ``x - t`` the offset from the trace: to first order this is P shifted by
    ``dx = b/a`` and stretched by ``1 + s/a`` (Taylor expansion of a shifted, dilated template).  All
    integrations are solved at once (one design matrix).

    Returns ``(trace_x (nints,), trace_width (nints,))``: the mean trace column over ``rows`` plus dx,
    and the flux-weighted RMS width of the deep-frame profile times the stretch (px).
    """
    deep = np.asarray(deep_frame, float)
    ncols = deep.shape[1]
    rows = np.asarray(rows)
    cols, off = _offset_grid(trace[rows], halfwidth, ncols)
    rr = np.repeat(rows[:, None], cols.shape[1], axis=1)
    P = np.nan_to_num(deep[rr, cols])
    # derivative of a cubic spline through each row: central differences underestimate the slope of
    # the ~1-px-sigma MIRI PSF by ~20 %, which would scale every offset by the same factor
    x = np.arange(ncols, dtype=float)
    dspl = CubicSpline(x, np.nan_to_num(deep[rows]), axis=1).derivative()
    dfull = dspl(x)  # (len(rows), ncols)
    dP = np.take_along_axis(dfull, cols, axis=1)
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


# -------------------------------------------------------------------------------------- 2. box

def box_weights(trace, width, ncols=reference.SUBARRAY_SHAPE[1]):
    """Aperture weights ``(nrows, ncols)``: the fraction of each pixel [j-0.5, j+0.5] inside
    [trace - width/2, trace + width/2]; reference columns 0-3 get 0 (exoTEDRF ``do_box_extraction``,
    Radica 2024)."""
    t = np.asarray(trace, float)[:, None]
    j = np.arange(ncols, dtype=float)[None, :]
    w = np.clip(np.minimum(j + 0.5, t + width / 2) - np.maximum(j - 0.5, t - width / 2), 0.0, 1.0)
    w[:, : reference.N_REFERENCE_COLUMNS] = 0.0
    return w


def _blocks(nints, progress, what):
    """Integration blocks (bounded float64 working copies), with a tqdm bar when ``progress``."""
    starts = range(0, nints, _BLOCK)
    if not progress or nints <= _BLOCK:
        return starts
    from tqdm.auto import tqdm
    return tqdm(starts, desc=f"Stage 3 {what}", unit=f"x{_BLOCK} integrations", leave=False)


def _clean(calints):
    """Working copy of the data for extraction: ``(d, bad, est)``, each ``(nints, nrows, ncols)``.

    ``est``: pixels whose flux Stage 2 estimated (FLUX_ESTIMATED set, DO_NOT_USE clear, finite) -- kept
    with their estimate even when a bad-pixel bit (HOT, DEAD, ...) is also set, so a repaired pixel
    stays repaired; ``bad``: non-finite or flagged DO_NOT_USE/DEAD/HOT/SATURATED and not estimated --
    set to 0 in ``d``.
    """
    d = calints.data.astype(np.float64)
    est = estimated_mask(calints.data, calints.dq)
    bad = (~np.isfinite(d) | ((calints.dq & np.uint32(int(BAD_PIXEL_FLAGS))) != 0)) & ~est
    return np.where(bad, 0.0, d), bad, est


def _box_err2(calints, bad, est):
    """ERR^2 of a block with the variance of estimated pixels replaced by
    :data:`~tsoreduce.optimal_profile.ESTIMATED_VARIANCE_FACTOR` x the median ERR^2 of the measured
    pixels within +-3 rows of the same column (the ERR of a replaced hot pixel describes the hot value,
    not the estimate)."""
    e2 = np.nan_to_num(calints.err.astype(np.float64)) ** 2
    if est.any():
        meas = ~bad & ~est & np.isfinite(calints.err)
        med = _local_median_rows(e2, ~meas, 3, where=est)[est]
        e2[est] = ESTIMATED_VARIANCE_FACTOR * np.where(np.isfinite(med), med, e2[est])
    return e2


def _element_dq(nbad, nest):
    """x1dints DQ of each element: DO_NOT_USE when an unrepaired bad pixel entered it, FLUX_ESTIMATED
    when it contains the flux of a pixel estimated by Stage 2 (used, not excluded)."""
    dq = np.where(nbad > 0, np.uint32(DQ.DO_NOT_USE), np.uint32(0))
    return (dq | np.where(nest > 0, np.uint32(DQ.FLUX_ESTIMATED), np.uint32(0))).astype(np.uint32)


def box_extract(calints: RateData, trace, width=7.0, *, progress=False):
    """Box extraction with fractional edge pixels.

    flux_i(y) = sum_x w(y,x) D_i(y,x); err = sqrt(sum_x w^2 ERR^2) (weights from :func:`box_weights`).
    A pixel whose flux Stage 2 estimated (FLUX_ESTIMATED, DO_NOT_USE clear) enters with its estimate and
    an inflated variance (:func:`_box_err2`), and marks the element FLUX_ESTIMATED; pixels non-finite or
    flagged DO_NOT_USE/DEAD/HOT/SATURATED without an estimate count as 0 and mark the element
    DO_NOT_USE.  Returns ``(flux, err, dq)``, each ``(nints, nrows)``, in the data units (summed).
    ``progress``: a tqdm bar over the integration blocks.
    """
    w = box_weights(trace, width, calints.data.shape[2])
    nints, nrows = calints.data.shape[:2]
    flux, err = np.empty((nints, nrows)), np.empty((nints, nrows))
    nbad, nest = np.empty((nints, nrows)), np.empty((nints, nrows))
    for i0 in _blocks(nints, progress, "box extraction"):  # blocks bound the float64 working copies
        blk = slice(i0, min(i0 + _BLOCK, nints))
        sub = calints.select_integrations(blk)
        d, bad, est = _clean(sub)
        flux[blk] = np.einsum("iyx,yx->iy", d, w)
        err[blk] = np.sqrt(np.einsum("iyx,yx->iy", _box_err2(sub, bad, est), w * w))
        nbad[blk] = np.einsum("iyx,yx->iy", bad.astype(float), w)
        nest[blk] = np.einsum("iyx,yx->iy", est.astype(float), w)
    return flux, err, _element_dq(nbad, nest)


def white_light_scatter(flux) -> float:
    """Relative point-to-point scatter of a light curve, ``median|f_i - (f_{i-1}+f_{i+1})/2| / median f``
    (insensitive to the transit shape; exoTEDRF's width-optimisation metric)."""
    f = np.asarray(flux, float)
    if f.size < 3:
        return float("nan")
    return float(np.median(np.abs(f[1:-1] - 0.5 * (f[:-2] + f[2:]))) / np.abs(np.median(f)))


def optimize_box_width(calints: RateData, trace, rows, widths=np.arange(2.0, 12.01, 0.5)):
    """The box width (px) minimising :func:`white_light_scatter` of the white light curve summed over
    ``rows``.  Returns ``(best_width, widths, scatter)``."""
    d = _clean(calints)[0]
    rows = np.asarray(rows)
    sub = d[:, rows]
    sc = []
    for wdt in widths:
        w = box_weights(trace[rows], wdt, calints.data.shape[2])
        sc.append(white_light_scatter(np.einsum("iyx,yx->i", sub, w)))
    sc = np.asarray(sc)
    best = float(np.asarray(widths)[int(np.nanargmin(sc))])
    log.info("box width scan %.1f-%.1f px: best %.1f px (p2p scatter %.0f ppm)", widths[0], widths[-1],
             best, 1e6 * np.nanmin(sc))
    return best, np.asarray(widths, float), sc


# ----------------------------------------------------------------------------------- 3. optimal

def _horne_block(d, bad, P, V, clip_sigma, max_iter):
    """Horne (1986) iterations for a block of integrations; d, bad, P, V ``(n, nrows, ncols)`` (P
    normalised per row over the profile region; V may broadcast).  Returns flux, err, the accepted
    profile weight ``sum M P`` and the accepted-pixel mask M."""
    M = (~bad) & (P > 0)
    PV = P / V
    PPV = P * PV
    nrej = 0
    for _ in range(max_iter):
        Mf = M.astype(float)
        num = np.einsum("iyx,iyx->iy", Mf * d, PV)
        den = np.einsum("iyx,iyx->iy", Mf, PPV)
        with np.errstate(all="ignore"):
            f = np.where(den > 0, num / den, 0.0)
        # Horne's rule: only the single worst pixel of a row is rejected per pass, because one strong
        # outlier biases f and would otherwise make its good neighbours look discrepant too
        z2 = np.where(M, (d - f[:, :, None] * P) ** 2 / V, -1.0)
        worst = np.argmax(z2, axis=2)
        zmax = np.take_along_axis(z2, worst[..., None], axis=2)[..., 0]
        hit = zmax > clip_sigma**2
        if not hit.any():
            break
        ii, yy = np.nonzero(hit)
        M[ii, yy, worst[ii, yy]] = False
        nrej += int(hit.sum())
    Mf = M.astype(float)
    num = np.einsum("iyx,iyx->iy", Mf * d, PV)
    den = np.einsum("iyx,iyx->iy", Mf, PPV)
    sp = np.einsum("iyx,iyx->iy", Mf, P)
    with np.errstate(all="ignore"):
        flux = np.where(den > 0, num / den, np.nan)
        err = np.where(den > 0, np.sqrt(sp / den), np.nan)
    return flux, err, sp, nrej, M


def _profiles(model, region, c0, c1, shifts):
    """Profiles ``(len(shifts), nrows, c1 - c0)``: the smooth model ``(nrows, ncols)`` moved by ``shifts``
    columns (cubic spline along each row), clipped at 0 and renormalised over the region weights."""
    from .optimal_profile import _normalise

    nrows, ncols = model.shape
    x = np.arange(ncols, dtype=float)
    out = np.empty((len(shifts), nrows, c1 - c0))
    spl = CubicSpline(x, model, axis=1) if np.any(shifts != 0) else None
    for k, dx in enumerate(shifts):
        prof = model if (spl is None or dx == 0) else spl(x - dx)
        out[k] = _normalise(prof, region)[:, c0:c1]
    return out


def optimal_extract(calints: RateData, deep_frame, trace, *, aperture_halfwidth=6.0, clip_sigma=5.0,
                    max_iter=10, shifts=None, progress=False, profile_halfwidth=10.5,
                    profile_knot_rows=40.0):
    """Optimal extraction (Horne 1986, PASP 98, 609; Marsh 1989, PASP 101, 1032).

    Profile P(y,x): a smooth model of the deep frame (:func:`tsoreduce.optimal_profile.smooth_profile`:
    per column, the fraction of the row's flux fitted with a cubic B-spline in row with iterative
    rejection, clipped at 0), normalised to sum 1 per row over the profile region
    [trace - H, trace + H], ``H = max(profile_halfwidth, aperture_halfwidth)``; only pixels inside the
    aperture [trace - h, trace + h] (``h = aperture_halfwidth``) enter the sums, so the estimate is the
    flux in the profile region whatever the aperture (independent of ``h`` within its noise, as the
    21-px box for the default H = 10.5).  With ``shifts`` ``(nints,)`` (columns, e.g. the measured trace
    offsets) the model is moved by that amount for each integration by cubic-spline interpolation along
    the row (SPARTA's shifted profile).  Variance V(y,x): the ramp-fit read + Poisson variance ERR^2,
    median over integrations and over +-3 rows of the same column
    (:func:`tsoreduce.optimal_profile.pixel_variance`) -- independent of each pixel's own fluctuation.
    Then per integration and row

        f = sum M P D / V / sum M P^2 / V,   var f = sum M P / sum M P^2 / V,

    with M the mask of accepted pixels; pixels with ``(D - f P)^2 / V > clip_sigma^2`` are masked
    -- the worst one per row and pass, as in Horne (1986) -- and f recomputed, up to ``max_iter`` passes.

    Pixels whose flux Stage 2 estimated (FLUX_ESTIMATED, DO_NOT_USE clear) are used with their estimate
    and V x :data:`~tsoreduce.optimal_profile.ESTIMATED_VARIANCE_FACTOR`; the element is flagged
    FLUX_ESTIMATED.  Unrepaired bad pixels are excluded (M = 0); an element with less than half of its
    profile weight accepted is flagged DO_NOT_USE.

    Returns ``(flux, err, dq, n_rejected)``; flux/err/dq ``(nints, nrows)`` in the data units.
    """
    nints, nrows, ncols = calints.data.shape
    deep = np.asarray(deep_frame, float)
    if shifts is None:
        shifts = np.zeros(nints)
    shifts = np.asarray(shifts, float)
    if shifts.shape != (nints,):
        raise ShapeError(f"optimal_extract: shifts has shape {shifts.shape}, expected ({nints},)")
    H = max(float(profile_halfwidth), float(aperture_halfwidth))
    region = box_weights(trace, 2 * H, ncols)
    wap = box_weights(trace, 2 * aperture_halfwidth, ncols)
    # only the region's columns are touched, in blocks of integrations: memory stays bounded
    cols = np.flatnonzero(region.any(axis=0))
    c0, c1 = int(cols.min()), int(cols.max()) + 1
    sub = calints.replace(data=calints.data[:, :, c0:c1], err=calints.err[:, :, c0:c1],
                          dq=calints.dq[:, :, c0:c1], var_poisson=None, var_rnoise=None, wavelength=None)
    # measured values only (not flagged, not estimated); booleans, no float64 copy of the whole series
    usable = np.isfinite(sub.data) & ((sub.dq & np.uint32(int(BAD_PIXEL_FLAGS | DQ.FLUX_ESTIMATED))) == 0)
    V = pixel_variance(sub.err, usable)
    del usable
    pos = V[np.isfinite(V) & (V > 0)]
    if pos.size == 0:
        # e.g. a noiseless simulation: the estimator stays unbiased, only its weights lose optimality
        log.warning("optimal extraction: no finite positive ERR in the %d x %d aperture pixels; uniform "
                    "variance used (profile-weighted least squares, no outlier rejection) and the "
                    "errors are not meaningful", V.shape[0], V.shape[1])
        pos = np.ones(1)
        clip_sigma = np.inf
    nfill = int((~(np.isfinite(V) & (V > 0))).sum())
    if nfill:
        log.warning("optimal extraction: %d aperture pixels without a usable ERR in +-3 rows; their "
                    "variance set to the median %.3g", nfill, float(np.median(pos)))
    V = np.where(np.isfinite(V) & (V > 0), V, np.median(pos))
    Vfull = np.full((nrows, ncols), np.nan)
    Vfull[:, c0:c1] = V
    # variance of the deep frame (a median over the integrations: pi/2 x the variance of a mean)
    model, pinfo = smooth_profile(deep, Vfull * (0.5 * np.pi / nints), region, knot_rows=profile_knot_rows)
    same = not np.any(shifts)
    P0 = _profiles(model, region, c0, c1, np.zeros(1))
    apw = (wap[:, c0:c1] > 0)[None]
    flux = np.empty((nints, nrows))
    err = np.empty((nints, nrows))
    sp = np.empty((nints, nrows))
    nest = np.empty((nints, nrows))
    n_prev = 0
    for i0 in _blocks(nints, progress, "optimal extraction"):
        blk = slice(i0, min(i0 + _BLOCK, nints))
        d, bad, est = _clean(sub.select_integrations(blk))
        P = np.broadcast_to(P0, d.shape) if same else _profiles(model, region, c0, c1, shifts[blk])
        # pixels outside the aperture never enter the sums (their P still normalises the profile)
        Vb = np.where(est, ESTIMATED_VARIANCE_FACTOR * V[None], V[None])
        flux[blk], err[blk], sp[blk], nr, M = _horne_block(d, bad | ~apw, P, Vb, clip_sigma, max_iter)
        nest[blk] = np.einsum("iyx,iyx->iy", (M & est).astype(float), P)
        n_prev += nr
    # a row with less than half of its profile weight accepted is unreliable
    dq = _element_dq(((sp < 0.5) | ~np.isfinite(flux)).astype(int), nest)
    log.info("optimal extraction: aperture +-%.1f px, smooth profile over +-%.1f px (B-spline knots every "
             "%.0f rows, rows %s fitted, %d fraction values rejected), %d pixel values rejected (%.2g %%); "
             "%d elements contain estimated flux", aperture_halfwidth, H, profile_knot_rows,
             pinfo["rows_fit"], pinfo["n_rejected"], n_prev,
             100 * n_prev / max(1, int(((P0 > 0) & apw).sum()) * nints), int((nest > 0).sum()))
    return flux, err, dq, n_prev


# ------------------------------------------------------------------------------- 4. wavelength

def wavelength_at_trace(calints: RateData, trace, *, map_name: str | None = None) -> np.ndarray:
    """Wavelength (um) of every row ``(nrows,)``: the map in ``calints.wavelength`` linearly interpolated
    along the row at the trace column (jwst ``assign_wcs`` / CRDS specwcs, jwst-pipeline.readthedocs.io).

    Without a map (a calints that did not go through :func:`tsoreduce.spectroscopic.assign_wavelength`)
    the bundled map ``map_name`` (default :data:`tsoreduce.reference.DEFAULT_WAVELENGTH_MAP`) is used,
    with a WARNING naming it.  Rows where the map is not finite (outside the table, rows 7-394 for
    SLITLESSPRISM) are NaN -- never an edge value repeated.
    """
    nrows, ncols = calints.data.shape[1:]
    if calints.wavelength is None or not np.isfinite(calints.wavelength).any():
        name = map_name or reference.DEFAULT_WAVELENGTH_MAP
        log.warning("wavelength: the calints has no wavelength map; using the bundled map %s (%s) for all "
                    "%d rows", name, reference.wavelength_map_label(name), nrows)
        return reference.wavelength_of_row(np.arange(nrows), name)
    wm = np.asarray(calints.wavelength, float)
    wm = np.where(wm > 0, wm, np.nan)
    t = np.clip(np.asarray(trace, float), 0, ncols - 1.000001)
    j = np.floor(t).astype(int)
    fr = t - j
    r = np.arange(nrows)
    return (1 - fr) * wm[r, j] + fr * wm[r, j + 1]


# ---------------------------------------------------------------------------------- 5. binning

def _pixel_edges(w):
    """Lower/upper wavelength edges of each element from neighbour midpoints (any monotonic order)."""
    w = np.asarray(w, float)
    order = np.argsort(w)
    ws = w[order]
    mid = 0.5 * (ws[1:] + ws[:-1])
    lo = np.r_[ws[0] - (mid[0] - ws[0]), mid]
    hi = np.r_[mid, ws[-1] + (ws[-1] - mid[-1])]
    out_lo, out_hi = np.empty_like(w), np.empty_like(w)
    out_lo[order], out_hi[order] = lo, hi
    return out_lo, out_hi


def _overlap_weights(plo, phi, blo, bhi):
    """Fraction of each pixel [plo, phi] inside each bin [blo, bhi]: ``(nbins, npix)``."""
    ov = np.minimum(phi[None], bhi[:, None]) - np.maximum(plo[None], blo[:, None])
    return np.clip(ov, 0, None) / (phi - plo)[None]


def bin_lightcurves(spectra: SpectraData, edges=None, resolution=None, white_range=(5, 12),
                    normalise=True, *, bin_width=0.5, baseline_ints=None,
                    max_bad_fraction=0.5) -> LightCurves:
    """White-light and spectroscopic light curves from a time series of spectra.

    Bins: ``edges`` (um, ascending) if given; else a constant-resolution grid uniform in ln(lambda)
    with ``round(ln(max/min) * resolution)`` bins over ``white_range``; else ``bin_width`` um bins over
    ``white_range`` (default 0.5 um bins 5-12 um, as the published WASP-43b reductions).  Each
    spectral element enters a bin with the fraction of its wavelength interval inside it (exoTEDRF
    ``bin_at_resolution``); errors add in quadrature.  Elements that are NaN or flagged DO_NOT_USE in an
    integration are replaced by the element's median over time scaled by that integration's white-light
    ratio (so one bad element does not bias the sum) -- unless more than ``max_bad_fraction`` of a
    bin's wavelength weight is bad in that integration: that point is NaN, and when the white band is
    affected the integration is masked (``mask`` True; a WARNING lists them; ``meta`` records
    ``n_masked_integrations``, ``masked_integrations``, ``n_nan_channel_points``).  Non-finite INT_TIMES
    entries are interpolated (``meta['n_times_interpolated']``, WARNING).  With ``normalise`` each
    light curve is divided by its median over ``baseline_ints`` (all integrations by default).
    ``meta['noise']`` holds per light curve the expected scatter from the propagated ERR, the achieved
    point-to-point scatter, their ratio and a red-noise factor (see :mod:`tsoreduce.noise`).

    Parameters
    ----------
    spectra : SpectraData ``(nints, nwave)`` with ``wavelength`` ``(nwave,)`` in um.

    Returns
    -------
    LightCurves: time = mid-integration BMJD_TDB (from ``int_times``; integration index x effective
    integration time when absent, flagged in ``meta['time_source']``), ``flux``/``err`` ``(nchan,
    nints)``, channel centres and edges, white light curve, regressors = ``spectra.aux``.

    Raises ShapeError without a 1-D wavelength array; ConfigError for empty / bad bins; ProductError
    when fewer than two integration times are finite and the header gives no EFFINTTM / INTTIME.
    """
    if spectra.wavelength is None:
        raise ShapeError("bin_lightcurves needs SpectraData.wavelength (um)")
    w = spectra.wavelength if spectra.wavelength.ndim == 1 else np.nanmedian(spectra.wavelength, axis=0)
    good_w = np.isfinite(w)
    if not good_w.any():
        raise ShapeError("bin_lightcurves: no spectral element has a finite wavelength")
    # elements without a wavelength (outside the wavelength table) enter no bin, and the edges of the
    # others come from their own neighbours only
    plo, phi = np.zeros(w.shape), np.ones(w.shape)
    plo[good_w], phi[good_w] = _pixel_edges(w[good_w])
    if not good_w.all():
        log.warning("bin_lightcurves: %d spectral elements without a wavelength are left out of every bin",
                    int((~good_w).sum()))
    lo_w, hi_w = float(min(white_range)), float(max(white_range))
    if edges is not None:
        edges = np.asarray(edges, float)
        if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
            raise ConfigError(f"bin edges must be ascending with >= 2 values, got {edges!r}")
    elif resolution is not None:
        n = max(1, int(round(np.log(hi_w / lo_w) * float(resolution))))
        edges = np.geomspace(lo_w, hi_w, n + 1)
    else:
        n = max(1, int(round((hi_w - lo_w) / bin_width)))
        edges = np.linspace(lo_w, hi_w, n + 1)
    W = _overlap_weights(plo, phi, edges[:-1], edges[1:]) * good_w[None]
    Ww = _overlap_weights(plo, phi, np.array([lo_w]), np.array([hi_w])) * good_w[None]
    if (W.sum(axis=1) == 0).any():
        empty = np.flatnonzero(W.sum(axis=1) == 0)
        raise ConfigError(f"wavelength bins {[(edges[i], edges[i + 1]) for i in empty]} contain no "
                          f"spectral element (spectrum covers {np.nanmin(w):.2f}-{np.nanmax(w):.2f} um)")

    f = spectra.data.astype(float)
    bad = ~np.isfinite(f) | ((spectra.dq & np.uint32(DQ.DO_NOT_USE)) != 0)
    # a channel (or the white band) whose weight is mostly bad in an integration is not repaired from
    # the median spectrum: that point is NaN (and the integration masked when the white band is)
    chan_bad, white_bad = _mostly_bad(bad, W, Ww, max_bad_fraction)
    if bad.any():
        f0 = np.where(bad, np.nan, f)
        with np.errstate(all="ignore"):
            tmpl = nanmedian(f0, axis=0)
            white0 = np.nansum(np.where(bad, 0, f0) * Ww[0], axis=1)
            ref = np.nansum(np.where(bad, 0, tmpl[None]) * Ww[0], axis=1)
            scale = np.where(ref > 0, white0 / ref, 1.0)
        f = np.where(bad, np.nan_to_num(tmpl)[None] * scale[:, None], f)
        log.warning("bin_lightcurves: %d NaN or DO_NOT_USE spectral values (%d integrations) replaced by "
                    "the element's median scaled to the integration (meta n_replaced_spectral_values)",
                    int(bad.sum()), int(bad.any(axis=1).sum()))
    e = np.nan_to_num(spectra.err.astype(float))
    flux = f @ W.T
    err = np.sqrt((e * e) @ (W * W).T)
    wflux = (f @ Ww.T)[:, 0]
    werr = np.sqrt((e * e) @ (Ww * Ww).T)[:, 0]
    flux[chan_bad], err[chan_bad] = np.nan, np.nan
    wflux[white_bad], werr[white_bad] = np.nan, np.nan
    if normalise:
        idx = baseline_index(spectra.nints, baseline_ints)
        with np.errstate(all="ignore"):
            nrm = np.nanmedian(flux[idx], axis=0)
            wn = np.nanmedian(wflux[idx])
        flux, err = flux / nrm, err / np.abs(nrm)
        wflux, werr = wflux / wn, werr / abs(wn)

    meta = {"source": "tsoreduce Stage 3", "flux_units": "normalised" if normalise else spectra.units,
            "white_range_um": [lo_w, hi_w], "n_elements_without_wavelength": int((~good_w).sum())}
    time, tmeta = _lightcurve_times(spectra)
    meta.update(tmeta)
    nmask = int(white_bad.sum())
    meta["max_bad_fraction"] = float(max_bad_fraction)
    meta["n_replaced_spectral_values"] = int(bad.sum())
    meta["n_masked_integrations"] = nmask
    meta["n_nan_channel_points"] = int(chan_bad.sum())
    if nmask or chan_bad.any():
        num = spectra.int_times.integration_number if spectra.int_times is not None else \
            np.arange(1, spectra.nints + 1)
        meta["masked_integrations"] = [int(x) for x in num[white_bad]]
        log.warning("light curves: %d integration(s) masked (more than %.0f %% of the white-band flux bad: "
                    "NaN flux, mask column set)%s; %d channel point(s) NaN for the same reason",
                    nmask, 100 * max_bad_fraction,
                    f", integration number(s) {meta['masked_integrations'][:20]}" if nmask else "",
                    int(chan_bad.sum()))
    for k in ("TARGPROP", "TARGNAME", "PROGRAM", "OBSERVTN"):
        if k in spectra.meta:
            meta[k] = spectra.meta[k]
    log.info("light curves: %d channels %.2f-%.2f um, white light %.1f-%.1f um", len(edges) - 1,
             edges[0], edges[-1], lo_w, hi_w)
    meta["noise"] = _noise_meta(flux.T, err.T, wflux, werr, white_bad)
    return LightCurves(time=time.copy(), flux=flux.T, err=err.T, wavelength=0.5 * (edges[:-1] + edges[1:]),
                       wavelength_lower=edges[:-1], wavelength_upper=edges[1:], white_flux=wflux,
                       white_err=werr, mask=white_bad, regressors=dict(spectra.aux), meta=meta)


def _mostly_bad(bad, W, Ww, max_bad_fraction):
    """``(nints, nchan)`` and ``(nints,)`` bool: the bad share of a bin's wavelength weight exceeds
    ``max_bad_fraction`` (W ``(nchan, nwave)``, Ww ``(1, nwave)`` overlap weights)."""
    b = bad.astype(float)
    with np.errstate(all="ignore"):
        chan = (b @ W.T) / W.sum(axis=1)[None, :]
        white = (b @ Ww.T)[:, 0] / Ww.sum()
    return chan > max_bad_fraction, white > max_bad_fraction


def _lightcurve_times(spectra: SpectraData):
    """Mid-integration BMJD_TDB ``(nints,)`` and the metadata saying where it came from.

    Non-finite INT_TIMES entries are interpolated linearly in integration number from the finite
    ones (the cadence is regular within an exposure) with a WARNING and a count
    (``n_times_interpolated``, ``times_interpolated`` integration numbers).  With fewer than two finite
    times the time is integration index x EFFINTTM (or INTTIME) from the header, with a WARNING;
    without either keyword a :class:`~tsoreduce.errors.ProductError` is raised (no default cadence).
    """
    it = spectra.int_times
    meta = {"n_times_interpolated": 0}
    t = None if it is None else np.asarray(it.mid_bjd_tdb, float)
    ok = np.zeros(spectra.nints, bool) if t is None else np.isfinite(t)
    if ok.sum() >= 2:
        meta["time_source"] = "INT_TIMES int_mid_BJD_TDB" + (" (reconstructed)" if it.reconstructed else "")
        if ok.all():
            return t.copy(), meta
        num = np.asarray(it.integration_number, float)
        t = t.copy()
        t[~ok] = np.interp(num[~ok], num[ok], t[ok], left=np.nan, right=np.nan)
        edge = ~np.isfinite(t)
        if edge.any():  # beyond the first / last finite time: extrapolate with the median cadence
            step = np.median(np.diff(t[ok]) / np.diff(num[ok]))
            i0 = np.flatnonzero(ok)[0]
            t[edge] = t[i0] + (num[edge] - num[i0]) * step
        meta["n_times_interpolated"] = int((~ok).sum())
        meta["times_interpolated"] = [int(x) for x in num[~ok]]
        log.warning("light curves: %d of %d INT_TIMES mid times non-finite; interpolated in integration "
                    "number from the %d finite ones (integration(s) %s)", int((~ok).sum()), ok.size,
                    int(ok.sum()), meta["times_interpolated"][:20])
        return t, meta
    dt = spectra.meta.get("EFFINTTM", spectra.meta.get("INTTIME"))
    try:
        dt = float(dt)
    except (TypeError, ValueError):
        dt = float("nan")
    if not (np.isfinite(dt) and dt > 0):
        raise ProductError(spectra.meta.get("_source_path", "<x1dints>"),
                           f"fewer than 2 finite integration times ({int(ok.sum())} of {spectra.nints}) "
                           "and no EFFINTTM / INTTIME keyword to rebuild them from")
    meta["time_source"] = f"integration index x EFFINTTM {dt:g} s (INT_TIMES absent or unusable)"
    meta["n_times_interpolated"] = int(spectra.nints)
    log.warning("light curves: %s; time = integration index x %g s (days from the first integration)",
                "no integration times" if it is None else f"only {int(ok.sum())} finite INT_TIMES entries",
                dt)
    return np.arange(spectra.nints) * dt / 86400.0, meta


def _noise_meta(flux, err, wflux, werr, mask) -> dict:
    """Per light curve: expected scatter (propagated ERR), achieved point-to-point scatter, their
    ratio and the short-time-scale red-noise factor (definitions: :mod:`tsoreduce.noise`)."""
    from .noise import lightcurve_noise

    out = {"definitions": "expected = sqrt(mean(ERR^2)); achieved_p2p = mad_std(diff(flux))/sqrt(2); "
                          "ratio = achieved_p2p/expected; beta = binning-curve red-noise factor of the "
                          "residuals from a running median over beta_window integrations "
                          "(tsoreduce.noise)"}
    keep = ~mask
    if wflux is not None:
        out["white"] = _rounded(lightcurve_noise(wflux[keep], werr[keep]))
    chans = [_rounded(lightcurve_noise(flux[c][keep], err[c][keep])) for c in range(flux.shape[0])]
    for k in ("expected", "achieved_p2p", "ratio", "beta"):
        out[k] = [c[k] for c in chans]
    out["beta_window"] = chans[0]["beta_window"] if chans else None
    return out


def _rounded(d):
    return {k: (float(f"{v:.6g}") if isinstance(v, float) else v) for k, v in d.items()}


# -------------------------------------------------------------------------------------- runner

def _load_centroids(path):
    from astropy.table import Table

    t = Table.read(path)
    names = {n.lower(): n for n in t.colnames}
    rk = names.get("row") or names.get("ypos") or names.get("y")
    xk = names.get("x") or names.get("xpos") or names.get("trace_x")
    if rk is None or xk is None:
        raise ConfigError(f"{path}: centroid table needs columns row/ypos and x/xpos, has {t.colnames}")
    return np.asarray(t[rk], float), np.asarray(t[xk], float)


def _spectral_units(calints):
    u = calints.units or "DN/s"
    if "MJy" in u and "sr" in u:
        pix = calints.meta.get("PIXAR_SR")
        if pix:
            log.info("calints in %s: spectra converted to Jy with PIXAR_SR = %g sr", u, pix)
            return float(pix) * 1e6, "Jy"
        log.info("calints in %s without PIXAR_SR: spectra are surface brightness summed over pixels", u)
        return 1.0, f"{u} x pixel"
    return 1.0, u


def run_stage3(calints: RateData, config: dict | None = None, *, plot_dir=None, deep_frame=None,
               centroids=None, progress=False):
    """Run Stage 3 (calints -> x1dints + light curves) from a ``stage3`` config section.

    Parameters
    ----------
    calints : RateData ``(nints, 416, 72)`` after Stage 2 (background-subtracted), DN/s or MJy/sr.
    config : the ``stage3`` section (validated against :data:`CONFIG_SCHEMA`; None -> defaults).
    plot_dir : directory for figures (None -> none).
    deep_frame : ``(nrows, ncols)`` from Stage 2 diagnostics; None -> median of the baseline integrations.
    centroids : user trace, ``(rows, x)`` or an ``(nrows,)`` array (with ``trace.method = 'user'``).
    progress : tqdm bars over the integration blocks of the extraction.

    Returns
    -------
    (SpectraData x1dints, LightCurves) -- spectra ``(nints, nwave)`` one element per row with a valid
    wavelength (row order), ``aux`` = trace_x, trace_width (px) per integration; ``meta["_trace"]`` is
    the trace column per row.  LightCurves is None when ``lightcurves.skip``.

    Raises ConfigError, EmptyDataError, ShapeError.
    """
    cfg = validate(config, CONFIG_SCHEMA, "stage3")
    if not isinstance(calints, RateData):
        raise TypeError(f"Stage 3 needs a RateData (calints), got {type(calints).__name__}")
    if not np.isfinite(calints.data).any():
        raise EmptyDataError(calints.meta.get("_source_path", "<in-memory RateData>"),
                             "SCI is non-finite everywhere")
    nints, nrows, ncols = calints.data.shape
    lc_cfg = cfg["lightcurves"]
    if deep_frame is None:
        deep_frame = make_deep_frame(calints, lc_cfg["baseline_ints"])
    deep_frame = np.asarray(deep_frame, float)
    if deep_frame.shape != (nrows, ncols):
        raise ShapeError(f"deep_frame has shape {deep_frame.shape}, expected {(nrows, ncols)}")

    tc = cfg["trace"]
    if tc["method"] == "user" and centroids is None and tc["centroids_file"]:
        centroids = _load_centroids(tc["centroids_file"])
    trace, tinfo = find_trace(deep_frame, method=tc["method"], halfwidth=tc["halfwidth"],
                              poly_order=tc["poly_order"], rows=tc["rows"], snr_min=tc["snr_min"],
                              centroids=centroids)
    bright = tinfo["rows"] if tc["method"] == "edgetrigger" else _trace_rows(
        deep_frame, float(np.median(trace)), tc["snr_min"], tc["rows"])
    trace_x, trace_w = measure_position_width(calints, deep_frame, trace, rows=bright,
                                              halfwidth=tc["regressor_halfwidth"])

    ec = cfg["extraction"]
    scan = None
    if ec["method"] == "box":
        width = ec["box_width"]
        if ec["optimize_width"]:
            lo, hi, st = ec["width_grid"]
            width, ws, sc = optimize_box_width(calints, trace, bright, np.arange(lo, hi + 1e-9, st))
            scan = (ws, sc)
        flux, err, sdq = box_extract(calints, trace, width, progress=progress)
        extr = {"method": "box", "width": width}
    else:
        shifts = trace_x - float(np.mean(trace[bright])) if ec["shift_profile"] else None
        flux, err, sdq, nrej = optimal_extract(calints, deep_frame, trace,
                                               aperture_halfwidth=ec["aperture_halfwidth"],
                                               clip_sigma=ec["clip_sigma"], max_iter=ec["max_iter"],
                                               shifts=shifts, progress=progress,
                                               profile_halfwidth=ec["profile_halfwidth"],
                                               profile_knot_rows=ec["profile_knot_rows"])
        extr = {"method": "optimal", "aperture_halfwidth": ec["aperture_halfwidth"], "n_rejected": nrej}

    err, var_b = _background_error(calints, deep_frame, trace, extr, err)
    wave = wavelength_at_trace(calints, trace)
    wave_meta = {}
    if calints.wavelength is None or not np.isfinite(calints.wavelength).any():
        wave_meta = {"R_SPCWCS": reference.wavelength_map_label(),
                     "WAVSRC": "bundled " + reference.WAVELENGTH_MAPS[reference.DEFAULT_WAVELENGTH_MAP]}
    # rows outside the wavelength table are not spectral elements: they are left out of the x1dints
    keep = np.isfinite(wave)
    if ec["rows"] is not None:
        r = np.arange(nrows)
        keep &= (r >= ec["rows"][0]) & (r <= ec["rows"][1])
    if not keep.any():
        raise EmptyDataError("<calints>", "no row has a valid wavelength in the selected rows")
    scale, units = _spectral_units(calints)
    meta = {k: v for k, v in calints.meta.items() if not str(k).startswith("_")}
    meta.update(wave_meta)
    meta.setdefault("R_SPCWCS", "unknown (calints wavelength map of unrecorded origin)")
    meta.update({"S_TSOS3": "COMPLETE", "EXTRMETH": extr["method"],
                 "_trace": trace[keep], "_rows": np.flatnonzero(keep)})
    meta["BKGERR"] = var_b is not None
    if extr["method"] == "box":
        meta["EXTRWID"] = float(extr["width"])
    else:
        meta["EXTRAPHW"] = float(extr["aperture_halfwidth"])
        meta["EXTRPRHW"] = max(float(ec["profile_halfwidth"]), float(extr["aperture_halfwidth"]))
    spectra = SpectraData(data=flux[:, keep] * scale, err=err[:, keep] * scale, dq=sdq[:, keep],
                          wavelength=wave[keep], int_times=calints.int_times,
                          aux={"trace_x": trace_x, "trace_width": trace_w}, meta=meta, units=units)
    log.info("x1dints: %d integrations x %d wavelengths (%.2f-%.2f um), %s extraction", nints,
             int(keep.sum()), np.nanmin(wave[keep]), np.nanmax(wave[keep]), extr["method"])
    lc = None
    if lc_cfg["skip"]:
        log.info("lightcurves: skipped by configuration")
    else:
        lc = bin_lightcurves(spectra, edges=lc_cfg["edges"], resolution=lc_cfg["resolution"],
                             white_range=tuple(lc_cfg["white_range"]), normalise=lc_cfg["normalise"],
                             bin_width=lc_cfg["bin_width"], baseline_ints=lc_cfg["baseline_ints"],
                             max_bad_fraction=lc_cfg["max_bad_fraction"])
    if plot_dir is not None:
        _plots(deep_frame, trace, tinfo, extr, spectra, lc, scan, plot_dir)
    return spectra, lc


def _background_error(calints, deep_frame, trace, extr, err):
    """ERR of the spectra with the row-correlated background-subtraction noise added
    (:mod:`tsoreduce.background_noise`): response = the box width, or Horne's ``sum(P/V)/sum(P^2/V)``
    with the deep-frame profile for optimal extraction."""
    from . import background_noise as bn

    if extr["method"] == "box":
        response = box_weights(trace, extr["width"], calints.data.shape[2]).sum(axis=1)
    else:
        # only the aperture's columns enter the response (P = 0 elsewhere): no float64 copy of the
        # whole ERR cube
        cols = np.flatnonzero(box_weights(trace, 2 * extr["aperture_halfwidth"], calints.data.shape[2]).any(axis=0))
        c0, c1 = int(cols.min()), int(cols.max()) + 1
        e2 = np.full(deep_frame.shape, np.nan)
        e2[:, c0:c1] = nanmedian(calints.err[:, :, c0:c1].astype(np.float64) ** 2, axis=0)
        response = bn.optimal_response(deep_frame, e2, trace, extr["aperture_halfwidth"], box_weights)
    err, var_b = bn.add_background_error(err, calints, response, BAD_PIXEL_FLAGS)
    if var_b is not None:
        log.info("x1dints ERR: background-subtraction noise added (%s estimator, median %.3g of the ERR "
                 "variance)", calints.meta.get("BKGMETH"),
                 float(np.nanmedian(np.nan_to_num(response ** 2 * var_b) / np.maximum(err ** 2, 1e-300))))
    else:
        log.info("x1dints ERR: no background subtraction recorded in the calints (BKGMETH); ERR is read + "
                 "Poisson only")
    return err, var_b


def _plots(deep, trace, tinfo, extr, spectra, lc, scan, plot_dir):
    from pathlib import Path

    from .plotting import extraction as P

    d = Path(plot_dir)
    d.mkdir(parents=True, exist_ok=True)
    width = extr.get("width", 2 * extr.get("aperture_halfwidth", 3.5))
    P.plot_deep_frame_aperture(deep, trace, width, tinfo, path=d / "stage3_deep_frame_aperture.png")
    if lc is not None:
        P.plot_lightcurve_image(lc, path=d / "stage3_lightcurve_image.png")
        P.plot_white_light(lc, path=d / "stage3_white_light.png")
    P.plot_regressors(spectra, path=d / "stage3_regressors.png")
    if scan is not None:
        P.plot_width_scan(*scan, path=d / "stage3_box_width_scan.png")
