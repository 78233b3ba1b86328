"""DQ initialisation and saturation flagging (group level).

* :func:`dq_init` -- marks the reference columns (PIXELDQ REFERENCE_PIXEL) and flags the first and the
  last group of every integration DO_NOT_USE (the MIRI first-frame reset transient and last-frame
  odd/even-row pull-down, JDox MIRI TSO known issues / jwst ``firstframe`` & ``lastframe`` / exoTEDRF DQInit).
* :func:`flag_saturation` -- flags SATURATED | DO_NOT_USE on the first group at or above the
  saturation threshold and on every later group of that ramp, optionally growing the flag to the
  neighbouring pixels (jwst ``saturation``, ``n_pix_grow_sat``), and AD_FLOOR | DO_NOT_USE on reads
  at or below 0 DN (the ADC floor).
"""

from __future__ import annotations

import logging

import numba
import numpy as np

from ..datamodel import DQ, RampData
from ..errors import ShapeError
from .. import instrument

log = logging.getLogger(__name__)

__all__ = ["dq_init", "flag_saturation"]

_DNU = np.uint32(DQ.DO_NOT_USE)
_SATF = np.uint32(DQ.SATURATED | DQ.DO_NOT_USE)
_ADF = np.uint32(DQ.AD_FLOOR | DQ.DO_NOT_USE)


def dq_init(ramp: RampData, *, flag_first_group: bool = True, flag_last_group: bool = True,
            out: np.ndarray | None = None) -> RampData:
    """Flag the first/last group of every integration DO_NOT_USE and mark the reference columns.

    MIRI first-frame reset transient and last-frame pull-down: JWST pipeline documentation,
    ``firstframe`` / ``lastframe`` steps of calwebb_detector1 (docs/sources.md).

    Parameters
    ----------
    ramp : tsoreduce.datamodel.RampData
        Ramps ``(nints, ngroups, nrows, ncols)`` in DN.
    flag_first_group, flag_last_group : bool
        Flag group 0 / group ``ngroups - 1`` DO_NOT_USE.  A flag that would leave fewer than 2 usable
        groups is not applied (WARNING): NGROUPS <= 3 data need all groups.
    out : numpy.ndarray, optional
        Pre-allocated uint32 GROUPDQ ``(nints, ngroups, nrows, ncols)`` output (else a copy is made).

    Returns
    -------
    tsoreduce.datamodel.RampData
        A new RampData (GROUPDQ and PIXELDQ copied, data shared).  Columns 0-3 get PIXELDQ
        REFERENCE_PIXEL (SLITLESSPRISM reference pixels; N_REFERENCE_COLUMNS in
        :mod:`tsoreduce.reference`); ``meta["S_DQINIT"]`` is COMPLETE.
    """
    ng = ramp.ngroups
    gdq = ramp.groupdq.copy() if out is None else out
    if out is not None:
        np.copyto(gdq, ramp.groupdq)
    want = [g for g, on in ((0, flag_first_group), (ng - 1, flag_last_group)) if on]
    want = sorted(set(want))
    if ng - len(want) < 2:
        log.warning("dq_init: NGROUPS = %d; flagging the first/last group would leave fewer than 2 usable "
                    "groups, so they are NOT flagged", ng)
        want = []
    for g in want:
        gdq[:, g] |= _DNU
    if want:
        log.info("dq_init: group(s) %s of every integration flagged DO_NOT_USE", want)
    pdq = ramp.pixeldq.copy()
    pdq[:, :instrument.N_REFERENCE_COLUMNS] |= np.uint32(DQ.REFERENCE_PIXEL)
    meta = dict(ramp.meta)
    meta["S_DQINIT"] = "COMPLETE"
    return ramp.replace(groupdq=gdq, pixeldq=pdq, meta=meta)


@numba.njit(parallel=True, cache=True)
def _first_saturated(data, thresh, first):
    nint, ng, ny, nx = data.shape
    for task in numba.prange(nint * ny):
        i = task // ny
        y = task % ny
        for x in range(nx):
            t = thresh[y, x]
            f = ng
            for g in range(ng):
                if data[i, g, y, x] >= t:
                    f = g
                    break
            first[i, y, x] = f


@numba.njit(parallel=True, cache=True)
def _apply_saturation(data, gdq, first, ad_floor):
    nint, ng, ny, nx = data.shape
    for task in numba.prange(nint * ny):
        i = task // ny
        y = task % ny
        for x in range(nx):
            f = first[i, y, x]
            for g in range(ng):
                if g >= f:
                    gdq[i, g, y, x] |= _SATF
                elif data[i, g, y, x] <= ad_floor:
                    gdq[i, g, y, x] |= _ADF


def flag_saturation(ramp: RampData, *, saturation=None, n_pix_grow: int = 1, ad_floor: float = 0.0,
                    out: np.ndarray | None = None) -> RampData:
    """Flag saturated groups (and all later groups) SATURATED | DO_NOT_USE.

    Method: JWST pipeline documentation, ``saturation`` step (``n_pix_grow_sat``; docs/sources.md).

    Parameters
    ----------
    ramp : tsoreduce.datamodel.RampData
        Raw ramps ``(nints, ngroups, nrows, ncols)`` in DN (before linearity; MIRI is not
        bias-subtracted).
    saturation : float or numpy.ndarray, optional
        Scalar DN or ``(nrows, ncols)`` map in DN (e.g. from ``tsoreduce.reference.load_saturation``);
        default :data:`tsoreduce.instrument.SATURATION_DN`.  NaN entries mean "no saturation check"
        (PIXELDQ NO_SAT_CHECK).
    n_pix_grow : int
        Grow each saturated pixel's flags to a (2n+1)^2 box of neighbours (charge spill), from the same
        group on (default 1).
    ad_floor : float
        Reads at or below this value (DN) get AD_FLOOR | DO_NOT_USE.
    out : numpy.ndarray, optional
        Pre-allocated uint32 GROUPDQ output.

    Returns
    -------
    tsoreduce.datamodel.RampData
        A new RampData with the flags in GROUPDQ; ``meta["S_SATURA"]`` is COMPLETE.

    Raises
    ------
    ShapeError
        If the saturation map is not ``(nrows, ncols)``.
    """
    shape = ramp.data.shape[2:]
    sat = instrument.SATURATION_DN if saturation is None else saturation
    sat = np.asarray(sat, dtype=np.float32)
    if sat.ndim == 0:
        sat = np.full(shape, float(sat), np.float32)
    if sat.shape != shape:
        raise ShapeError(f"saturation map has shape {sat.shape}, expected {shape}")
    pdq = ramp.pixeldq
    nocheck = ~np.isfinite(sat)
    if nocheck.any():
        pdq = pdq | np.where(nocheck, np.uint32(DQ.NO_SAT_CHECK), np.uint32(0))
        sat = np.where(nocheck, np.float32(np.inf), sat)
    sat = np.ascontiguousarray(sat)
    first = np.empty((ramp.nints,) + shape, np.int32)
    _first_saturated(ramp.data, sat, first)
    if n_pix_grow > 0:
        from scipy.ndimage import minimum_filter
        size = 2 * int(n_pix_grow) + 1
        first = np.ascontiguousarray(minimum_filter(first, size=(1, size, size), mode="nearest"))
    gdq = ramp.groupdq.copy() if out is None else out
    if out is not None:
        np.copyto(gdq, ramp.groupdq)
    _apply_saturation(ramp.data, gdq, first, np.float32(ad_floor))
    nsat = int(np.count_nonzero(first < ramp.ngroups))
    log.info("saturation: %d pixel-integrations reach saturation (threshold median %.0f DN, grow %d px)",
             nsat, float(np.median(sat[np.isfinite(sat)])) if np.isfinite(sat).any() else np.nan, n_pix_grow)
    meta = dict(ramp.meta)
    meta["S_SATURA"] = "COMPLETE"
    return ramp.replace(groupdq=gdq, pixeldq=pdq, meta=meta)
