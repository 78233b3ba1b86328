"""numba kernel of the LRS simulator: turns one integration's per-frame charge into raw reads.

Fusing the cumulative sum, RSCD, bias, the inverse linearity (Newton), read noise, EMI and clipping in
one pass keeps the default 60 x 30-group simulation to a few seconds (a numpy version touched every
``(ngroups, 416, 72)`` temporary ~ 20 times).  No random numbers are drawn here, so results do not
depend on the thread count.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

#: Newton iterations of the inverse linearity per read (see raw_reads)
NEWTON_STEPS = 4


@njit(cache=True, parallel=True)
def raw_reads(frames_e, gain, rscd_shape, rscd_amp, bias, coeffs, do_nonlin, rn_draw, rn_map,
              emi_sin_g, emi_cos_g, emi_cos_p, emi_sin_p, sat, out):
    """Fill ``out`` (float32 ``(ngroups, ny, nx)``) with integer-valued raw DN.

    frames_e : float64 ``(ngroups, ny, nx)`` charge per frame in e- (cosmic rays already added);
    rscd_shape : ``(ngroups,)``; rscd_amp : ``(ny, nx)`` DN; bias : ``(ny, nx)`` DN;
    coeffs : ``(ncoeffs, ny, nx)`` linearity polynomial (corrected = sum c_k raw**k), inverted by Newton
    iterations when ``do_nonlin``; rn_draw : float32 ``(ngroups, ny, nx)`` standard normals (zeros for no
    read noise); rn_map : ``(ny, nx)`` DN; emi_sin_g / emi_cos_g : ``(nemi, ngroups)`` sin / cos of
    ``2 pi f (t_int + t_group)`` times the amplitude; emi_cos_p / emi_sin_p : ``(nemi, ny, nx)`` of
    ``2 pi f t_pixel + phase``; sat : ``(ny, nx)`` DN clip level.
    """
    ng, ny, nx = frames_e.shape
    nk = coeffs.shape[0]
    nemi = emi_sin_g.shape[0]
    for r in prange(ny):
        # per-row state; every inner loop runs along columns so arrays are read contiguously and the
        # loops vectorise
        cum = np.zeros(nx)
        x = np.empty(nx)
        val = np.empty(nx)
        for g in range(ng):
            for c in range(nx):
                cum[c] += frames_e[g, r, c]
                val[c] = bias[r, c] + cum[c] / gain + rscd_shape[g] * rscd_amp[r, c]
            if do_nonlin:
                # Newton from the previous group's solution (ramps change by < ~ 3000 DN per group): the
                # error after n steps is ~ (c2 delta^2)^(2^n) / ..., < 1e-6 DN after NEWTON_STEPS
                for c in range(nx):
                    xc = val[c] if g == 0 else x[c]
                    if nk == 4:  # the usual cubic, unrolled so the loop vectorises
                        c0, c1, c2, c3 = coeffs[0, r, c], coeffs[1, r, c], coeffs[2, r, c], coeffs[3, r, c]
                        for _ in range(NEWTON_STEPS):
                            f = ((c3 * xc + c2) * xc + c1) * xc + c0
                            d = (3.0 * c3 * xc + 2.0 * c2) * xc + c1
                            xc -= (f - val[c]) / d
                    else:
                        for _ in range(NEWTON_STEPS):
                            f = 0.0
                            d = 0.0
                            for k in range(nk - 1, -1, -1):
                                d = d * xc + f
                                f = f * xc + coeffs[k, r, c]
                            xc -= (f - val[c]) / d
                    x[c] = xc
                    val[c] = xc
            for e in range(nemi):
                sg = emi_sin_g[e, g]
                cg = emi_cos_g[e, g]
                for c in range(nx):
                    val[c] += sg * emi_cos_p[e, r, c] + cg * emi_sin_p[e, r, c]
            for c in range(nx):
                v = val[c] + rn_draw[g, r, c] * rn_map[r, c]
                v = min(v, sat[r, c], 65535.0)
                v = max(v, 0.0)
                out[g, r, c] = np.float32(np.rint(v))


#: per-frame mean below which :func:`poisson_by_inversion` samples by CDF inversion (exact)
POISSON_INVERSION_MAX = 50.0
#: length of the per-pixel CDF table: covers lambda < 50 to beyond 14 sigma (P(k >= 160) < 1e-40)
_CDF_LEN = 160


@njit(cache=True, parallel=True)
def poisson_by_inversion(lam, u, out):
    """Exact Poisson deviates by inversion of the CDF for pixels with ``lam < POISSON_INVERSION_MAX``.

    lam : ``(ny, nx)`` mean per frame; u : float64 ``(nframes, ny, nx)`` uniform deviates in [0, 1)
    (from a numpy Generator, so the result is reproducible whatever the thread count); out : float64,
    same shape as ``u``: filled where ``lam`` is small, untouched elsewhere.  One uniform per deviate:
    the smallest k with CDF(k) > u (Devroye 1986, "Non-Uniform Random Variate Generation", ch. X.3).
    The CDF of each pixel is tabulated once and searched from the mode, so a deviate costs
    ~ sqrt(lambda) comparisons and no division; frames are visited row by row so ``u`` is read
    contiguously.
    """
    nf, ny, nx = u.shape
    inv_k = 1.0 / np.maximum(np.arange(_CDF_LEN), 1.0)
    for r in prange(ny):
        cdf = np.empty((nx, _CDF_LEN))
        mode = np.zeros(nx, np.int64)
        for c in range(nx):
            lm = lam[r, c]
            if lm >= POISSON_INVERSION_MAX:
                continue
            # table up to lambda + 12 sqrt(lambda) + 12: the tail beyond has probability < 1e-25
            kmax = min(_CDF_LEN, int(lm + 12.0 * np.sqrt(lm) + 12.0))
            p = np.exp(-lm)
            s = p
            cdf[c, 0] = s
            for k in range(1, kmax):
                p *= lm * inv_k[k]
                s += p
                cdf[c, k] = s
            cdf[c, kmax - 1] = 2.0  # sentinel: the upward search always stops
            mode[c] = int(lm)
        for g in range(nf):
            for c in range(nx):
                if lam[r, c] >= POISSON_INVERSION_MAX:
                    continue
                uu = u[g, r, c]
                k = mode[c]
                if uu < cdf[c, k]:
                    while k > 0 and uu < cdf[c, k - 1]:
                        k -= 1
                else:
                    while uu >= cdf[c, k]:
                        k += 1
                out[g, r, c] = k
