"""Stage 3 step 3b: optimal extraction (Horne 1986, PASP 98, 609; Marsh 1989, PASP 101, 1032).

The profile is a smooth model of the deep frame (:func:`tsoreduce.extraction.profile.smooth_profile`),
optionally moved with the measured per-integration trace offset (SPARTA's shifted profile); the
variance is the ramp-fit ERR^2 made independent of each pixel's own noise
(:func:`tsoreduce.extraction.profile.pixel_variance`); outliers are rejected the worst pixel per row and
pass (Horne 1986).  Only the profile region's columns are touched, in blocks of integrations, so the
memory stays bounded whatever the number of integrations.  Sources: docs/sources.md.
"""

from __future__ import annotations

import logging

import numpy as np
from scipy.interpolate import CubicSpline

from ..datamodel import DQ, RateData
from ..errors import ShapeError
from ..spectroscopic import BAD_PIXEL_FLAGS
from ._blocks import blocks, clean, element_dq
from .box import box_weights
from .profile import ESTIMATED_VARIANCE_FACTOR, normalise_profile, pixel_variance, smooth_profile

log = logging.getLogger(__name__)

__all__ = ["optimal_extract"]


def _horne_block(d, bad, P, V, clip_sigma, max_iter):
    """Horne (1986) iterations for a block of integrations; d, bad, P, V ``(n, nrows, ncols)`` (P
    normalised per row over the profile region; V may broadcast).  Returns flux, err, the accepted
    profile weight ``sum M P``, the number of rejected pixels and the accepted-pixel mask M."""
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
    nrows, ncols = model.shape
    x = np.arange(ncols, dtype=float)
    out = np.empty((len(shifts), nrows, c1 - c0))
    spl = CubicSpline(x, model, axis=1) if np.any(shifts != 0) else None
    for k, dx in enumerate(shifts):
        prof = model if (spl is None or dx == 0) else spl(x - dx)
        out[k] = normalise_profile(prof, region)[:, c0:c1]
    return out


def _aperture_variance(calints, c0, c1):
    """Variance model V ``(nrows, c1 - c0)`` of the region's columns (:func:`pixel_variance` of the
    measured values), gaps filled with the median and a WARNING; and whether V is usable at all."""
    # measured values only (not flagged, not estimated); a bool cube of the region's columns only
    usable = np.isfinite(calints.data[:, :, c0:c1]) & (
        (calints.dq[:, :, c0:c1] & np.uint32(int(BAD_PIXEL_FLAGS | DQ.FLUX_ESTIMATED))) == 0)
    V = pixel_variance(calints.err[:, :, c0:c1], usable)
    del usable
    good = np.isfinite(V) & (V > 0)
    pos = V[good]
    meaningful = pos.size > 0
    if not meaningful:
        # e.g. a noiseless simulation: the estimator stays unbiased, only its weights lose optimality
        log.warning("optimal extraction: no finite positive ERR in the %d x %d aperture pixels; uniform "
                    "variance used (profile-weighted least squares, no outlier rejection) and the "
                    "errors are not meaningful", V.shape[0], V.shape[1])
        pos = np.ones(1)
    nfill = int((~good).sum())
    if nfill:
        log.warning("optimal extraction: %d aperture pixels without a usable ERR in +-3 rows; their "
                    "variance set to the median %.3g", nfill, float(np.median(pos)))
    return np.where(good, V, np.median(pos)), meaningful


def _extract_blocks(calints, model, region, wap, V, c0, c1, shifts, clip_sigma, max_iter):
    """Horne's estimator over blocks of integrations; returns flux, err, accepted profile weight,
    estimated-flux weight (each ``(nints, nrows)``), the rejected count and the unshifted profile."""
    nints, nrows = calints.data.shape[:2]
    same = not np.any(shifts)
    P0 = _profiles(model, region, c0, c1, np.zeros(1))
    apw = (wap[:, c0:c1] > 0)[None]
    out = {k: np.empty((nints, nrows)) for k in ("flux", "err", "sp", "nest")}
    n_rej = 0
    for blk in blocks(nints, "optimal extraction"):
        d, bad, est = clean(calints.data[blk, :, c0:c1], calints.dq[blk, :, c0:c1])
        P = np.broadcast_to(P0, d.shape) if same else _profiles(model, region, c0, c1, shifts[blk])
        # pixels outside the aperture never enter the sums (their P still normalises the profile)
        Vb = np.where(est, ESTIMATED_VARIANCE_FACTOR * V[None], V[None])
        out["flux"][blk], out["err"][blk], out["sp"][blk], nr, M = _horne_block(
            d, bad | ~apw, P, Vb, clip_sigma, max_iter)
        out["nest"][blk] = np.einsum("iyx,iyx->iy", (M & est).astype(float), P)
        n_rej += nr
    return out, n_rej, P0, apw


def optimal_extract(calints: RateData, deep_frame, trace, *, aperture_halfwidth=6.0, clip_sigma=5.0,
                    max_iter=10, shifts=None, profile_halfwidth=10.5, profile_knot_rows=40.0):
    """Optimal extraction (Horne 1986, PASP 98, 609; Marsh 1989, PASP 101, 1032).

    Profile P(y,x): a smooth model of the deep frame (:func:`~tsoreduce.extraction.profile.smooth_profile`:
    per column, the fraction of the row's flux fitted with a cubic B-spline in row with iterative
    rejection, clipped at 0), normalised to sum 1 per row over the profile region
    [trace - H, trace + H], ``H = max(profile_halfwidth, aperture_halfwidth)``; only pixels inside the
    aperture [trace - h, trace + h] (``h = aperture_halfwidth``) enter the sums, so the estimate is the
    flux in the profile region whatever the aperture (independent of ``h`` within its noise, as the
    21-px box for the default H = 10.5).  With ``shifts`` the model is moved by that amount for each
    integration by cubic-spline interpolation along the row (SPARTA's shifted profile).  Variance
    V(y,x): the ramp-fit read + Poisson variance ERR^2, median over integrations and over +-3 rows of
    the same column (:func:`~tsoreduce.extraction.profile.pixel_variance`).  Then per integration and row

        f = sum M P D / V / sum M P^2 / V,   var f = sum M P / sum M P^2 / V,

    with M the mask of accepted pixels; pixels with ``(D - f P)^2 / V > clip_sigma^2`` are masked
    -- the worst one per row and pass, as in Horne (1986) -- and f recomputed, up to ``max_iter`` passes.
    Pixels whose flux Stage 2 estimated (FLUX_ESTIMATED, DO_NOT_USE clear) are used with their estimate
    and V x ``ESTIMATED_VARIANCE_FACTOR``; the element is flagged FLUX_ESTIMATED.  Unrepaired bad
    pixels are excluded (M = 0); an element with less than half of its profile weight accepted is
    flagged DO_NOT_USE.  Progress bar over the integration blocks when
    :func:`tsoreduce.contract.progress_enabled`.

    Parameters
    ----------
    calints : RateData
        ``(nints, nrows, ncols)`` background-subtracted integrations (DN/s or MJy/sr).
    deep_frame : numpy.ndarray
        ``(nrows, ncols)`` deep frame (median of the baseline integrations), same units.
    trace : numpy.ndarray
        ``(nrows,)`` trace centre columns.
    aperture_halfwidth : float
        Half-width h (px) of the aperture whose pixels enter the sums.
    clip_sigma : float
        Outlier threshold (sigma).
    max_iter : int
        Maximum rejection passes.
    shifts : numpy.ndarray or None
        ``(nints,)`` profile shifts (columns), e.g. the measured trace offsets; None: no shift.
    profile_halfwidth : float
        Half-width (px) of the profile normalisation region.
    profile_knot_rows : float
        Knot spacing (rows) of the profile's B-spline.

    Returns
    -------
    flux, err : numpy.ndarray
        ``(nints, nrows)`` float64 in the data units.
    dq : numpy.ndarray
        ``(nints, nrows)`` uint32 element flags.
    n_rejected : int
        Pixel values rejected as outliers.

    Raises
    ------
    ShapeError
        If ``shifts`` is not ``(nints,)``.
    """
    nints, nrows, ncols = calints.data.shape
    shifts = np.zeros(nints) if shifts is None else np.asarray(shifts, float)
    if shifts.shape != (nints,):
        raise ShapeError(f"optimal_extract: shifts has shape {shifts.shape}, expected ({nints},)")
    H = max(float(profile_halfwidth), float(aperture_halfwidth))
    region = box_weights(trace, 2 * H, ncols)
    wap = box_weights(trace, 2 * aperture_halfwidth, ncols)
    # only the region's columns are touched
    cols = np.flatnonzero(region.any(axis=0))
    c0, c1 = int(cols.min()), int(cols.max()) + 1
    V, meaningful = _aperture_variance(calints, c0, c1)
    if not meaningful:
        clip_sigma = np.inf
    Vfull = np.full((nrows, ncols), np.nan)
    Vfull[:, c0:c1] = V
    # variance of the deep frame (a median over the integrations: pi/2 x the variance of a mean)
    model, pinfo = smooth_profile(np.asarray(deep_frame, float), Vfull * (0.5 * np.pi / nints), region,
                                  knot_rows=profile_knot_rows)
    out, n_rej, P0, apw = _extract_blocks(calints, model, region, wap, V, c0, c1, shifts, clip_sigma,
                                          max_iter)
    # a row with less than half of its profile weight accepted is unreliable
    dq = element_dq(((out["sp"] < 0.5) | ~np.isfinite(out["flux"])).astype(int), out["nest"])
    log.info("optimal extraction: aperture +-%.1f px, smooth profile over +-%.1f px (B-spline knots every "
             "%.0f rows, rows %s fitted, %d fraction values rejected), %d pixel values rejected (%.2g %%); "
             "%d elements contain estimated flux", aperture_halfwidth, H, profile_knot_rows,
             pinfo["rows_fit"], pinfo["n_rejected"], n_rej,
             100 * n_rej / max(1, int(((P0 > 0) & apw).sum()) * nints), int((out["nest"] > 0).sum()))
    return out["flux"], out["err"], dq, n_rej
