"""Stage 3 diagnostic figures: deep frame with trace and aperture, 2-D light-curve image, white light
curve, trace regressors, box-width scan.

Each function returns the matplotlib Figure and saves it (PNG, 120 dpi) when ``path`` is given.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

__all__ = ["plot_deep_frame_aperture", "plot_lightcurve_image", "plot_white_light", "plot_regressors",
           "plot_width_scan"]


def _save(fig, path):
    if path is not None:
        fig.savefig(path, dpi=120, bbox_inches="tight")
    return fig


def plot_deep_frame_aperture(deep_frame, trace, width, trace_info=None, *, path=None):
    """Deep frame (log stretch) with the fitted trace, the aperture edges and the edgetrigger centres.

    Parameters
    ----------
    deep_frame : numpy.ndarray
        ``(nrows, ncols)`` deep frame, any units.
    trace : numpy.ndarray
        ``(nrows,)`` trace centre columns.
    width : float
        Full aperture width (px); edges drawn at trace +- width/2.
    trace_info : dict or None
        ``find_trace`` info (``rows``, ``centres``) for the measured centres.
    path : str or pathlib.Path or None
        Where the PNG is written (None: not saved).

    Returns
    -------
    matplotlib.figure.Figure
        The figure (also saved as PNG when ``path`` is given).
    """
    fig = Figure(figsize=(5, 8))
    ax = fig.subplots()
    img = np.asarray(deep_frame, float)
    pos = img[np.isfinite(img) & (img > 0)]
    vmax = np.percentile(pos, 99.5) if pos.size else 1.0
    ax.imshow(np.log10(np.clip(img, vmax * 1e-4, None)), origin="lower", aspect="auto", cmap="magma",
              vmin=np.log10(vmax * 1e-3), vmax=np.log10(vmax))
    r = np.arange(img.shape[0])
    ax.plot(trace, r, "c-", lw=0.8, label="trace")
    ax.plot(trace - width / 2, r, "w--", lw=0.6, label=f"aperture ({width:.1f} px)")
    ax.plot(trace + width / 2, r, "w--", lw=0.6)
    if trace_info is not None and trace_info.get("centres") is not None:
        ax.plot(trace_info["centres"], trace_info["rows"], "g.", ms=1.5, label="edgetrigger centres")
    ax.set_xlim(max(0, np.nanmedian(trace) - 15), min(img.shape[1], np.nanmedian(trace) + 15))
    ax.set_xlabel("column")
    ax.set_ylabel("row")
    ax.legend(fontsize=7, loc="upper right")
    return _save(fig, path)


def plot_lightcurve_image(lc, *, path=None):
    """Normalised spectroscopic light curves as an image: wavelength (channel) x time.

    Parameters
    ----------
    lc : LightCurves
        Light curves, ``flux`` ``(nchan, nints)``.
    path : str or pathlib.Path or None
        Where the PNG is written (None: not saved).

    Returns
    -------
    matplotlib.figure.Figure
        The figure (also saved as PNG when ``path`` is given).
    """
    fig = Figure(figsize=(8, 4.5))
    ax = fig.subplots()
    f = np.asarray(lc.flux, float)
    med = np.nanmedian(f, axis=1, keepdims=True)
    rel = 1e6 * (f / med - 1)
    v = np.nanpercentile(np.abs(rel), 98) or 1.0
    t = lc.time - lc.time[0]
    im = ax.imshow(rel, aspect="auto", origin="lower", cmap="RdBu_r", vmin=-v, vmax=v,
                   extent=(t[0], t[-1], -0.5, lc.nchan - 0.5))
    ax.set_yticks(np.arange(lc.nchan))
    ax.set_yticklabels([f"{w:.2f}" for w in lc.wavelength], fontsize=6)
    ax.set_xlabel("time from first integration (d)")
    ax.set_ylabel("wavelength (um)")
    fig.colorbar(im, ax=ax, label="relative flux (ppm)")
    return _save(fig, path)


def plot_white_light(lc, *, path=None):
    """White light curve vs time with its error bars and point-to-point scatter in the title.

    Parameters
    ----------
    lc : LightCurves
        Light curves (``time`` in days, ``white_flux``, ``white_err``).
    path : str or pathlib.Path or None
        Where the PNG is written (None: not saved).

    Returns
    -------
    matplotlib.figure.Figure
        The figure (also saved as PNG when ``path`` is given).
    """
    fig = Figure(figsize=(8, 3.5))
    ax = fig.subplots()
    t = lc.time - lc.time[0]
    ax.errorbar(t, lc.white_flux, lc.white_err, fmt="k.", ms=2, lw=0.5)
    from ..extraction.box import white_light_scatter

    sc = white_light_scatter(lc.white_flux)
    ax.set_title(f"white light curve (p2p scatter {1e6 * sc:.0f} ppm)", fontsize=9)
    ax.set_xlabel("time from first integration (d)")
    ax.set_ylabel("normalised flux")
    return _save(fig, path)


def plot_regressors(spectra, *, path=None):
    """Per-integration trace position and width (the decorrelation regressors in ``spectra.aux``).

    Parameters
    ----------
    spectra : SpectraData
        x1dints with ``aux`` regressors, each ``(nints,)`` in px.
    path : str or pathlib.Path or None
        Where the PNG is written (None: not saved).

    Returns
    -------
    matplotlib.figure.Figure
        The figure (also saved as PNG when ``path`` is given).
    """
    keys = list(spectra.aux)
    fig = Figure(figsize=(8, 2.2 * max(1, len(keys))))
    axes = np.atleast_1d(fig.subplots(max(1, len(keys)), 1, sharex=True))
    for ax, k in zip(axes, keys):
        ax.plot(spectra.aux[k], "k.-", ms=2, lw=0.5)
        ax.set_ylabel(f"{k} (px)")
    axes[-1].set_xlabel("integration")
    return _save(fig, path)


def plot_width_scan(widths, scatter, *, path=None):
    """White-light point-to-point scatter (ppm) vs box width (px).

    Parameters
    ----------
    widths : array_like
        Box widths tried (px).
    scatter : array_like
        Relative scatter of each (dimensionless).
    path : str or pathlib.Path or None
        Where the PNG is written (None: not saved).

    Returns
    -------
    matplotlib.figure.Figure
        The figure (also saved as PNG when ``path`` is given).
    """
    fig = Figure(figsize=(5, 3.5))
    ax = fig.subplots()
    ax.plot(widths, 1e6 * np.asarray(scatter), "ko-", ms=3)
    ax.axvline(widths[int(np.nanargmin(scatter))], color="r", lw=0.8)
    ax.set_xlabel("box full width (px)")
    ax.set_ylabel("white-light p2p scatter (ppm)")
    return _save(fig, path)
