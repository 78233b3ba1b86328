"""Stage 4 figures: light curve with model and residuals, binned rms vs bin size, corner plot, spectrum.

Each function takes :class:`~tsoreduce.lightcurve.fitting.FitResult` object(s) (or the spectrum Table),
saves a PNG when ``path`` is given and returns the path (or the Figure when ``path`` is None).
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

__all__ = ["plot_lightcurve_fit", "plot_rms_vs_binsize", "binned_rms", "plot_corner", "plot_spectrum",
           "plot_channel_fits"]


def _finish(fig, path):
    if path is None:
        return fig
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def _bin(x, n):
    m = x.size // n
    return x[: m * n].reshape(m, n).mean(axis=1) if m else x[:0]


def plot_lightcurve_fit(res, *, path=None, nbin=None):
    """Systematics-corrected light curve (flux / S), astrophysical model, residuals (ppm), time in hours.

    Parameters
    ----------
    res : tsoreduce.lightcurve.fitting.FitResult
        A fit with its time, flux, systematics and model arrays ``(nints,)``.
    path : str or pathlib.Path, optional
        Where to save the PNG (None: return the figure).
    nbin : int, optional
        Points per bin of the binned overlay (default: about 150 bins).

    Returns
    -------
    matplotlib.figure.Figure or pathlib.Path
        The figure, or ``path`` once it is saved there.
    """
    t = (res.time - res.time[0]) * 24.0
    det = res.flux / res.systematics
    resid = (res.flux - res.model) / res.systematics * 1e6
    nbin = nbin or max(1, res.time.size // 150)
    fig = Figure(figsize=(8, 6))
    a1, a2 = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1.2]})
    a1.plot(t, det, ".", ms=1.5, color="0.6", label="detrended data")
    a1.plot(_bin(t, nbin), _bin(det, nbin), "o", ms=3, color="k", label=f"binned x{nbin}")
    a1.plot(t, res.astro, "-", color="C3", lw=1.5, label="model")
    a1.set_ylabel("relative flux")
    a1.legend(fontsize=8)
    a1.set_title(f"{res.label}: reduced chi2 {res.chi2_red:.2f}")
    a2.plot(t, resid, ".", ms=1.5, color="0.6")
    a2.plot(_bin(t, nbin), _bin(resid, nbin), "o", ms=3, color="k")
    a2.axhline(0, color="C3")
    a2.set_ylabel("residual (ppm)")
    a2.set_xlabel(f"time since BMJD_TDB {res.time[0]:.4f} (h)")
    return _finish(fig, path)


def binned_rms(resid, max_bin=None):
    """rms of the residuals binned in ``n`` consecutive points, for n = 1 ... max_bin (log-spaced).

    The white-noise expectation is rms_1 / sqrt(n) * sqrt(M / (M - 1)), M the number of bins (Pont,
    Zucker & Queloz 2006; Winn et al. 2008).

    Parameters
    ----------
    resid : array_like
        ``(nints,)`` residuals, any unit.
    max_bin : int, optional
        Largest bin size (default: a tenth of the points).

    Returns
    -------
    tuple of numpy.ndarray
        (bin sizes, binned rms, white-noise expectation), each ``(nsizes,)``.
    """
    resid = np.asarray(resid, float)
    max_bin = max_bin or max(2, resid.size // 10)
    sizes = np.unique(np.round(np.logspace(0, np.log10(max_bin), 30)).astype(int))
    rms, expect = [], []
    s1 = np.std(resid)
    for n in sizes:
        b = _bin(resid, n)
        m = b.size
        rms.append(np.sqrt(np.mean((b - b.mean()) ** 2)) if m > 1 else np.nan)
        expect.append(s1 / np.sqrt(n) * np.sqrt(m / max(m - 1, 1)))
    return sizes, np.array(rms), np.array(expect)


def plot_rms_vs_binsize(results, *, path=None):
    """Binned residual rms vs bin size (solid) against two expectations: dashed, white noise scaled from
    the unbinned residual rms (``rms_1 / sqrt(N)``: the curve's shape test, Pont et al. 2006); dotted,
    the noise limit from the propagated ERR (``sqrt(mean((err / S)^2)) / sqrt(N)``, S the systematics
    model), which the solid curve meets only when the reduction is at the photon + read noise limit.

    Parameters
    ----------
    results : FitResult or list of FitResult
        One curve per fit.
    path : str or pathlib.Path, optional
        Where to save the PNG (None: return the figure).

    Returns
    -------
    matplotlib.figure.Figure or pathlib.Path
        The figure, or ``path`` once it is saved there.
    """
    results = results if isinstance(results, (list, tuple)) else [results]
    fig = Figure(figsize=(6, 4.5))
    ax = fig.subplots()
    for k, r in enumerate(results):
        n, rms, exp = binned_rms((r.flux - r.model) / r.systematics * 1e6)
        ax.loglog(n, rms, "-", color=f"C{k % 10}", lw=1, label=r.label if len(results) <= 14 else None)
        ax.loglog(n, exp, "--", color=f"C{k % 10}", lw=0.8)
        if r.err is not None:
            e = np.asarray(r.err / r.systematics * 1e6, float)
            e1 = np.sqrt(np.nanmean(e * e))
            ax.loglog(n, e1 / np.sqrt(n), ":", color=f"C{k % 10}", lw=1.0)
    ax.set_xlabel("bin size (integrations)")
    ax.set_ylabel("rms of binned residuals (ppm)")
    ax.set_title("solid: measured; dashed: white noise from rms; dotted: from ERR", fontsize=9)
    if len(results) <= 14:
        ax.legend(fontsize=6, ncol=2)
    return _finish(fig, path)


def plot_corner(res, *, path=None, bins=30, max_params=16):
    """Corner plot of the posterior samples (2-D histograms and 1-D marginals).

    Parameters
    ----------
    res : tsoreduce.lightcurve.fitting.FitResult
        An emcee fit (``samples`` ``(nsamples, nfree)``).
    path : str or pathlib.Path, optional
        Where to save the PNG (None: return the figure).
    bins : int
        Histogram bins per axis.
    max_params : int
        At most this many free parameters are shown.

    Returns
    -------
    matplotlib.figure.Figure or pathlib.Path
        The figure, or ``path`` once it is saved there.
    """
    names = list(res.free)[:max_params]
    s = res.samples[:, :len(names)]
    k = len(names)
    fig = Figure(figsize=(1.6 * k + 1, 1.6 * k + 1))
    axes = np.atleast_2d(fig.subplots(k, k, squeeze=False))
    q = np.percentile(s, [16, 50, 84], axis=0)
    lims = np.percentile(s, [0.5, 99.5], axis=0)
    for i in range(k):
        for j in range(k):
            ax = axes[i, j]
            if j > i:
                ax.set_axis_off()
                continue
            if i == j:
                ax.hist(s[:, i], bins=bins, range=(lims[0, i], lims[1, i]), histtype="step", color="k")
                for v in q[:, i]:
                    ax.axvline(v, color="C0", ls="--", lw=0.8)
                ax.set_yticks([])
                ax.set_title(f"{names[i]}\n{q[1, i]:.4g} +{q[2, i] - q[1, i]:.2g}/-{q[1, i] - q[0, i]:.2g}",
                             fontsize=7)
            else:
                h, xe, ye = np.histogram2d(s[:, j], s[:, i], bins=bins,
                                           range=[[lims[0, j], lims[1, j]], [lims[0, i], lims[1, i]]])
                ax.imshow(h.T, origin="lower", aspect="auto", cmap="Greys",
                          extent=(xe[0], xe[-1], ye[0], ye[-1]))
            if i < k - 1:
                ax.set_xticklabels([])
            else:
                ax.set_xlabel(names[j], fontsize=7)
                ax.tick_params(axis="x", labelsize=5, rotation=45)
            if j > 0 or i == 0:
                ax.set_yticklabels([])
            else:
                ax.set_ylabel(names[i], fontsize=7)
                ax.tick_params(axis="y", labelsize=5)
    return _finish(fig, path)


def plot_spectrum(spec, *, path=None):
    """Transit depth (and eclipse depth / nightside flux when present) against wavelength.

    Parameters
    ----------
    spec : astropy.table.Table
        A Stage 4 spectrum table (wavelength in um, depths in ppm).
    path : str or pathlib.Path, optional
        Where to save the PNG (None: return the figure).

    Returns
    -------
    matplotlib.figure.Figure or pathlib.Path
        The figure, or ``path`` once it is saved there.
    """
    cols = [c for c in ("transit_depth", "eclipse_depth", "nightside_flux") if c in spec.colnames]
    fig = Figure(figsize=(7, 2.8 * len(cols)))
    axes = np.atleast_1d(fig.subplots(len(cols), 1, sharex=True, squeeze=False)[:, 0])
    w = np.asarray(spec["wavelength"], float)
    xerr = [w - np.asarray(spec["wavelength_lower"], float), np.asarray(spec["wavelength_upper"], float) - w]
    for ax, c in zip(axes, cols):
        y = np.asarray(spec[c], float)
        yerr = [np.asarray(spec[c + "_err_lower"], float), np.asarray(spec[c + "_err_upper"], float)]
        ax.errorbar(w, y, yerr=yerr, xerr=xerr, fmt="o", ms=4, color="k", capsize=2)
        ax.set_ylabel(f"{c.replace('_', ' ')} (ppm)")
    axes[-1].set_xlabel("wavelength (um)")
    return _finish(fig, path)


def plot_channel_fits(results, *, path=None):
    """Detrended light curves of all channels, offset vertically, with their models.

    Parameters
    ----------
    results : list of tsoreduce.lightcurve.fitting.FitResult
        The channel fits.
    path : str or pathlib.Path, optional
        Where to save the PNG (None: return the figure).

    Returns
    -------
    matplotlib.figure.Figure or pathlib.Path
        The figure, or ``path`` once it is saved there.
    """
    n = len(results)
    fig = Figure(figsize=(8, 1.0 + 0.7 * n))
    ax = fig.subplots()
    off = 0.0
    for k, r in enumerate(results):
        t = (r.time - r.time[0]) * 24.0
        det = r.flux / r.systematics
        nb = max(1, r.time.size // 200)
        step = 6 * np.std(det - r.astro) if k else 0.0
        off -= step if k else 0.0
        ax.plot(_bin(t, nb), _bin(det, nb) + off, ".", ms=2, color=f"C{k % 10}")
        ax.plot(t, r.astro + off, "-", color="k", lw=0.8)
        ax.text(t[-1], 1 + off, f" {r.wavelength:.2f} um", fontsize=7, va="center")
    ax.set_xlabel("time since first fitted integration (h)")
    ax.set_ylabel("relative flux + offset")
    return _finish(fig, path)
