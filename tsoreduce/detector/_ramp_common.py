"""Pieces shared by the ramp fit (:mod:`tsoreduce.detector.rampfit`) and the fused jump detection
(:mod:`tsoreduce.detector.jumps`): the GLS kernels of a ramp of first differences, the group-DQ bit
constants in the form numba kernels read, and the rateints output arrays.

The GLS of a ramp follows the jwst ``ramp_fitting`` step's likelihood (stcal ramp-fitting
documentation, "optimal weighting"): first differences with variance ``2 R^2 + S / gain`` on the
diagonal and ``-R^2`` next to it, solved by the Thomas algorithm.
"""

from __future__ import annotations

import numba
import numpy as np

from ..datamodel import DQ, RampData, RateData
from ..errors import ShapeError

__all__ = ["DNU", "SAT", "JUMP", "BAD_GROUP", "gls_segment", "full_weights", "fit_pixel", "as_map",
           "fit_outputs", "rate_data"]

# the DQ bits of tsoreduce.datamodel.DQ as uint32 scalars: numba kernels compare them with GROUPDQ
DNU = np.uint32(DQ.DO_NOT_USE)
SAT = np.uint32(DQ.SATURATED)
JUMP = np.uint32(DQ.JUMP_DET)
BAD_GROUP = np.uint32(DQ.DO_NOT_USE | DQ.SATURATED)


@numba.njit(cache=True)
def gls_segment(d, start, n, var_d, r2, work_c, work_d, w):
    """GLS of ``n`` consecutive differences ``d[start:start+n]``; returns (slope, var, var_rn, var_ps)
    in DN/group units.  ``var_d`` = 2R^2 + S/gain (diagonal), ``r2`` = R^2 (minus the off-diagonal)."""
    a = var_d
    b = -r2
    if n == 1:
        return d[start], a, 2.0 * r2, a - 2.0 * r2
    # Thomas algorithm for C w = 1 (C symmetric tridiagonal Toeplitz)
    work_c[0] = b / a
    work_d[0] = 1.0 / a
    for j in range(1, n):
        m = a - b * work_c[j - 1]
        work_c[j] = b / m
        work_d[j] = (1.0 - b * work_d[j - 1]) / m
    w[n - 1] = work_d[n - 1]
    for j in range(n - 2, -1, -1):
        w[j] = work_d[j] - work_c[j] * w[j + 1]
    sw = 0.0
    swd = 0.0
    sww = 0.0
    swx = 0.0
    for j in range(n):
        sw += w[j]
        swd += w[j] * d[start + j]
        sww += w[j] * w[j]
    for j in range(n - 1):
        swx += w[j] * w[j + 1]
    slope = swd / sw
    var_rn = r2 * (2.0 * sww - 2.0 * swx) / (sw * sw)
    var_ps = (var_d - 2.0 * r2) * sww / (sw * sw)
    return slope, 1.0 / sw, var_rn, var_ps


@numba.njit(parallel=True, cache=True)
def full_weights(s_ref, rn, gain, nk, wfull, stats):
    """GLS weights of an uninterrupted run of ``nk`` differences for every pixel whose reference
    signal is known (the common case: a clean ramp), normalised to sum 1, layout (ny, nk, nx);
    stats (ny, 3, nx) = (var, var_rn, var_ps) in DN/group units; -1 in var where the signal is unknown."""
    ny, nx = s_ref.shape
    for y in numba.prange(ny):
        wc = np.empty(max(nk, 1))
        wd = np.empty(max(nk, 1))
        w = np.empty(max(nk, 1))
        d = np.zeros(max(nk, 1))
        for x in range(nx):
            s = s_ref[y, x]
            if s < 0.0 or nk < 1:
                stats[y, 0, x] = -1.0
                continue
            r2 = rn[y, x] * rn[y, x]
            var_d = 2.0 * r2 + s / gain[y, x]
            if var_d <= 0.0:
                var_d = 1e-12
            if nk == 1:
                w[0] = 1.0
                stats[y, 0, x] = var_d
                stats[y, 1, x] = 2.0 * r2
                stats[y, 2, x] = var_d - 2.0 * r2
            else:
                _, v, vr, vp = gls_segment(d, 0, nk, var_d, r2, wc, wd, w)
                sw = 0.0
                for k in range(nk):
                    sw += w[k]
                for k in range(nk):
                    w[k] /= sw
                stats[y, 0, x] = v
                stats[y, 1, x] = vr
                stats[y, 2, x] = vp
            for k in range(nk):
                wfull[y, k, x] = w[k]


@numba.njit(cache=True)
def fit_pixel(data, gdq, i, y, x, g0, g1, s, rn, gain, d, ok, work_c, work_d, w):
    """General path for one ramp (jumps, saturation, unknown signal): returns (rate, var_rn, var_ps,
    usable) in DN/group units, segments combined by inverse variance."""
    nk = g1 - g0
    ndiff = 0
    qa = gdq[i, g0, y, x]
    va = np.float64(data[i, g0, y, x])
    for g in range(g0, g1):
        qb = gdq[i, g + 1, y, x]
        vb = np.float64(data[i, g + 1, y, x])
        good = ((qa | qb) & BAD_GROUP) == 0 and (qb & JUMP) == 0
        ok[g - g0] = good
        d[g - g0] = vb - va
        if good:
            ndiff += 1
        qa = qb
        va = vb
    r2 = rn * rn
    if s < 0.0:
        # no reference signal (e.g. saturated in most integrations): this ramp's own mean
        acc = 0.0
        for k in range(nk):
            if ok[k]:
                acc += d[k]
        s = acc / ndiff if ndiff > 0 else 0.0
        if s < 0.0:
            s = 0.0
    var_d = 2.0 * r2 + s / gain
    if var_d <= 0.0:
        var_d = 1e-12
    inv_sum = 0.0
    num = 0.0
    vr_acc = 0.0
    vp_acc = 0.0
    k = 0
    while k < nk:
        if not ok[k]:
            k += 1
            continue
        start = k
        while k < nk and ok[k]:
            k += 1
        sl, v, vr, vp = gls_segment(d, start, k - start, var_d, r2, work_c, work_d, w)
        iv = 1.0 / v
        inv_sum += iv
        num += sl * iv
        vr_acc += vr * iv * iv
        vp_acc += vp * iv * iv
    if inv_sum > 0.0:
        return num / inv_sum, vr_acc / (inv_sum * inv_sum), vp_acc / (inv_sum * inv_sum), True
    return np.nan, np.nan, np.nan, False


def as_map(value, shape, name) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        return np.full(shape, float(arr))
    if arr.shape != tuple(shape):
        raise ShapeError(f"{name} has shape {arr.shape}, expected a scalar or {tuple(shape)}")
    return np.ascontiguousarray(arr)


def fit_outputs(ramp: RampData, out: dict | None):
    """The four rateints arrays, taken from ``out`` when they have the right shape (pre-allocated)."""
    shape = (ramp.nints,) + ramp.data.shape[2:]
    out = {} if out is None else out
    arrays = []
    for key, dtype in (("rate", np.float32), ("var_poisson", np.float32), ("var_rnoise", np.float32),
                       ("dq", np.uint32)):
        a = out.get(key)
        if a is None or a.shape != shape or a.dtype != dtype:
            a = np.empty(shape, dtype)
        arrays.append(a)
    return tuple(arrays)


def rate_data(ramp: RampData, rate, err, vp, vr, dq) -> RateData:
    """The rateints container (DN/s arrays) with the ramp's times and S_RAMP / BUNIT set."""
    meta = dict(ramp.meta)
    meta["S_RAMP"] = "COMPLETE"
    meta["BUNIT"] = "DN/s"
    return RateData(data=rate, err=err, dq=dq, var_poisson=vp, var_rnoise=vr,
                    int_times=ramp.int_times, meta=meta, units="DN/s")
