"""Fused numba kernel: systematics x astrophysics -> Gaussian log-likelihood, for many walkers at once.

One pass over the integrations per walker instead of ~20 temporary ``(nwalkers, nt)`` numpy arrays
(the numpy version is memory-bound and spends most of its time in np.exp / np.cos on this machine;
see benchmarks/bench_stage4.py).  The formulas are those of :mod:`.systematics` and :mod:`.models`.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = ["loglike_kernel", "linear_kernel"]


@njit(cache=True, fastmath={"reassoc", "contract", "arcp"})
def loglike_kernel(flux, err, mode, A, E, fp, pc, trig, f0, ramp, nramp, dt_start, poly, powers, decorr, z,
                   noise_kind, noise, sum_log_err, ramp_k, ramp_eps, ramp_step):
    """Log-likelihood per walker ``(nw,)``.

    mode 0: astro = A;  mode 1: astro = 1 + fp E;  mode 2: astro = A + Fp E with
    Fp = fp + pc0 (cos th - 1) - pc1 sin th + pc2 (cos 2th - 1) - pc3 sin 2th, ``trig`` = (cos th, sin th,
    cos 2th, sin 2th) ``(4, nt)``.  Systematics f0 (1 + a1 e^{-dt/tau1} + a2 e^{-dt/tau2})
    (1 + sum c_k powers_k) (1 + sum d_j z_j); ``ramp`` ``(nw, 4)`` = a1, tau1, a2, tau2, ``nramp`` 0/1/2.
    noise_kind 0: sigma = err; 1: sigma = noise * err; 2: sigma^2 = err^2 + (1e-6 noise f0)^2.

    Ramp exponentials without one exp per point: on a regular cadence dt_i = k_i * step + eps_i, so
    e^{-dt_i/tau} = q^{k_i} e^{-eps_i/tau} with q = e^{-step/tau} updated multiplicatively and the small
    eps term by its Taylor series (|eps/tau| < 1e-2 is checked by the caller; ramp_step <= 0 means
    irregular times: plain exp).  Exact to ~1e-12 relative.
    """
    nw = f0.shape[0]
    nt = flux.shape[0]
    npoly = powers.shape[0]
    out = np.empty(nw)
    inv_err = 1.0 / err
    half_log2pi = 0.5 * math.log(2.0 * math.pi)
    g = np.empty(nt)
    for w in range(nw):
        # astro x ramp x decorrelation: the same factor the marginalised likelihood uses
        _nonlinear_curve(w, g, mode, A, E, fp, pc, trig, ramp, nramp, dt_start, decorr, z, ramp_k, ramp_eps,
                         ramp_step)
        chi2 = 0.0
        slog = 0.0
        for i in range(nt):
            s = f0[w] * g[i]
            if npoly > 0:
                p = 1.0
                for k in range(npoly):
                    p += poly[w, k] * powers[k, i]
                s *= p
            res = flux[i] - s
            if noise_kind <= 1:
                x = res * inv_err[i]
                chi2 += x * x
            else:
                j = 1e-6 * noise[w] * f0[w]
                v = err[i] * err[i] + j * j
                chi2 += res * res / v
                slog += 0.5 * math.log(v)
        if noise_kind == 0:
            slog = sum_log_err
        elif noise_kind == 1:
            chi2 /= noise[w] * noise[w]
            slog = sum_log_err + nt * math.log(noise[w])
        out[w] = -0.5 * chi2 - slog - nt * half_log2pi
    return out


@njit(cache=True, fastmath={"reassoc", "contract", "arcp"})
def _nonlinear_curve(w, g, mode, A, E, fp, pc, trig, ramp, nramp, dt_start, decorr, z, ramp_k, ramp_eps,
                     ramp_step):
    """Fill ``g`` ``(nt,)`` with astro x ramp x decorrelation of walker ``w`` (no f0, no polynomial): the
    factor that multiplies the linear baseline (used by :func:`loglike_kernel` and :func:`linear_kernel`)."""
    nt = g.shape[0]
    nreg = z.shape[0]
    a1 = ramp[w, 0]
    a2 = ramp[w, 2]
    inv1 = 1.0 / ramp[w, 1] if nramp >= 1 else 0.0
    inv2 = 1.0 / ramp[w, 3] if nramp >= 2 else 0.0
    regular = ramp_step > 0.0
    q1 = math.exp(-ramp_step * inv1) if regular else 0.0
    q2 = math.exp(-ramp_step * inv2) if regular else 0.0
    c1 = math.exp(-ramp_k[0] * ramp_step * inv1) if regular else 0.0
    c2 = math.exp(-ramp_k[0] * ramp_step * inv2) if regular else 0.0
    kprev = ramp_k[0]
    done1 = nramp < 1
    done2 = nramp < 2
    for i in range(nt):
        dt = dt_start[i]
        r = 1.0
        if regular and not (done1 and done2):
            m = ramp_k[i] - kprev
            if m != 0:
                if m == 1:
                    c1 *= q1
                    c2 *= q2
                else:
                    c1 *= q1 ** m
                    c2 *= q2 ** m
                kprev = ramp_k[i]
        if not done1:
            x = dt * inv1
            if x > 30.0 and dt >= 0.0:
                done1 = True
            elif regular:
                e = ramp_eps[i] * inv1
                r += a1 * c1 * (1.0 - e * (1.0 - e * (0.5 - e / 6.0)))
            else:
                r += a1 * math.exp(-x)
        if not done2:
            x = dt * inv2
            if x > 30.0 and dt >= 0.0:
                done2 = True
            elif regular:
                e = ramp_eps[i] * inv2
                r += a2 * c2 * (1.0 - e * (1.0 - e * (0.5 - e / 6.0)))
            else:
                r += a2 * math.exp(-x)
        if nreg > 0:
            d = 1.0
            for j in range(nreg):
                d += decorr[w, j] * z[j, i]
            r *= d
        if mode == 0:
            astro = A[w, i]
        elif mode == 1:
            astro = 1.0 + fp[w] * E[w, i]
        else:
            planet = fp[w] + pc[w, 0] * (trig[0, i] - 1.0) - pc[w, 1] * trig[1, i] \
                + pc[w, 2] * (trig[2, i] - 1.0) - pc[w, 3] * trig[3, i]
            astro = A[w, i] + planet * E[w, i]
        g[i] = astro * r


@njit(cache=True, fastmath={"reassoc", "contract", "arcp"})
def linear_kernel(flux, ivar, basis, beta_ref, mode, A, E, fp, pc, trig, ramp, nramp, dt_start, decorr, z, ramp_k,
                  ramp_eps, ramp_step):
    """Weighted linear least squares of the baseline coefficients per walker, in one pass.

    The model is ``g_w(t) * sum_j beta_j basis_j(t)`` with ``g_w`` from :func:`_nonlinear_curve`,
    ``basis`` ``(m, nt)``, weights ``ivar`` = 1 / err^2 ``(nt,)``.  The sums are taken about a reference
    ``beta_ref`` ``(m,)`` (the least-squares baseline): with r = flux - g basis^T beta_ref,
    delta = N^-1 B^T W r and chi2_min = r^T W r - delta^T B^T W r, exact because chi2 is quadratic in
    beta, and free of the ~(S/N)^2 cancellation of the textbook y^T W y - b^T N^-1 b.
    Returns ``chi2`` ``(nw,)`` (inf where the normal matrix is not positive definite), ``beta``
    ``(nw, m)`` and ``chol`` ``(nw, m, m)``, the lower Cholesky factor of N = B^T W B.
    """
    nw = fp.shape[0]
    nt = flux.shape[0]
    m = basis.shape[0]
    chi2 = np.empty(nw)
    beta = np.zeros((nw, m))
    chol = np.zeros((nw, m, m))
    g = np.empty(nt)
    mref = np.zeros(nt)
    for i in range(nt):
        for j in range(m):
            mref[i] += beta_ref[j] * basis[j, i]
    N = np.empty((m, m))
    b = np.empty(m)
    y = np.empty(m)
    d = np.empty(m)
    for w in range(nw):
        _nonlinear_curve(w, g, mode, A, E, fp, pc, trig, ramp, nramp, dt_start, decorr, z, ramp_k, ramp_eps,
                         ramp_step)
        for j in range(m):
            b[j] = 0.0
            for k in range(m):
                N[j, k] = 0.0
        c = 0.0
        if m <= 3:
            # scalar accumulators (kept in registers): the common f0 + 1-2 polynomial terms
            b0 = b1 = b2 = n00 = n10 = n11 = n20 = n21 = n22 = 0.0
            for i in range(nt):
                gi = g[i]
                r = flux[i] - gi * mref[i]
                gw = gi * ivar[i]
                c += r * r * ivar[i]
                p0 = basis[0, i]
                q0 = p0 * gw
                b0 += q0 * r
                n00 += q0 * p0 * gi
                if m > 1:
                    p1 = basis[1, i]
                    q1 = p1 * gw
                    b1 += q1 * r
                    n10 += q1 * p0 * gi
                    n11 += q1 * p1 * gi
                    if m > 2:
                        p2 = basis[2, i]
                        q2 = p2 * gw
                        b2 += q2 * r
                        n20 += q2 * p0 * gi
                        n21 += q2 * p1 * gi
                        n22 += q2 * p2 * gi
            b[0] = b0
            N[0, 0] = n00
            if m > 1:
                b[1] = b1
                N[1, 0] = n10
                N[1, 1] = n11
            if m > 2:
                b[2] = b2
                N[2, 0] = n20
                N[2, 1] = n21
                N[2, 2] = n22
        else:
            for i in range(nt):
                gi = g[i]
                r = flux[i] - gi * mref[i]
                gw = gi * ivar[i]
                c += r * r * ivar[i]
                for j in range(m):
                    pj = basis[j, i] * gw
                    b[j] += pj * r
                    for k in range(j + 1):
                        N[j, k] += pj * basis[k, i] * gi
        ok = True
        for j in range(m):
            s = N[j, j]
            for k in range(j):
                s -= chol[w, j, k] * chol[w, j, k]
            if not s > 0.0:
                ok = False
                break
            chol[w, j, j] = math.sqrt(s)
            for q in range(j + 1, m):
                s2 = N[q, j]
                for k in range(j):
                    s2 -= chol[w, q, k] * chol[w, j, k]
                chol[w, q, j] = s2 / chol[w, j, j]
        if not ok:
            chi2[w] = np.inf
            continue
        for j in range(m):
            s = b[j]
            for k in range(j):
                s -= chol[w, j, k] * y[k]
            y[j] = s / chol[w, j, j]
        for j in range(m - 1, -1, -1):
            s = y[j]
            for k in range(j + 1, m):
                s -= chol[w, k, j] * d[k]
            d[j] = s / chol[w, j, j]
        for j in range(m):
            c -= d[j] * b[j]
            beta[w, j] = beta_ref[j] + d[j]
        chi2[w] = c
    return chi2, beta, chol
