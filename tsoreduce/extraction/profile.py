"""Spatial-profile and variance models for optimal extraction of MIRI LRS slitless spectra.

:func:`smooth_profile` builds the profile the way Horne (1986, PASP 98, 609, section III step 5) and
Marsh (1989, PASP 101, 1032) do: the fraction of each row's flux that falls in each column is fitted,
column by column, with a smooth function of the dispersion coordinate (here a cubic B-spline in row,
knots every ``knot_rows`` rows, weighted least squares with iterative rejection), then made
non-negative and normalised per row.  Using the fitted model instead of the (noisy) deep frame itself
removes the noise-correlated bias of "deep frame with negatives set to zero" profiles: positive noise
in the wings no longer gets weight, and the normalisation is no longer inflated by clipped noise.

:func:`pixel_variance` is the per-pixel variance model of the extraction (the ramp-fit read + Poisson
variance, i.e. ERR^2 of the rateints/calints, made independent of each pixel's own noise by a median
over integrations and along the dispersion direction), with the variance of pixels whose flux Stage 2
estimated inflated by :data:`ESTIMATED_VARIANCE_FACTOR`.
"""

from __future__ import annotations

import logging

import numpy as np
from scipy.interpolate import BSpline

from .._util import MAD_TO_SIGMA, quiet_nan_warnings
from ..spectroscopic import nanmedian
from ._blocks import estimated_mask, row_chunks

log = logging.getLogger(__name__)

__all__ = ["smooth_profile", "pixel_variance", "estimated_mask", "normalise_profile",
           "ESTIMATED_VARIANCE_FACTOR", "PROFILE_FLOOR"]

#: variance of a Stage 2 flux estimate relative to a measured pixel's.  The estimate (median of the
#: along-dispersion neighbours, jwst ``pixel_replace``-like) carries ~0.3 of a pixel's noise variance
#: plus an interpolation error set by the spectrum's curvature that is not known pixel by pixel; it is
#: taken as twice a measured pixel's variance, so an element resting on an estimate is never quoted
#: as more precise than a measured one.
ESTIMATED_VARIANCE_FACTOR = 2.0
#: fractional floor (of the row's peak fraction) on the error of a profile fraction in the model fit
PROFILE_FLOOR = 0.002


def _row_median(a, halfwidth):
    """NaN-ignoring running median along axis -2 (rows) over +-halfwidth rows, same column."""
    n = a.shape[-2]
    stack = np.full((2 * halfwidth + 1,) + a.shape, np.nan)
    for k, s in enumerate(range(-halfwidth, halfwidth + 1)):
        lo, hi = max(0, -s), min(n, n - s)
        stack[k][..., lo:hi, :] = a[..., lo + s:hi + s, :]
    with np.errstate(all="ignore"), quiet_nan_warnings():
        return np.nanmedian(stack, axis=0)


def pixel_variance(err, usable, *, median_halfwidth=3) -> np.ndarray:
    """Variance model of the extraction, independent of each pixel's own fluctuation.

    ERR^2 (ramp-fit read + Poisson variance) median over integrations of the usable values, then a
    running median over +-``median_halfwidth`` rows of the same column (defined at flagged pixels
    too).  The median over integrations is taken over chunks of rows, so no float copy of the whole cube is made.

    Parameters
    ----------
    err : numpy.ndarray
        ``(nints, nrows, ncols)`` ERR in the data units (a view of the calints is fine).
    usable : numpy.ndarray
        Bool, same shape: measured (not flagged, not estimated) values.
    median_halfwidth : int
        Half-width (rows) of the running median.

    Returns
    -------
    numpy.ndarray
        Float64 ``(nrows, ncols)`` in the data units squared; NaN where no usable value is found
        within the window.
    """
    v = np.empty(err.shape[1:], np.float32)
    with quiet_nan_warnings():
        for rows in row_chunks(err.shape):
            e = np.asarray(err[:, rows], np.float32)
            e2 = np.where(usable[:, rows] & np.isfinite(e), e * e, np.float32(np.nan))
            v[rows] = nanmedian(e2, axis=0)
    return _row_median(np.asarray(v, np.float64), median_halfwidth)


def _knots(r0, r1, knot_rows, k=3, info=None, min_rows=6.0):
    """Cubic B-spline knots on [r0, r1]: ``(r1 - r0) / knot_rows`` spans, uniform in row, or -- with
    ``info`` (per-row information, e.g. S/N^2, for rows r0..r1) -- at equal steps of cumulative
    information (dense where the spectrum is bright, so the profile follows the fast change of the PSF
    width at the blue end, sparse where it is faint, so noise is averaged), no closer than ``min_rows``."""
    n_int = max(int(round((r1 - r0) / float(knot_rows))) - 1, 0)
    if info is None or n_int == 0:
        inner = np.linspace(r0, r1, n_int + 2)[1:-1]
    else:
        c = np.cumsum(np.clip(np.nan_to_num(info), 0, None))
        if c[-1] <= 0:
            inner = np.linspace(r0, r1, n_int + 2)[1:-1]
        else:
            q = np.linspace(0, c[-1], n_int + 2)[1:-1]
            cand = r0 + np.interp(q, c, np.arange(c.size, dtype=float))
            inner, last = [], float(r0)
            for t in cand:
                if t - last >= min_rows and r1 - t >= min_rows:
                    inner.append(t)
                    last = t
            inner = np.asarray(inner)
    return np.r_[[float(r0)] * (k + 1), inner, [float(r1)] * (k + 1)]


def smooth_profile(deep, var, region, *, knot_rows=40.0, clip_sigma=5.0, clip_iter=5, row_snr_min=3.0):
    """Smooth, non-negative spatial profile normalised per row (Horne 1986; Marsh 1989).

    Per row y, S(y) = sum_x region * deep and S_s(y) the median S of the +-3 neighbouring rows; per
    column x the fractions F = deep / S with weights 1 / (var / S_s^2 + (PROFILE_FLOOR x peak
    fraction)^2) (independent of the row's own noise) are fitted by weighted least squares with a
    cubic B-spline in row over the rows [r0, r1] spanned by the rows with S/N >= ``row_snr_min``, then
    refitted once with F = deep / f_opt, f_opt the row flux optimally extracted from the deep frame
    with the first model (rows with a non-finite pixel in the region are left out); rows outside
    [r0, r1] take the model of the nearest end row.  The model is clipped at 0, multiplied by
    ``region`` and normalised to sum 1 per row (the model is smooth, so the clipped wing values are
    small, unlike those of a noisy deep frame); rows whose model sums to <= 0 get the normalised
    ``region`` (a variance-weighted box).

    Parameters
    ----------
    deep : numpy.ndarray
        ``(nrows, ncols)`` background-subtracted deep frame (NaN = unknown), any units.
    var : numpy.ndarray
        ``(nrows, ncols)`` variance of ``deep`` (same units squared; NaN/<= 0 = unknown).
    region : numpy.ndarray
        ``(nrows, ncols)`` weights in [0, 1] of the normalisation region (e.g. ``box_weights`` of a
        wide band around the trace); the profile is zero outside it and sums to 1 inside.
    knot_rows : float
        Mean knot spacing (rows) of the cubic B-spline fitted along each column; the knots sit at
        equal steps of cumulative S/N^2 (dense where bright), at least 6 rows apart.
    clip_sigma : float
        Rejection of fraction values deviating by more than this (in units of their error, rescaled
        by the fit's robust scatter when that exceeds 1).
    clip_iter : int
        Maximum rejection passes per column.
    row_snr_min : float
        Rows whose region flux S/N -- their own, and that of the median of their neighbours -- is
        below this do not enter the fit.

    Returns
    -------
    P : numpy.ndarray
        Float64 ``(nrows, ncols)`` profile, >= 0, summing to 1 per row over ``region``.
    info : dict
        ``rows_fit`` (r0, r1), ``n_rejected``, ``rms_z`` (RMS of the accepted normalised residuals).
    """
    deep = np.asarray(deep, float)
    var = np.asarray(var, float)
    region = np.asarray(region, float)
    nrows, ncols = deep.shape
    cols = np.flatnonzero(region.any(axis=0))
    D, W, Vd = deep[:, cols], region[:, cols], var[:, cols]
    info = {"rows_fit": None, "n_rejected": 0, "rms_z": np.nan}
    S, S_s, snr, rowok = _row_fluxes(D, W, Vd, row_snr_min)
    if rowok.sum() < 8:
        log.warning("optimal extraction profile: only %d rows with S/N >= %.1f; a normalised box profile "
                    "is used instead of a fitted one", int(rowok.sum()), row_snr_min)
        return normalise_profile(np.zeros_like(region), region), info
    r0, r1 = int(np.flatnonzero(rowok)[0]), int(np.flatnonzero(rowok)[-1])
    sl = slice(r0, r1 + 1)
    B = BSpline.design_matrix(np.arange(r0, r1 + 1, dtype=float),
                              _knots(r0, r1, knot_rows, info=np.where(rowok[sl], snr[sl] ** 2, 0.0)),
                              3).toarray()
    model, nrej, zs = _two_pass_fit(D[sl], W[sl], Vd[sl], S[sl], S_s[sl], rowok[sl], B, clip_sigma,
                                    clip_iter)
    P = np.zeros((nrows, ncols))
    full = np.empty((nrows, len(cols)))
    full[sl] = model
    full[:r0] = model[0]
    full[r1 + 1:] = model[-1]
    P[:, cols] = full
    info.update(rows_fit=(r0, r1), n_rejected=nrej,
                rms_z=float(np.sqrt(np.mean(np.concatenate(zs) ** 2))) if zs else np.nan)
    return normalise_profile(P, region), info


def _row_fluxes(D, W, Vd, snr_min):
    """Row sums S over the region, their neighbour median S_s, the S/N of S_s and the rows fit to enter
    the profile fit (``D``, ``W``, ``Vd`` the region's columns of deep frame, weights, variance)."""
    inreg = W > 0
    rowfin = (np.isfinite(D) | ~inreg).all(axis=1)
    S = np.sum(np.where(inreg, W * np.nan_to_num(D), 0.0), axis=1)
    var_s = np.sum(np.where(inreg & np.isfinite(Vd) & (Vd > 0), W * W * Vd, 0.0), axis=1)
    # weights and the S/N cut use the median row sum of the +-3 neighbouring rows (S_s): weights
    # S^2 / var with the row's own noisy S would favour rows whose S fluctuated high (whose core
    # fractions are low)
    S_s = _neighbour_median(np.where(rowfin, S, np.nan), 3)
    with np.errstate(all="ignore"):
        snr = np.where(var_s > 0, S_s / np.sqrt(var_s), 0.0)
        snr_own = np.where(var_s > 0, S / np.sqrt(var_s), 0.0)
    # the row's own S/N must pass too: just beyond a spectrum that ends on bright rows (the blue
    # cut-off of the specwcs_0009 map, whose brightest rows are the last ones of the table) a row
    # without star light has bright neighbours, so S_s alone would let its noise fractions D / S into
    # the fit with the weight of a bright row, and the spline's end would ring over ~ 15 rows
    rowok = rowfin & (S_s > 0) & (S > 0) & (snr >= snr_min) & (snr_own >= snr_min)
    return S, S_s, snr, rowok


def _two_pass_fit(D, W, Vd, S, S_s, rowok, B, clip_sigma, max_iter):
    """The B-spline fit of the fractions of rows r0..r1 (all arguments sliced to them): pass 1 with the
    fractions of the row's own sum (Horne 1986, step 5); pass 2 with the fractions of the row flux
    optimally extracted from the deep frame with the pass-1 profile -- a less noisy normaliser, so the
    ratio bias of D / S (a core fraction too high by ~ var(S) / S^2 at low S/N) shrinks.  Returns the
    model fractions ``(r1 - r0 + 1, ncols_region)``, the rejected count and the normalised residuals."""
    inreg = W > 0
    with np.errstate(all="ignore"):
        # variance of a fraction: noise (var / S_s^2) plus a model floor of PROFILE_FLOOR of the core
        # fraction (the smooth model cannot follow a bright row to better than that; without the floor
        # the brightest rows dominate each fit and look like outliers to the rejection)
        core = np.nanmax(np.where(inreg, D, np.nan), axis=1) / S_s
        w = 1.0 / (Vd / S_s[:, None] ** 2 + (PROFILE_FLOOR * core[:, None]) ** 2)
    ok = rowok[:, None] & inreg & np.isfinite(D) & np.isfinite(w) & (w > 0)
    w = np.where(ok, w, 0.0)
    Dz = np.where(ok, D, 0.0)
    Vz = np.where(ok, Vd, np.inf)
    norm = S
    nrej_tot = 0
    for _pass in range(2):
        with np.errstate(all="ignore"):
            F = np.where(ok, Dz / norm[:, None], 0.0)
        model, nrej, zs = _fit_columns(F, w, B, clip_sigma, max_iter)
        nrej_tot += nrej
        Pm = np.clip(model, 0.0, None) * W
        with np.errstate(all="ignore"):
            fopt = np.sum(Pm * Dz / Vz, axis=1) / np.sum(Pm * Pm / Vz, axis=1) * np.sum(model * W, axis=1)
        norm = np.where(np.isfinite(fopt) & (fopt > 0), fopt, norm)
    return model, nrej_tot, zs


def _fit_columns(F, w, B, clip_sigma, max_iter):
    """Weighted least-squares fit of each column of ``F`` ``(n, ncols)`` with the basis ``B`` ``(n, m)``,
    rejecting the worst value per pass above ``clip_sigma`` (in units of the weights' errors, rescaled
    by the robust scatter of the normalised residuals when larger than 1).  Returns (model, n_rejected,
    list of the accepted normalised residuals per column)."""
    model = np.zeros_like(F)
    nrej, zs = 0, []
    for j in range(F.shape[1]):
        wj, fj = w[:, j].copy(), F[:, j]
        if np.count_nonzero(wj) < B.shape[1] + 2:
            continue
        for _ in range(max_iter):
            sw = np.sqrt(wj)
            coef, *_ = np.linalg.lstsq(B * sw[:, None], fj * sw, rcond=None)
            m = B @ coef
            z = (fj - m) * sw
            used = wj > 0
            # robust scale about zero (normalised residuals of a fit), not a MAD about their median
            scale = max(1.0, MAD_TO_SIGMA * float(np.median(np.abs(z[used]))))
            if not np.any(used & (np.abs(z) > clip_sigma * scale)):
                break
            # the worst value only per pass (Horne 1986): one outlier distorts the fit near it
            wj[int(np.argmax(np.where(used, np.abs(z), -1.0)))] = 0.0
            nrej += 1
        model[:, j] = m
        zs.append(z[wj > 0])
    return model, nrej, zs


def _neighbour_median(S, halfwidth):
    """Median of the ``2 * halfwidth`` neighbours of each element of ``S`` (the element itself excluded,
    NaN ignored): a row-flux estimate free of the row's own noise that still follows sharp spectral
    edges (a smooth fit of S overshoots at the MIRI blue cut-off)."""
    n = S.size
    stack = np.full((2 * halfwidth, n), np.nan)
    j = 0
    for k in range(-halfwidth, halfwidth + 1):
        if k == 0:
            continue
        lo, hi = max(0, -k), min(n, n - k)
        stack[j, lo:hi] = S[lo + k:hi + k]
        j += 1
    with quiet_nan_warnings():
        return np.nanmedian(stack, axis=0)


def normalise_profile(P, region):
    """A profile made non-negative, restricted to a region and normalised per row.

    Parameters
    ----------
    P : numpy.ndarray
        ``(nrows, ncols)`` profile model (any normalisation).
    region : numpy.ndarray
        ``(nrows, ncols)`` region weights in [0, 1].

    Returns
    -------
    numpy.ndarray
        ``max(P, 0) * region`` normalised to sum 1 per row; rows without a positive sum get the
        normalised ``region`` (a variance-weighted box).
    """
    prof = np.clip(P, 0.0, None) * region
    s = prof.sum(axis=1)
    flat = s <= 0
    prof[flat] = region[flat]
    s = prof.sum(axis=1, keepdims=True)
    return np.where(s > 0, prof / np.where(s > 0, s, 1.0), 0.0)
