"""Ramp fitting: per-pixel, per-integration count rate from group-level data (rateints).

Method (Fixsen et al. 2000; stcal ramp_fitting documentation; documented choice)
--------------------------------------------------------------------------------
Generalised least squares (GLS) on the **first differences** of each ramp.  With a single-read noise
``R`` (DN) and a Poisson signal of ``S`` DN per group interval (``S / gain`` DN^2 of variance), the
``n`` first differences ``d_j = D_{j+1} - D_j`` of an uninterrupted run of good groups have the
tridiagonal covariance ``C = (2 R^2 + S/gain) I - R^2 (shift up + shift down)``.  The best linear
unbiased slope is ``sum(w d) / sum(w)`` with ``w = C^-1 1`` and variance ``1 / sum(w)``; this is the
exact "optimal" weighting for read + Poisson noise that the JWST OLS_C "optimal" weights (Fixsen et al.
2000, SNR-power exponents P) approximate, and that SPARTA evaluates in closed form (github.com/ideasrule/sparta).
``C`` is solved per segment with the Thomas algorithm in O(n).

Segments: a difference is usable when both of its groups are free of DO_NOT_USE and SATURATED and
the later group is not JUMP_DET.  Removing the jump difference makes the remaining runs of
differences statistically independent (they share no read), so combining the per-segment GLS slopes by
inverse variance is exactly the GLS solution of the whole ramp.

Bias control: the weights depend on ``S``; if ``S`` were estimated from the same ramp the weights
would correlate with the noise and bias faint slopes.  For a TSO we estimate ``S`` per pixel as the
**median over integrations** (:func:`poisson_signal_per_group`), which is effectively noise-free, so
the weights are fixed numbers and the slope is unbiased.  ``VAR_POISSON`` and ``VAR_RNOISE`` are the
Poisson and read-noise parts of the variance of that estimator (they add up to ``ERR**2``).

The kernel runs in numba, parallel over (integration, row) with ``prange``.
"""

from __future__ import annotations

import logging
import math

import numba
import numpy as np

from ..datamodel import RampData, RateData
from .. import instrument as inst
from ._ramp_common import (BAD_GROUP, DNU, JUMP, SAT, as_map, fit_outputs, fit_pixel, full_weights,
                           rate_data)
from ._select import median_inplace

log = logging.getLogger(__name__)

__all__ = ["fit_ramps", "poisson_signal_per_group", "usable_group_range", "group_time"]



def group_time(meta: dict) -> float:
    """Seconds between group starts: TGROUP, else TFRAME, else the SLITLESSPRISM FAST frame time.

    A fallback is a WARNING and is recorded in ``meta['TGRPSRC']`` (the keyword used, or 'DEFAULT'),
    which the rateints header carries; ``meta`` is updated in place.  A value that is present but
    non-finite or <= 0 counts as absent.

    Parameters
    ----------
    meta : dict
        Header keywords of the ramps (TGROUP, TFRAME); TGRPSRC is set on a fallback.

    Returns
    -------
    float
        The group time, s.
    """
    for key in ("TGROUP", "TFRAME"):
        v = meta.get(key)
        try:
            v = None if v is None else float(v)
        except (TypeError, ValueError):
            v = None
        if v is not None and np.isfinite(v) and v > 0:
            if key != "TGROUP" and meta.get("TGRPSRC") != key:
                log.warning("group time: no usable TGROUP in the header; using TFRAME = %g s", v)
                meta["TGRPSRC"] = key
            return v
    if meta.get("TGRPSRC") != "DEFAULT":
        log.warning("group time: neither TGROUP nor TFRAME usable in the header; using the SLITLESSPRISM "
                    "FASTR1 frame time %g s (header TGRPSRC = 'DEFAULT'); rates scale as 1 / this time",
                    inst.TFRAME)
        meta["TGRPSRC"] = "DEFAULT"
    return inst.TFRAME


def usable_group_range(groupdq: np.ndarray) -> tuple[int, int]:
    """``(first, last)`` group indices (inclusive) not flagged DO_NOT_USE in every pixel of integration 0.

    The first/last-group and reset-drop flags are the same for every pixel, so they define the common
    group range; pixel-level flags (saturation, jumps) are handled per pixel.

    Parameters
    ----------
    groupdq : numpy.ndarray
        uint ``(nints, ngroups, nrows, ncols)`` group DQ.

    Returns
    -------
    tuple of int
        ``(first, last)`` inclusive; ``(0, -1)`` when no group is usable.
    """
    plane_dnu = np.all((groupdq[0] & DNU) != 0, axis=(1, 2))
    good = np.flatnonzero(~plane_dnu)
    if good.size == 0:
        return 0, -1
    return int(good[0]), int(good[-1])


@numba.njit(parallel=True, cache=True)
def _fit_kernel(data, gdq, pixeldq, s_ref, rn, gain, g0, g1, wfull, stats, rate, var_p, var_r, dq_out):
    nint, ng, ny, nx = data.shape
    nk = g1 - g0
    for task in numba.prange(nint * ny):
        i = task // ny
        y = task % ny
        m = max(nk, 1)
        d = np.empty(m)
        ok = np.empty(m, np.bool_)
        work_c = np.empty(m)
        work_d = np.empty(m)
        w = np.empty(m)
        acc = np.zeros(nx)
        qor = np.zeros(nx, np.uint32)
        # clean-ramp fast path, vectorised along the row: precomputed GLS weights (sum 1)
        for x in range(nx):
            qor[x] = gdq[i, g0, y, x]
        for k in range(nk):
            g = g0 + k
            for x in range(nx):
                qor[x] |= gdq[i, g + 1, y, x]
                acc[x] += wfull[y, k, x] * (np.float64(data[i, g + 1, y, x]) - np.float64(data[i, g, y, x]))
        for x in range(nx):
            q = pixeldq[y, x] | (qor[x] & (JUMP | SAT))
            if (qor[x] & (BAD_GROUP | JUMP)) == 0 and nk > 0 and stats[y, 0, x] > 0.0:
                rate[i, y, x] = acc[x]
                var_r[i, y, x] = stats[y, 1, x]
                var_p[i, y, x] = stats[y, 2, x]
            else:
                r, vr, vp, good = fit_pixel(data, gdq, i, y, x, g0, g1, s_ref[y, x], rn[y, x], gain[y, x],
                                             d, ok, work_c, work_d, w)
                rate[i, y, x] = r
                var_r[i, y, x] = vr
                var_p[i, y, x] = vp
                if not good:
                    q |= DNU
            dq_out[i, y, x] = q


@numba.njit(parallel=True, cache=True)
def _endpoint_median(data, gdq, g0, g1, out):
    """Per pixel: median over integrations of (D[g1] - D[g0]) / (g1 - g0) where neither end is
    flagged (and the difference is finite); -1 if that holds in no more than half of the
    integrations; clipped at 0."""
    nint, ng, ny, nx = data.shape
    span = g1 - g0
    for y in numba.prange(ny):
        vals = np.empty((nx, nint))
        cnt = np.zeros(nx, np.int64)
        for i in range(nint):
            for x in range(nx):
                v = (np.float64(data[i, g1, y, x]) - np.float64(data[i, g0, y, x])) / span
                if ((gdq[i, g0, y, x] | gdq[i, g1, y, x]) & BAD_GROUP) == 0 and math.isfinite(v):
                    vals[x, cnt[x]] = v
                    cnt[x] += 1
        for x in range(nx):
            n = cnt[x]
            if 2 * n <= nint:
                out[y, x] = -1.0
            else:
                m = median_inplace(vals[x], n)
                out[y, x] = m if m > 0.0 else 0.0


def poisson_signal_per_group(ramp: RampData, g0: int | None = None, g1: int | None = None) -> np.ndarray:
    """Robust per-pixel signal per group interval (DN/group) for noise models, float64 ``(nrows, ncols)``.

    The median over integrations of ``(D[g1] - D[g0]) / (g1 - g0)`` with ``g0, g1`` the first and last
    usable groups (only two group planes are read, so it is cheap).  Cosmic rays in single
    integrations do not move the median.  Pixels whose end group is saturated or unusable in more than
    half of the integrations get ``-1`` (the fit then uses each ramp's own mean difference).  Values
    are clipped at 0 (negative signal carries no Poisson noise).

    Parameters
    ----------
    ramp : RampData
        ``(nints, ngroups, nrows, ncols)`` ramps, DN.
    g0, g1 : int, optional
        First and last usable groups (default :func:`usable_group_range`).

    Returns
    -------
    numpy.ndarray
        float64 ``(nrows, ncols)``, DN per group; -1 where unknown.
    """
    if g0 is None or g1 is None:
        g0, g1 = usable_group_range(ramp.groupdq)
    if g1 <= g0:
        return np.full(ramp.data.shape[2:], -1.0)
    out = np.empty(ramp.data.shape[2:])
    _endpoint_median(ramp.data, ramp.groupdq, g0, g1, out)
    return out


def fit_ramps(ramp: RampData, *, read_noise=None, gain=None, signal_per_group=None,
              out: dict | None = None) -> RateData:
    """Fit every ramp of ``ramp`` and return the rateints product (DN/s).

    Parameters
    ----------
    ramp : RampData
        ``data`` ``(nints, ngroups, nrows, ncols)`` in DN after Stage 1 corrections; ``groupdq`` flags
        DO_NOT_USE / SATURATED / JUMP_DET; ``meta`` TGROUP (s) sets the time axis.
    read_noise : float or ``(nrows, ncols)`` array, DN per single read (default
        :data:`tsoreduce.instrument.READ_NOISE_DN`).
    gain : float or ``(nrows, ncols)`` array, e-/DN (default :data:`tsoreduce.instrument.GAIN`); used only
        for the Poisson variance -- the output stays in DN/s.
    signal_per_group : ``(nrows, ncols)`` DN per group interval used in the weights and the Poisson
        variance; default :func:`poisson_signal_per_group` (median over integrations).  Negative
        entries mean "use this ramp's own mean difference".
    out : optional dict of pre-allocated float32 ``(nints, nrows, ncols)`` arrays ``rate``, ``var_poisson``,
        ``var_rnoise`` and uint32 ``dq`` to fill (avoids first-touch page faults on repeated calls).

    Returns
    -------
    RateData with ``data`` (DN/s), ``err`` = sqrt(var_poisson + var_rnoise) (DN/s), ``var_poisson``,
    ``var_rnoise`` (DN^2/s^2), ``dq`` = PIXELDQ | JUMP_DET / SATURATED seen in the ramp | DO_NOT_USE
    (and NaN data) where no usable difference exists; ``int_times`` and ``meta`` propagated.

    Raises
    ------
    ShapeError if ``read_noise``/``gain``/``signal_per_group`` do not match the frame shape.
    """
    nints, ngroups, ny, nx = ramp.data.shape
    frame = (ny, nx)
    rn = as_map(inst.READ_NOISE_DN if read_noise is None else read_noise, frame, "read_noise")
    gn = as_map(inst.GAIN if gain is None else gain, frame, "gain")
    g0, g1 = usable_group_range(ramp.groupdq)
    if g1 - g0 < 1:
        log.warning("ramp fit: fewer than 2 usable groups (range %d..%d); every rate is NaN", g0, g1)
    if signal_per_group is None:
        signal_per_group = poisson_signal_per_group(ramp, g0, g1)
    s_ref = as_map(signal_per_group, frame, "signal_per_group")
    rate, vp, vr, dq = fit_outputs(ramp, out)
    if g1 - g0 < 1:
        # no difference anywhere: still through the kernel path so DQ gets PIXELDQ | DO_NOT_USE
        g1 = g0
    nk = max(g1 - g0, 0)
    wfull = np.empty((ny, max(nk, 1), nx))
    stats = np.empty((ny, 3, nx))
    full_weights(s_ref, rn, gn, nk, wfull, stats)
    _fit_kernel(ramp.data, ramp.groupdq, ramp.pixeldq, s_ref, rn, gn, g0, g1, wfull, stats, rate, vp, vr, dq)
    return _finish_rates(ramp, rate, vp, vr, dq)


def _finish_rates(ramp: RampData, rate, vp, vr, dq) -> RateData:
    """Scale DN/group -> DN/s and build the RateData."""
    tg = group_time(ramp.meta)
    inv_t2 = np.float32(1.0 / (tg * tg))
    rate *= np.float32(1.0 / tg)
    vp *= inv_t2
    vr *= inv_t2
    return rate_data(ramp, rate, np.sqrt(vp + vr), vp, vr, dq)
