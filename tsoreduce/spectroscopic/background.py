"""Stage 2 step 3: row-wise (cross-dispersion) background subtraction, and the BKGCOLS record.

Per integration and detector row, the median (or a robust straight line in column, ``"slope"``) of
off-trace columns, subtracted from the whole row.  Sources (docs/sources.md): exoTEDRF
``backgroundstep_miri`` (Radica 2024); ExoTiC-MIRI ``row_wise`` background.

Every integration is independent, so the step runs block by block of integrations
(:func:`~tsoreduce.spectroscopic.common.integration_blocks`): its temporaries stay a few MB whatever
the length of the exposure.
"""

from __future__ import annotations

import logging

import numpy as np
from scipy import ndimage

from .._util import quiet_nan_warnings
from .._util import MAD_TO_SIGMA
from .. import instrument
from ..datamodel import DQ, RateData, dq_has
from ..errors import ConfigError
from .common import BAD_PIXEL_FLAGS, integration_blocks, make_deep_frame, nanmedian

log = logging.getLogger(__name__)

__all__ = ["subtract_background", "estimate_trace_column", "format_columns", "parse_columns"]

#: passes of the clipped straight-line fit ("slope")
SLOPE_PASSES = 5
#: Gaussian sigma per median absolute residual (1 / Phi^-1(3/4))


def format_columns(cols) -> str:
    """Column indices as a compact header string (the BKGCOLS keyword), e.g. ``'4-16,58-71'``.

    Parameters
    ----------
    cols : array_like of int
        Sorted 0-based column indices.

    Returns
    -------
    str
        Comma-separated inclusive ranges.
    """
    cols = np.asarray(cols, int)
    breaks = np.flatnonzero(np.diff(cols) != 1)
    starts = np.r_[cols[0], cols[breaks + 1]]
    ends = np.r_[cols[breaks], cols[-1]]
    return ",".join(f"{s}-{e}" for s, e in zip(starts, ends))


def parse_columns(text: str) -> np.ndarray:
    """Column indices from a BKGCOLS string; the inverse of :func:`format_columns`.

    Parameters
    ----------
    text : str
        E.g. ``'4-16,58-71'``.

    Returns
    -------
    numpy.ndarray
        int, the 0-based column indices.
    """
    out = []
    for part in str(text).split(","):
        a, _, b = part.strip().partition("-")
        out.extend(range(int(a), int(b or a) + 1))
    return np.asarray(out, int)


def estimate_trace_column(image: np.ndarray, rows=None) -> float:
    """Coarse trace column of a (deep) frame.

    The peak of the row-summed spatial profile (reference columns excluded, median-filtered over 3
    columns so a hot column does not win), refined by a 3-point parabola.  Used to place the
    background regions before Stage 3 measures the trace properly.

    Parameters
    ----------
    image : numpy.ndarray
        ``(nrows, ncols)`` frame, any units.
    rows : slice or array_like, optional
        Rows summed (default all).

    Returns
    -------
    float
        0-based column of the trace centre.
    """
    img = np.asarray(image, float)
    if rows is None:
        rows = slice(None)
    prof = np.nansum(np.where(np.isfinite(img[rows]), img[rows], 0.0), axis=0)
    prof[: instrument.N_REFERENCE_COLUMNS] = -np.inf
    prof[-1] = -np.inf
    k = int(np.argmax(ndimage.median_filter(np.where(np.isfinite(prof), prof, -1e30), 3)))
    k = min(max(k, instrument.N_REFERENCE_COLUMNS + 1), img.shape[1] - 2)
    a, b, c = prof[k - 1], prof[k], prof[k + 1]
    den = a - 2 * b + c
    off = 0.5 * (a - c) / den if den < 0 else 0.0
    return float(k + np.clip(off, -0.5, 0.5))


def _background_columns(ncols, center, halfwidth, width):
    """Columns ``[c-h-w, c-h)`` and ``(c+h, c+h+w]`` beside the trace, reference columns dropped."""
    c = int(round(center))
    lo = np.arange(c - halfwidth - width, c - halfwidth)
    hi = np.arange(c + halfwidth + 1, c + halfwidth + 1 + width)
    cols = np.concatenate([lo, hi])
    cols = cols[(cols >= instrument.N_REFERENCE_COLUMNS) & (cols < ncols)]
    if cols.size < 4:
        raise ConfigError(f"background regions around column {center:.1f} (mask +-{halfwidth}, width "
                          f"{width}) leave only {cols.size} usable columns")
    return cols


def subtract_background(rates: RateData, *, method="median", trace_center=None, trace_halfwidth=10,
                        region_width=14, clip_sigma=3.0, smooth_rows=0):
    """Row-wise (cross-dispersion) background subtraction.

    For every integration ``i`` and row ``y`` the background is estimated from the columns
    ``[c-h-w, c-h)`` and ``(c+h, c+h+w]`` (``c`` trace column, ``h = trace_halfwidth``,
    ``w = region_width``; reference columns 0-3 never used) and subtracted from the whole row:

    * ``"median"``: the median of those pixels (exoTEDRF default; ExoTiC-MIRI ``row_wise``).
    * ``"slope"``: a straight line in column, fitted by least squares with iterative ``clip_sigma``
      clipping (5 passes), evaluated at every column (exoTEDRF ``method='slope'``, vectorised).

    Pixels flagged DO_NOT_USE/DEAD/HOT/SATURATED or non-finite are ignored.  A row with no usable
    background pixel gets the background interpolated along rows from the rows of the same
    integration that have one (beyond the first/last such row: that row's value); its pixels are
    flagged FLUX_ESTIMATED and counted in a WARNING and in ``meta['NBKGINTP']`` (pixels); an
    integration with no estimate at all is NaN and DO_NOT_USE.  The estimator is recorded for the
    noise propagation of Stage 3: ``BKGMETH``, ``BKGCOLS``, ``BKGTRACE``, ``BKGSMTH``.
    Sources: exoTEDRF ``backgroundstep_miri`` (Radica 2024), ExoTiC-MIRI (docs/sources.md).

    Parameters
    ----------
    rates : tsoreduce.datamodel.RateData
        ``(nints, nrows, ncols)`` rates; not modified.
    method : {"median", "slope"}
        Per-row estimator.
    trace_center : float, optional
        Trace column (0-based); None -> :func:`estimate_trace_column` of the deep frame.
    trace_halfwidth : int
        Columns either side of the trace centre never used.
    region_width : int
        Width (columns) of each background region.
    clip_sigma : float
        Clipping threshold of the ``"slope"`` fit, in robust sigma.
    smooth_rows : int
        Median-filter the background along rows over this (odd) window; 0 = off (ExoTiC-MIRI option).

    Returns
    -------
    calints : tsoreduce.datamodel.RateData
        Background-subtracted rates (new SCI; DQ new only when rows were interpolated).
    background : numpy.ndarray
        float32 ``(nints, nrows, ncols)``, data units; for ``"median"`` a read-only broadcast view
        of the per-row values (constant along columns).

    Raises
    ------
    tsoreduce.errors.ConfigError
        When the regions leave fewer than 4 columns or ``method`` is unknown.
    """
    if method not in ("median", "slope"):
        raise ConfigError(f"stage2.background.method: unknown value {method!r}")
    if trace_center is None:
        trace_center = estimate_trace_column(make_deep_frame(rates))
        log.info("background: trace centre estimated at column %.2f", trace_center)
    data = rates.data.copy()
    dq = rates.dq  # copied only if rows are flagged
    bkg, missing, lost, meta = subtract_background_inplace(
        data, dq, method=method, trace_center=trace_center, trace_halfwidth=trace_halfwidth,
        region_width=region_width, clip_sigma=clip_sigma, smooth_rows=smooth_rows, units=rates.units,
        copy_dq=True)
    out_dq = meta.pop("_dq")
    return rates.replace(data=data, dq=out_dq, meta={**rates.meta, **meta}), bkg


def subtract_background_inplace(data, dq, *, method, trace_center, trace_halfwidth, region_width,
                                clip_sigma, smooth_rows, units="", copy_dq=False):
    """:func:`subtract_background` on arrays the caller owns: ``data`` is modified in place.

    Parameters
    ----------
    data : numpy.ndarray
        float32 ``(nints, nrows, ncols)``; the background is subtracted in place.
    dq : numpy.ndarray
        uint32, same shape; flags are set in place unless ``copy_dq`` (then on a copy, made only
        when some row is flagged).
    method, trace_center, trace_halfwidth, region_width, clip_sigma, smooth_rows
        As :func:`subtract_background` (``trace_center`` required).
    units : str
        Data units, for the log.
    copy_dq : bool
        Leave ``dq`` untouched and flag a copy.

    Returns
    -------
    background : numpy.ndarray
        float32 ``(nints, nrows, ncols)`` (broadcast view for ``"median"``).
    missing, lost : numpy.ndarray
        bool ``(nints, nrows)``: interpolated rows; rows of integrations without any estimate.
    meta : dict
        BKGMETH, BKGCOLS, BKGTRACE, BKGSMTH, NBKGINTP, and ``"_dq"``: the flagged DQ array.

    Raises
    ------
    tsoreduce.errors.ConfigError
        When the regions leave fewer than 4 columns or ``method`` is unknown.
    """
    if method not in ("median", "slope"):
        raise ConfigError(f"stage2.background.method: unknown value {method!r}")
    nints, nrows, ncols = data.shape
    cols = _background_columns(ncols, trace_center, trace_halfwidth, region_width)
    # "median" is constant along the row: kept as one column and broadcast
    bkg = np.empty((nints, nrows, 1 if method == "median" else ncols), np.float32)
    missing = np.zeros((nints, nrows), bool)
    lost = np.zeros((nints, nrows), bool)
    for blk in integration_blocks(data.shape):
        b = _estimate_block(data[blk], dq[blk], cols, method, trace_center, clip_sigma)
        b, missing[blk], lost[blk] = _fill_missing_background(b)
        if smooth_rows and smooth_rows > 1:
            b = ndimage.median_filter(np.nan_to_num(b), size=(1, smooth_rows | 1, 1), mode="nearest")
            b[lost[blk]] = np.nan
        bkg[blk] = b
        data[blk] -= bkg[blk]
    if missing.any():
        dq = dq.copy() if copy_dq else dq
        dq[missing] |= np.uint32(DQ.FLUX_ESTIMATED)
        dq[lost] |= np.uint32(DQ.DO_NOT_USE)
        log.warning("background: %d row(s) of %d integration(s) had no usable background pixel; their "
                    "background is interpolated from the neighbouring rows and their pixels flagged "
                    "FLUX_ESTIMATED (header NBKGINTP)%s", int(missing.sum()), int(missing.any(axis=1).sum()),
                    f"; {int(lost.sum())} row(s) in integrations without any background "
                    f"estimate set to NaN, DO_NOT_USE" if lost.any() else "")
    with quiet_nan_warnings():
        level = float(np.nanmedian(bkg)) if np.isfinite(bkg).any() else float("nan")
    log.info("background: method %s, columns %s, median level %.4g %s", method, _ranges(cols), level, units)
    # the estimator, so that Stage 3 can propagate its noise
    meta = dict(NBKGINTP=int(missing.sum()) * ncols, BKGMETH=method, BKGCOLS=format_columns(cols),
                BKGTRACE=float(trace_center), BKGSMTH=int(smooth_rows or 0), _dq=dq)
    if method == "median":
        bkg = np.broadcast_to(bkg, data.shape)
    return bkg, missing, lost, meta


def _estimate_block(data, dq, cols, method, trace_center, clip_sigma):
    """Background of a block of integrations, float64 ``(n, nrows, 1)`` ("median") or
    ``(n, nrows, ncols)`` ("slope")."""
    d = data[:, :, cols].astype(np.float64)
    d[~np.isfinite(d) | dq_has(dq[:, :, cols], BAD_PIXEL_FLAGS)] = np.nan
    with quiet_nan_warnings():
        if method == "median":
            return nanmedian(d, axis=2)[:, :, None]
        x = cols.astype(float) - trace_center
        a, b = _clipped_line(x, d, clip_sigma)
        xall = np.arange(data.shape[2]) - trace_center
        return a[..., None] + b[..., None] * xall


def _clipped_line(x, d, clip_sigma):
    """Straight line ``a + b x`` along the last axis of ``d`` (NaN = unusable), refitted after
    clipping residuals beyond ``clip_sigma`` robust sigma, up to :data:`SLOPE_PASSES` passes.

    Not astropy's ``sigma_clip``: the centre is the refitted line, not a location statistic, and the
    scale is the median absolute residual about that line (its expectation is zero), not the MAD
    about the median of the residuals."""
    ok = ~np.isnan(d)
    y = np.nan_to_num(d)
    w = ok.astype(float)
    for _ in range(SLOPE_PASSES):
        a, b = _weighted_line(x, y, w)
        res = y - (a[..., None] + b[..., None] * x)
        s = MAD_TO_SIGMA * nanmedian(np.where(w > 0, np.abs(res), np.nan), axis=-1)
        neww = (ok & (np.abs(res) <= clip_sigma * np.maximum(s, 1e-30)[..., None])).astype(float)
        if np.array_equal(neww, w):
            break
        w = neww
    return _weighted_line(x, y, w)


def _fill_missing_background(bkg):
    """Rows whose background is non-finite get the linear interpolation, along rows and column by
    column, of the rows of the same integration that have one (the LRS background varies smoothly
    along the dispersion direction).  Returns ``(bkg, missing, lost)``: bool ``(n, nrows)`` masks of
    the interpolated rows and of the rows of integrations with no estimate at all (left NaN)."""
    bad_row = ~np.isfinite(bkg).all(axis=2)  # (n, nrows)
    missing = np.zeros(bad_row.shape, bool)
    lost = np.zeros(bad_row.shape, bool)
    rows = np.arange(bkg.shape[1])
    for i in np.flatnonzero(bad_row.any(axis=1)):
        good = ~bad_row[i]
        if not good.any():
            lost[i] = True
            continue
        for c in range(bkg.shape[2]):
            bkg[i, bad_row[i], c] = np.interp(rows[bad_row[i]], rows[good], bkg[i, good, c])
        missing[i, bad_row[i]] = True
    return bkg, missing, lost


def _weighted_line(x, y, w):
    """Weighted least-squares line ``y = a + b x`` along the last axis (vectorised over the rest)."""
    sw = w.sum(-1)
    sx = (w * x).sum(-1)
    sy = (w * y).sum(-1)
    sxx = (w * x * x).sum(-1)
    sxy = (w * x * y).sum(-1)
    den = sw * sxx - sx * sx
    with np.errstate(all="ignore"):
        b = np.where(den > 0, (sw * sxy - sx * sy) / den, 0.0)
        a = np.where(sw > 0, (sy - b * sx) / sw, np.nan)
    return a, b


def _ranges(cols):
    return format_columns(cols).replace(",", ", ")
