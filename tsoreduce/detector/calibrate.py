"""Linearity and dark-current corrections of group-level data.

* :func:`apply_linearity` -- CRDS-format polynomial ``corrected = sum_k c_k raw**k`` per pixel
  (COEFFS ``(ncoeffs, nrows, ncols)``), on raw DN (MIRI is not bias-subtracted; jwst ``linearity``).
* :func:`self_calibrate_linearity` -- without a reference file: a self-calibration from the data.
  For a constant flux the true ramp is linear in time, so any curvature of the median ramp of bright
  pixels is the non-linearity.  With ``raw = T - beta T**2`` (T = linear signal) the second derivative
  of the ramp is ``-2 beta b**2`` (b = DN per group), so a quadratic fit ``raw(g) = a + b g + c g**2``
  of each bright pixel's median-over-integrations ramp gives ``c = -beta b**2``; beta is the weighted
  least-squares solution over the bright pixels, inverted to second order (``T = raw + beta raw**2 + 2 beta**2 raw**3``).  Same idea
  as ExoTiC-MIRI's self-calibrated linearity (github.com/Exo-TiC/ExoTiC-MIRI), with one global coefficient.
* :func:`subtract_dark` -- subtract a dark ramp (SCI ``(ngroups, nrows, ncols)`` or
  ``(nints_dark, ngroups, nrows, ncols)``; for MIRI the first dark integration applies to the first
  integration of the exposure and the last one to all others, jwst ``dark_current``).
"""

from __future__ import annotations

import logging

import numba
import numpy as np
from astropy.stats import mad_std

from ..datamodel import DQ, RampData
from ..errors import ReferenceFileError, ShapeError
from .rampfit import usable_group_range

log = logging.getLogger(__name__)

__all__ = ["apply_linearity", "self_calibrate_linearity", "subtract_dark"]


@numba.njit(parallel=True, cache=True)
def _poly_inplace(data, coeffs):
    nint, ng, ny, nx = data.shape
    nc = coeffs.shape[0]
    for task in numba.prange(nint * ng):
        i = task // ng
        g = task % ng
        for y in range(ny):
            for x in range(nx):
                v = np.float64(data[i, g, y, x])
                acc = coeffs[nc - 1, y, x]
                for k in range(nc - 2, -1, -1):
                    acc = acc * v + coeffs[k, y, x]
                data[i, g, y, x] = acc


def apply_linearity(ramp: RampData, coeffs: np.ndarray, *, coeff_dq: np.ndarray | None = None,
                    inplace: bool = False) -> RampData:
    """Apply a per-pixel linearity polynomial to every read.

    Method: JWST pipeline documentation, ``linearity`` step (CRDS LINEARITY reference, COEFFS
    polynomial in raw DN; docs/sources.md).  Pixels with any non-finite coefficient are left
    uncorrected and get PIXELDQ NO_LIN_CORR.

    Parameters
    ----------
    ramp : tsoreduce.datamodel.RampData
        Raw ramps ``(nints, ngroups, nrows, ncols)`` in DN.
    coeffs : numpy.ndarray
        Float ``(ncoeffs, nrows, ncols)``; ``corrected = sum_k coeffs[k] * raw**k`` (CRDS LINEARITY
        COEFFS layout, cut to the subarray).
    coeff_dq : numpy.ndarray, optional
        ``(nrows, ncols)`` DQ of the reference, OR-ed into PIXELDQ.
    inplace : bool
        Modify ``ramp.data`` itself (for callers that own the array, e.g. Stage 1's working copy).

    Returns
    -------
    tsoreduce.datamodel.RampData
        The corrected ramps (DN); ``meta["S_LINEAR"]`` is COMPLETE.

    Raises
    ------
    ShapeError
        If the coefficient planes do not match the frame or there are fewer than 2.
    """
    coeffs = np.asarray(coeffs, dtype=np.float64)
    shape = ramp.data.shape[2:]
    if coeffs.ndim != 3 or coeffs.shape[1:] != shape or coeffs.shape[0] < 2:
        raise ShapeError(f"linearity coefficients have shape {coeffs.shape}, expected (ncoeffs >= 2, "
                         f"{shape[0]}, {shape[1]})")
    bad = ~np.all(np.isfinite(coeffs), axis=0)
    pdq = ramp.pixeldq.copy()
    if bad.any():
        coeffs = coeffs.copy()
        coeffs[:, bad] = 0.0
        coeffs[1, bad] = 1.0
        pdq[bad] |= np.uint32(DQ.NO_LIN_CORR)
    if coeff_dq is not None:
        pdq |= np.asarray(coeff_dq, dtype=np.uint32)
    data = ramp.data if inplace else ramp.data.copy()
    _poly_inplace(data, np.ascontiguousarray(coeffs))
    log.info("linearity: %d-term polynomial applied (%d pixels without a correction)",
             coeffs.shape[0], int(bad.sum()))
    meta = dict(ramp.meta)
    meta["S_LINEAR"] = "COMPLETE"
    return ramp.replace(data=data, pixeldq=pdq, meta=meta)


def self_calibrate_linearity(ramp: RampData, *, n_bright: int = 300, min_groups: int = 6,
                             min_significance: float = 3.0) -> tuple[np.ndarray | None, dict]:
    """Estimate a global quadratic non-linearity from the curvature of bright-pixel ramps.

    Parameters
    ----------
    ramp : RampData, raw DN (first/last/reset groups already flagged DO_NOT_USE).
    n_bright : number of brightest unsaturated pixels used.
    min_groups : minimum number of usable groups for a curvature measurement.
    min_significance : beta must differ from 0 by this many standard errors to be applied.

    Returns
    -------
    (coeffs, info) -- ``coeffs`` float64 ``(4, nrows, ncols)`` for :func:`apply_linearity`
    (``[0, 1, beta, 2 beta**2]``) or None when the curvature is not measurable/significant (reason in
    ``info["reason"]``); ``info`` holds ``beta`` (1/DN), ``beta_err`` and ``n_pixels``.
    """
    g0, g1 = usable_group_range(ramp.groupdq)
    groups = np.arange(g0, g1 + 1)
    info = {"beta": np.nan, "beta_err": np.nan, "n_pixels": 0}
    if groups.size < min_groups:
        info["reason"] = f"only {groups.size} usable groups (< {min_groups})"
        return None, info
    bad_any = np.any((ramp.groupdq[:, g0:g1 + 1] & np.uint32(DQ.SATURATED | DQ.DO_NOT_USE)) != 0,
                     axis=(0, 1))
    bad_any |= ramp.pixeldq != 0
    # brightness from integration-median endpoint differences (two group planes only)
    span = ramp.data[:, g1] - ramp.data[:, g0]
    bright = np.median(span, axis=0)
    bright[bad_any] = -np.inf
    order = np.argsort(bright, axis=None)[::-1][:n_bright]
    ys, xs = np.unravel_index(order, bright.shape)
    ok = np.isfinite(bright[ys, xs]) & (bright[ys, xs] > 0)
    ys, xs = ys[ok], xs[ok]
    if ys.size < 10:
        info["reason"] = "fewer than 10 bright unsaturated pixels"
        return None, info
    ramps = np.median(ramp.data[:, g0:g1 + 1][:, :, ys, xs], axis=0).astype(np.float64)  # (m, npix)
    gg = (groups - groups[0]).astype(float)
    design = np.stack([np.ones_like(gg), gg, gg * gg], axis=1)
    coef = np.linalg.lstsq(design, ramps, rcond=None)[0]                  # (3, npix)
    b, c = coef[1], coef[2]
    # every pixel's curvature c has about the same noise, and c = -beta b^2: weighted least squares
    # for beta, with its error from the scatter of the residuals
    b2 = b * b
    beta = float(-np.sum(c * b2) / np.sum(b2 * b2))
    resid = c + beta * b2
    sig_c = mad_std(resid)
    beta_err = float(sig_c / np.sqrt(np.sum(b2 * b2)))
    info.update(beta=beta, beta_err=beta_err, n_pixels=int(b.size))
    if not np.isfinite(beta) or abs(beta) < min_significance * beta_err:
        info["reason"] = (f"curvature not significant (beta = {beta:.3g} +/- {beta_err:.2g} /DN from "
                          f"{b.size} pixels)")
        return None, info
    shape = ramp.data.shape[2:]
    coeffs = np.zeros((4,) + shape)
    coeffs[1] = 1.0
    coeffs[2] = beta
    coeffs[3] = 2.0 * beta * beta
    return coeffs, info


def subtract_dark(ramp: RampData, dark: np.ndarray, *, dark_dq: np.ndarray | None = None,
                  inplace: bool = False) -> RampData:
    """Subtract a dark ramp from every integration.

    Method: JWST pipeline documentation, ``dark_current`` step for MIRI (4-D dark: its first
    integration for the exposure's first integration; docs/sources.md).

    Parameters
    ----------
    ramp : tsoreduce.datamodel.RampData
        Ramps ``(nints, ngroups, nrows, ncols)`` in DN (after linearity).
    dark : numpy.ndarray
        ``(ngroups_dark, nrows, ncols)`` or ``(nints_dark, ngroups_dark, nrows, ncols)`` DN with
        ``ngroups_dark >= ngroups``.  With a 4-D dark, dark integration 0 is subtracted from the
        exposure's first integration (INTSTART == 1) and the last dark integration from all others.
    dark_dq : numpy.ndarray, optional
        ``(nrows, ncols)`` DQ OR-ed into PIXELDQ.
    inplace : bool
        Modify ``ramp.data`` itself.

    Returns
    -------
    tsoreduce.datamodel.RampData
        The dark-subtracted ramps (DN); ``meta["S_DARK"]`` is COMPLETE.

    Raises
    ------
    ReferenceFileError
        If the dark has fewer groups than the data or the wrong frame shape.
    """
    dark = np.asarray(dark, dtype=np.float32)
    nints, ng, ny, nx = ramp.data.shape
    if dark.ndim == 3:
        dark = dark[None]
    if dark.ndim != 4 or dark.shape[2:] != (ny, nx):
        raise ReferenceFileError(f"dark has shape {dark.shape}; expected (ngroups, {ny}, {nx}) or "
                                 f"(nints, ngroups, {ny}, {nx})")
    if dark.shape[1] < ng:
        raise ReferenceFileError(f"dark has {dark.shape[1]} groups but the data have {ng}")
    data = ramp.data if inplace else ramp.data.copy()
    first_global = int(ramp.meta.get("INTSTART", 1)) == 1
    for i in range(nints):
        which = 0 if (i == 0 and first_global) else dark.shape[0] - 1
        data[i] -= dark[which, :ng]
    pdq = ramp.pixeldq if dark_dq is None else ramp.pixeldq | np.asarray(dark_dq, np.uint32)
    log.info("dark: subtracted a %d-integration x %d-group dark", dark.shape[0], dark.shape[1])
    meta = dict(ramp.meta)
    meta["S_DARK"] = "COMPLETE"
    return ramp.replace(data=data, pixeldq=pdq, meta=meta)
