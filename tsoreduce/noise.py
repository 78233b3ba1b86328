"""How close a light curve is to its noise limit: expected vs achieved scatter and the red-noise factor.

Definitions (used by the Stage 3 light-curve metadata, Stage 4 ``channel_fits.ecsv`` / ``white_fit.ecsv``
and the run summary; every figure is computed over the points actually used, NaN excluded):

* **expected** -- ``sqrt(mean(err^2))``: the rms the propagated per-integration ERR predicts (Stage 1
  read + Poisson variance, carried through Stages 2-3).  It is the photon + read noise limit of *this*
  reduction: it includes what the ramp fit's weighting achieves (the GLS weights of bright pixels
  beat the unweighted OLS formula), so it is not an independent prediction from the scene.
* **achieved, raw** -- ``mad_std(diff(flux)) / sqrt(2)``: the point-to-point scatter of the light curve
  itself (robust, insensitive to the transit and to slow trends; astropy.stats.mad_std).
* **achieved, residuals** -- ``std(flux - model)`` of the fitted Stage 4 residuals (ddof = number of
  free parameters), in the flux units of the light curve.
* **ratio** -- achieved / expected: 1.00 is the noise limit; observers quote ``(ratio - 1)`` as "N %
  above photon noise".
* **beta** -- red-noise factor from the binning ("time-averaging") curve, Pont, Zucker & Queloz 2006
  (MNRAS 373, 231) and Winn et al. 2008 (ApJ 683, 1076): with ``sigma_1`` the unbinned rms and
  ``sigma_N`` the rms (ddof 1) of the means of ``M`` consecutive, non-overlapping bins of ``N``
  points, ``beta = median_N [sigma_N / (sigma_1 / sqrt(N))]`` over bin sizes 2 ... ``max_bin``
  (default ``n / 10``); 1 for white noise, > 1 when correlated noise survives binning.  Computed on
  the Stage 4 residuals; for the Stage 3 light curves (no model yet) on the residuals from a running
  median over ``window`` integrations (a high-pass, so it measures red noise on time scales shorter
  than the window only, stated in the metadata).
"""

from __future__ import annotations

import numpy as np
from astropy.stats import mad_std
from scipy import ndimage

__all__ = ["expected_scatter", "p2p_scatter", "binning_curve", "beta_factor", "lightcurve_noise",
           "residual_noise"]


def _finite(x):
    x = np.asarray(x, float)
    return x[np.isfinite(x)]


def expected_scatter(err) -> float:
    """rms predicted by the propagated errors: ``sqrt(mean(err^2))`` over finite values.

    Parameters
    ----------
    err : array_like
        1-sigma errors, any shape, in the flux unit.

    Returns
    -------
    float
        The expected rms per point; NaN if no error is finite.
    """
    e = _finite(err)
    return float(np.sqrt(np.mean(e * e))) if e.size else float("nan")


def p2p_scatter(flux) -> float:
    """Robust point-to-point scatter ``mad_std(diff(flux)) / sqrt(2)`` (astropy.stats.mad_std).

    Parameters
    ----------
    flux : array_like
        ``(n,)`` light curve in time order; non-finite points are dropped.

    Returns
    -------
    float
        The per-point scatter in the flux unit; NaN with fewer than 3 finite points.
    """
    f = _finite(flux)
    return float(mad_std(np.diff(f)) / np.sqrt(2.0)) if f.size > 2 else float("nan")


def binning_curve(resid, max_bin=None, n_sizes=30):
    """rms of binned residuals against bin size.

    The time-averaging test of Pont, Zucker & Queloz (2006).

    Parameters
    ----------
    resid : array_like
        ``(n,)`` residuals in time order (NaN dropped).
    max_bin : int, optional
        Largest bin size (default ``max(2, n // 10)``).
    n_sizes : int
        Number of log-spaced bin sizes tried (duplicates after rounding are merged).

    Returns
    -------
    sizes : numpy.ndarray
        int ``(k,)`` bin sizes (points per bin).
    rms : numpy.ndarray
        ``(k,)`` std (ddof 1) of the bin means.
    white : numpy.ndarray
        ``(k,)`` white-noise expectation ``sigma_1 / sqrt(N)``.
    """
    r = _finite(resid)
    max_bin = int(max_bin or max(2, r.size // 10))
    sizes = np.unique(np.round(np.logspace(0, np.log10(max(max_bin, 1)), n_sizes)).astype(int))
    s1 = np.std(r, ddof=1) if r.size > 1 else np.nan
    rms = np.full(sizes.size, np.nan)
    for k, n in enumerate(sizes):
        m = r.size // n
        if m > 1:
            rms[k] = np.std(r[: m * n].reshape(m, n).mean(axis=1), ddof=1)
    return sizes, rms, s1 / np.sqrt(sizes)


def beta_factor(resid, max_bin=None) -> float:
    """Red-noise factor beta: median over bin sizes >= 2 of ``sigma_N / (sigma_1 / sqrt(N))``.

    Winn et al. (2008); the binning curve of :func:`binning_curve`.

    Parameters
    ----------
    resid : array_like
        ``(n,)`` residuals in time order (NaN dropped).
    max_bin : int, optional
        Largest bin size (default ``max(2, n // 10)``).

    Returns
    -------
    float
        beta (1 for white noise); NaN when no bin size of at least 2 is usable.
    """
    sizes, rms, white = binning_curve(resid, max_bin)
    ok = (sizes >= 2) & np.isfinite(rms) & (white > 0)
    return float(np.median(rms[ok] / white[ok])) if ok.any() else float("nan")


def lightcurve_noise(flux, err, *, window=None) -> dict:
    """Stage 3 noise figures of one light curve (no model): ``expected``, ``achieved_p2p``, ``ratio``,
    ``beta`` (residuals from a running median over ``window`` integrations, default 21: red noise on
    time scales below ~10 integrations only -- a longer window lets the transit ingress and egress
    through as 'red noise'; the Stage 4 beta on the model residuals is the full measure) and
    ``beta_window``.  NaN points are skipped.

    Parameters
    ----------
    flux : array_like
        ``(n,)`` light curve in time order.
    err : array_like
        ``(n,)`` 1-sigma errors, same unit.
    window : int, optional
        Running-median window in integrations (made odd; default 21).

    Returns
    -------
    dict
        ``expected``, ``achieved_p2p`` (flux unit), ``ratio``, ``beta``, ``beta_window`` and
        ``n_points``.
    """
    f = np.asarray(flux, float)
    e = np.asarray(err, float)
    ok = np.isfinite(f) & np.isfinite(e)
    f, e = f[ok], e[ok]
    exp = expected_scatter(e)
    ach = p2p_scatter(f)
    window = int(window or 21) | 1
    beta = float("nan")
    if f.size >= 3 * window:
        hp = f - ndimage.median_filter(f, size=window, mode="nearest")
        beta = beta_factor(hp, max_bin=max(2, window // 2))
    return {"expected": exp, "achieved_p2p": ach, "ratio": ach / exp if exp > 0 else float("nan"),
            "beta": beta, "beta_window": window, "n_points": int(f.size)}


def residual_noise(flux, model, err, *, nfree=0) -> dict:
    """Stage 4 noise figures: ``expected`` (from ``err``), ``achieved_p2p`` (raw), ``achieved_resid``
    (std of ``flux - model``, ddof ``nfree``), ``ratio_p2p``, ``ratio_resid`` and ``beta`` (residuals).

    Parameters
    ----------
    flux : array_like
        ``(n,)`` light curve in time order.
    model : array_like
        ``(n,)`` fitted model, same unit.
    err : array_like
        ``(n,)`` 1-sigma errors, same unit.
    nfree : int
        Free parameters of the fit (degrees of freedom removed from the residual std).

    Returns
    -------
    dict
        ``expected``, ``achieved_p2p``, ``achieved_resid`` (flux unit), ``ratio_p2p``, ``ratio_resid``
        and ``beta``.
    """
    f = np.asarray(flux, float)
    r = f - np.asarray(model, float)
    exp = expected_scatter(err)
    rf = _finite(r)
    res = float(np.sqrt(np.sum((rf - rf.mean()) ** 2) / max(rf.size - max(nfree, 1), 1))) if rf.size else np.nan
    ach = p2p_scatter(f)
    nan = float("nan")
    return {"expected": exp, "achieved_p2p": ach, "achieved_resid": res,
            "ratio_p2p": ach / exp if exp > 0 else nan, "ratio_resid": res / exp if exp > 0 else nan,
            "beta": beta_factor(r)}
