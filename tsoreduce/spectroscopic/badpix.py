"""Stage 2 step 4: bad-pixel cleaning -- spatial outliers of the deep frame and DQ-flagged pixels
replaced from their neighbours along the dispersion direction, temporal outliers replaced by a running
median in time.

Sources (docs/sources.md): exoTEDRF ``badpixstep`` (Radica 2024); Nikolov et al. 2014 for the
point-to-point scatter and the running median in time; jwst pipeline documentation for the
FLUX_ESTIMATED flag of replaced values.

Memory: the spatial replacement is per integration and runs block by block of integrations; the
temporal search is per pixel along time and runs slab by slab of rows.  Only the output SCI and DQ
(modified in place) are full-size.
"""

from __future__ import annotations

import logging

import numpy as np
from scipy import ndimage

from .._util import quiet_nan_warnings
from .._util import MAD_TO_SIGMA
from .. import instrument
from ..datamodel import DQ, RateData, dq_has
from .common import (BAD_PIXEL_FLAGS, deep_frame_of, integration_blocks, nanmedian,
                     row_blocks)

log = logging.getLogger(__name__)

__all__ = ["clean_bad_pixels", "clean_bad_pixels_inplace", "local_median_rows"]

#: Gaussian sigma per median absolute deviation (1 / Phi^-1(3/4))
#: rows along a column over which the local scatter of the deep frame is measured
SCATTER_ROWS = 21


def local_median_rows(cube, bad, halfwidth, where=None, side="both"):
    """Median of the ``2*halfwidth`` neighbours along rows (same column), bad pixels excluded.

    Along-dispersion neighbours are used because the LRS spatial profile changes by orders of
    magnitude across columns but slowly along rows (exoTEDRF ``badpixstep``, Radica 2024).

    Parameters
    ----------
    cube : numpy.ndarray
        ``(nints, nrows, ncols)`` values (a single frame as ``frame[None]``).
    bad : numpy.ndarray
        bool, same shape: values not used as neighbours.
    halfwidth : int
        Rows either side.
    where : numpy.ndarray, optional
        bool, same shape: only these positions are evaluated (memory O(number flagged)).
    side : {"both", "up", "down"}
        Neighbours on both sides, only above (higher row) or only below.

    Returns
    -------
    numpy.ndarray
        float32, same shape; NaN where not evaluated or without a good neighbour.
    """
    n, ny, nx = cube.shape
    if where is None:
        where = np.ones(cube.shape, bool)
    ii, yy, xx = np.nonzero(where)
    ks = [k for k in range(-halfwidth, halfwidth + 1) if k != 0
          and (side == "both" or (side == "up" and k > 0) or (side == "down" and k < 0))]
    vals = np.full((len(ks), ii.size), np.nan, np.float64)
    for j, k in enumerate(ks):
        y2 = yy + k
        ok = (y2 >= 0) & (y2 < ny)
        y2c = np.clip(y2, 0, ny - 1)
        v = cube[ii, y2c, xx].astype(np.float64)
        ok &= ~bad[ii, y2c, xx] & np.isfinite(v)
        vals[j] = np.where(ok, v, np.nan)
    out = np.full(cube.shape, np.nan, np.float32)
    with quiet_nan_warnings():
        out[ii, yy, xx] = np.nanmedian(vals, axis=0)
    return out


def _pair_mean_rows(cube, bad, halfwidth, where):
    """Estimate at ``where`` from symmetric neighbour pairs along rows (same column): the median over
    k = 1..halfwidth of (v[y-k] + v[y+k]) / 2 for the pairs whose two members are good.

    Exact for a spectrum linear in row and unbiased for a sloped one even when the flagged pixels sit
    asymmetrically around ``y`` (a plain median of the remaining neighbours is then biased by the
    slope); the median over pairs keeps it robust to a deviant neighbour.  Returns a full-shape
    float32 array, NaN where not evaluated or without a good pair.
    """
    n, ny, nx = cube.shape
    ii, yy, xx = np.nonzero(where)
    vals = np.full((halfwidth, ii.size), np.nan, np.float64)
    for j, k in enumerate(range(1, halfwidth + 1)):
        ylo, yhi = yy - k, yy + k
        ok = (ylo >= 0) & (yhi < ny)
        ylo, yhi = np.clip(ylo, 0, ny - 1), np.clip(yhi, 0, ny - 1)
        lo = cube[ii, ylo, xx].astype(np.float64)
        hi = cube[ii, yhi, xx].astype(np.float64)
        ok &= ~bad[ii, ylo, xx] & ~bad[ii, yhi, xx] & np.isfinite(lo) & np.isfinite(hi)
        vals[j] = np.where(ok, 0.5 * (lo + hi), np.nan)
    out = np.full(cube.shape, np.nan, np.float32)
    with quiet_nan_warnings():
        out[ii, yy, xx] = np.nanmedian(vals, axis=0)
    return out


def clean_bad_pixels(rates: RateData, *, space_thresh=10.0, space_halfwidth=3, time_thresh=10.0,
                     time_window=5, skip_temporal=False, baseline_ints=None):
    """Replace spatial and temporal outliers (exoTEDRF ``badpixstep``, Radica 2024).

    (a) Spatial: on the deep frame M, a pixel is bad when ``|M - med| > space_thresh * s``, with
    ``med`` the median of its ``space_halfwidth`` neighbours either side along rows (same column,
    scaled to the row's brightness) and ``s`` the robust scatter (1.4826 x the median absolute
    residual) of ``M - med`` over 21 rows of that column (at least the column's overall value and
    the deep frame's expected noise), AND it also deviates by more than ``space_thresh * s / 2`` from
    the one-sided medians above and below (so a real sharp spectral edge, which matches one side, is
    kept); also every pixel that is non-finite or flagged DO_NOT_USE/DEAD/HOT/SATURATED in an
    integration (there, only in that integration).  Reference columns 0-3 are left untouched.  Bad
    values are replaced, in that integration, by the median over k = 1..``space_halfwidth`` of the
    means of the good symmetric pairs (y-k, y+k) of the same column (unbiased on a sloped spectrum;
    windows of 2x and 4x the half-width when no pair is good, then the deep-frame value); DO_NOT_USE
    is cleared and FLUX_ESTIMATED set.  A value with no estimate stays NaN and DO_NOT_USE (warning
    with the count).
    (b) Temporal: with F the running median over ``time_window`` integrations and
    ``sigma = median|R_i - (R_{i-1}+R_{i+1})/2| / (0.6745 sqrt(1.5))`` per pixel (Gaussian-equivalent
    point-to-point scatter, Nikolov et al. 2014), values with ``|R - F| > time_thresh * sigma`` are
    replaced by F and flagged OUTLIER|FLUX_ESTIMATED.  Needs >= 5 integrations (else skipped, logged).

    Parameters
    ----------
    rates : tsoreduce.datamodel.RateData
        ``(nints, nrows, ncols)`` rates (background-subtracted), any units; not modified.
    space_thresh : float
        Threshold of the spatial outliers, in local robust sigma.
    space_halfwidth : int
        Rows either side used for the along-dispersion neighbours.
    time_thresh : float
        Threshold of the temporal outliers, in point-to-point sigma.
    time_window : int
        Running-median window along integrations (made odd).
    skip_temporal : bool
        Skip (b).
    baseline_ints : list of int or None
        Integrations of the deep frame (see :func:`tsoreduce.spectroscopic.baseline_index`).

    Returns
    -------
    calints : tsoreduce.datamodel.RateData
        New SCI and DQ; ERR and variances shared with ``rates``.
    diagnostics : dict
        ``hot_pixel_map`` bool ``(nrows, ncols)`` (spatial map from the deep frame and persistent DQ
        flags), ``n_replaced_spatial`` (replaced pixel-integration values), ``n_replaced_temporal``,
        ``temporal_count_map`` int32 ``(nrows, ncols)``, ``n_hot_pixels``.
    """
    data, dq = rates.data.copy(), rates.dq.copy()
    diag = clean_bad_pixels_inplace(data, dq, rates.err, space_thresh=space_thresh,
                                    space_halfwidth=space_halfwidth, time_thresh=time_thresh,
                                    time_window=time_window, skip_temporal=skip_temporal,
                                    baseline_ints=baseline_ints)
    return rates.replace(data=data, dq=dq), diag


def clean_bad_pixels_inplace(data, dq, err, *, space_thresh=10.0, space_halfwidth=3, time_thresh=10.0,
                             time_window=5, skip_temporal=False, baseline_ints=None) -> dict:
    """:func:`clean_bad_pixels` on arrays the caller owns (``data`` and ``dq`` modified in place).

    Parameters
    ----------
    data : numpy.ndarray
        float32 ``(nints, nrows, ncols)``, cleaned in place.
    dq : numpy.ndarray
        uint32, same shape, flagged in place.
    err : numpy.ndarray
        float32, same shape (read only): sets the noise floor of the spatial search.
    space_thresh, space_halfwidth, time_thresh, time_window, skip_temporal, baseline_ints
        As :func:`clean_bad_pixels`.

    Returns
    -------
    dict
        The diagnostics of :func:`clean_bad_pixels`.
    """
    nints, nrows, ncols = data.shape
    refcols = np.zeros((nrows, ncols), bool)
    refcols[:, : instrument.N_REFERENCE_COLUMNS] = True
    deep = deep_frame_of(data, dq, baseline_ints)
    nbad, enoise = _bad_counts_and_noise(data, dq, err, refcols)
    hot = _spatial_outliers(deep, enoise, refcols, space_thresh, space_halfwidth)
    hot_map = hot | (nbad / nints > 0.5)
    n_sp = _replace_spatial(data, dq, deep, hot_map, refcols, space_halfwidth)
    log.info("bad pixels (spatial): %d pixels in the hot-pixel map, %d pixel-integration values "
             "replaced", int(hot_map.sum()), n_sp)
    n_t, tcount = 0, np.zeros((nrows, ncols), np.int32)
    if skip_temporal:
        log.info("bad pixels (temporal): skipped by configuration")
    elif nints < 5:
        log.info("bad pixels (temporal): skipped, only %d integrations (need >= 5)", nints)
    else:
        n_t, tcount = _replace_temporal(data, dq, refcols, time_thresh, time_window)
        log.info("bad pixels (temporal): %d values replaced (%d pixels affected)", n_t,
                 int((tcount > 0).sum()))
    return {"hot_pixel_map": hot_map, "n_replaced_spatial": n_sp, "n_replaced_temporal": n_t,
            "temporal_count_map": tcount, "n_hot_pixels": int(hot_map.sum())}


def _bad_in(data, dq, refcols):
    """Values unusable in their integration: non-finite or DO_NOT_USE/DEAD/HOT/SATURATED (science
    columns only)."""
    return (~np.isfinite(data) | dq_has(dq, BAD_PIXEL_FLAGS)) & ~refcols


def _bad_counts_and_noise(data, dq, err, refcols):
    """Per pixel: the number of integrations where it is bad, and the deep frame's expected noise
    (median ERR of the good values over sqrt(N), x sqrt(pi/2) for a median).  Slab by slab of rows."""
    nints = data.shape[0]
    nbad = np.zeros(data.shape[1:], np.int64)
    enoise = np.empty(data.shape[1:], np.float64)
    for rows in row_blocks(data.shape):
        bad = _bad_in(data[:, rows], dq[:, rows], refcols[rows])
        nbad[rows] = bad.sum(axis=0)
        e = err[:, rows].astype(np.float64)
        e[~np.isfinite(e) | bad] = np.nan
        with quiet_nan_warnings():
            enoise[rows] = nanmedian(e, axis=0)
    return nbad, enoise * np.sqrt(0.5 * np.pi / max(nints, 1))


def _spatial_outliers(deep, enoise, refcols, space_thresh, halfwidth):
    """Hot-pixel map of the deep frame (see :func:`clean_bad_pixels` (a)), bool ``(nrows, ncols)``."""
    dbad = ~np.isfinite(deep)[None]
    dmed = local_median_rows(deep[None], dbad, halfwidth)[0]
    # a spectral feature (e.g. the peak of the spectrum near 5 um) scales the whole spatial profile of
    # its row, a hot pixel does not: the neighbours' median is scaled to the row's brightness (median
    # over the row's bright pixels of deep / dmed, >= 3 of them, so one hot pixel does not move it)
    with np.errstate(all="ignore"), quiet_nan_warnings():
        bright = (np.isfinite(deep) & np.isfinite(dmed) & ~refcols
                  & (dmed > 0.2 * np.nanmax(np.where(refcols, np.nan, dmed), axis=1, keepdims=True)))
        rrow = nanmedian(np.where(bright, deep / dmed, np.nan), axis=1)
    rrow = np.where(np.isfinite(rrow) & (bright.sum(axis=1) >= 3), rrow, 1.0)
    resid = deep - dmed * rrow[:, None]
    s = _local_scatter(resid, enoise)
    # a hot pixel deviates from its neighbours on both sides along the dispersion direction; a sharp
    # spectral feature (e.g. the steep short-wavelength cut-off near row 395) agrees with one side
    dev = [np.abs(deep - local_median_rows(deep[None], dbad, halfwidth, side=side)[0])
           for side in ("up", "down")]
    with quiet_nan_warnings():
        dev = np.nanmin(np.stack(dev), axis=0)
    hot = ((np.abs(np.nan_to_num(resid)) > space_thresh * s)
           & (np.nan_to_num(dev) > 0.5 * space_thresh * s) & ~refcols)
    return hot | (~np.isfinite(deep) & ~refcols)


def _local_scatter(resid, enoise):
    """Robust scatter of the deep-frame residual, ``(nrows, ncols)``: 1.4826 x the median absolute
    residual over :data:`SCATTER_ROWS` rows of each column, at least the column's overall value and
    the deep frame's expected noise ``enoise``; inf where undefined.

    The residual from the neighbours' median has zero expectation, so its scale is the median
    absolute value about zero (not astropy's ``mad_std``, which is about the median); measured
    locally because along the trace it grows with the spectrum's brightness."""
    a = np.abs(np.nan_to_num(resid, nan=0.0))
    s = MAD_TO_SIGMA * ndimage.median_filter(a, size=(SCATTER_ROWS, 1), mode="nearest")
    with quiet_nan_warnings():
        floor = MAD_TO_SIGMA * np.nanmedian(np.abs(resid), axis=0)  # per column, for zero-MAD regions
    s = np.maximum(s, np.where(np.isfinite(floor), floor, 0.0)[None, :])
    # nor below the deep frame's expected noise: on very smooth (e.g. noiseless simulated) data the
    # MAD alone flags the neighbours of a hot pixel and the spectrum's own steep edges
    s = np.maximum(s, np.where(np.isfinite(enoise), enoise, 0.0))
    return np.where(np.isfinite(s) & (s > 0), s, np.inf)


def _replace_spatial(data, dq, deep, hot_map, refcols, halfwidth) -> int:
    """Replace, block by block of integrations, the values bad in their integration or in
    ``hot_map`` (see :func:`clean_bad_pixels` (a)); returns the number replaced."""
    n_sp = n_unknown = 0
    for blk in integration_blocks(data.shape):
        d, q = data[blk], dq[blk]  # views: written in place
        replace = _bad_in(d, q, refcols) | hot_map[None]
        n = int(replace.sum())
        if not n:
            continue
        n_sp += n
        lm = _pair_mean_rows(d, replace, halfwidth, where=replace)
        # a whole flagged run along rows (e.g. a hot pixel whose smooth, noiseless neighbours were
        # flagged with it) has no good neighbour: widen the window, then the deep-frame value; a value
        # still unknown stays NaN and DO_NOT_USE (never a silent 0)
        for hw in (2 * halfwidth, 4 * halfwidth):
            miss = replace & ~np.isfinite(lm)
            if not miss.any():
                break
            lm = np.where(miss, _pair_mean_rows(d, replace, hw, where=miss), lm)
        lm = np.where(np.isfinite(lm), lm, deep[None])
        unknown = replace & ~np.isfinite(lm)
        n_unknown += int(unknown.sum())
        d[replace] = lm[replace]
        est = replace & ~unknown
        q[est] = (q[est] & ~np.uint32(DQ.DO_NOT_USE)) | np.uint32(DQ.FLUX_ESTIMATED)
        q[unknown] |= np.uint32(DQ.DO_NOT_USE)
    if n_unknown:
        log.warning("bad pixels (spatial): %d pixel-integration values have no good neighbour within "
                    "+-%d rows nor a deep-frame value; set to NaN and flagged DO_NOT_USE",
                    n_unknown, 4 * halfwidth)
    return n_sp


def _replace_temporal(data, dq, refcols, time_thresh, time_window):
    """Replace temporal outliers in place (see :func:`clean_bad_pixels` (b)), slab by slab of rows.

    Returns ``(n_replaced, count_map)``.  Two passes: the per-pixel point-to-point scatter first (its
    fallback for zero-scatter pixels is the median over all pixels), then the replacement."""
    win = int(time_window) | 1
    sig = np.empty(data.shape[1:], np.float64)  # float32 medians / a float64 constant
    for rows in row_blocks(data.shape):
        d = data[:, rows]
        p2p = np.abs(d[1:-1] - 0.5 * (d[:-2] + d[2:]))
        sig[rows] = np.median(p2p, axis=0) / (0.6745 * np.sqrt(1.5))
    pos = sig[sig > 0]
    sig = np.where(sig > 0, sig, np.median(pos) if pos.size else np.inf)
    n_t, tcount = 0, np.zeros(data.shape[1:], np.int32)
    for rows in row_blocks(data.shape):
        d, q = data[:, rows], dq[:, rows]  # views: written in place
        filt = ndimage.median_filter(d, size=(win, 1, 1), mode="nearest")
        out = (np.abs(d - filt) > time_thresh * sig[None, rows]) & ~refcols[None, rows]
        n_t += int(out.sum())
        tcount[rows] = out.sum(axis=0)
        d[out] = filt[out]
        q[out] |= np.uint32(DQ.OUTLIER | DQ.FLUX_ESTIMATED)
    return n_t, tcount
