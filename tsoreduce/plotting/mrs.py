"""Diagnostic figures of the MRS cube branch (one function per figure; each returns the Figure and
saves it when given ``path``)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Circle  # noqa: E402

__all__ = ["plot_aperture", "plot_mrs_spectrum", "plot_mrs_lightcurves", "plot_mrs_background",
           "plot_mrs_centroids"]


def _save(fig, path):
    if path is not None:
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
    return fig


def plot_aperture(photometry, image, *, path=None):
    """The collapsed image with the fixed centre, the aperture and the annulus drawn at the shortest and
    longest wavelengths.

    Parameters
    ----------
    photometry : tsoreduce.mrs.photometry.CubePhotometry
        The photometry of one band (centre and radii in spaxels).
    image : array_like
        ``(ny, nx)`` collapsed image (:func:`tsoreduce.mrs.photometry.collapsed_image`).
    path : str or pathlib.Path, optional
        Where to save the PNG.

    Returns
    -------
    matplotlib.figure.Figure
        The figure (closed once saved to ``path``).
    """
    fig, ax = plt.subplots(figsize=(5, 4.5))
    img = np.asarray(image, float)
    finite = img[np.isfinite(img)]
    lo, hi = (np.percentile(finite, [1, 99.5]) if finite.size else (0, 1))
    im = ax.imshow(img, origin="lower", cmap="magma", vmin=lo, vmax=hi)
    fig.colorbar(im, ax=ax, label="collapsed SB (MJy/sr, summed)")
    x, y = photometry.centre
    for k, ls in ((0, "--"), (-1, "-")):
        for r, col in ((photometry.radius[k], "cyan"), (photometry.r_in[k], "w"), (photometry.r_out[k], "w")):
            ax.add_patch(Circle((x, y), r, fill=False, ec=col, ls=ls, lw=1))
    ax.plot(x, y, "c+", ms=10)
    ax.set_title(f"MRS {photometry.band}: aperture (cyan) and annulus at "
                 f"{photometry.wavelength[0]:.2f} (--) / {photometry.wavelength[-1]:.2f} um (-)", fontsize=8)
    ax.set_xlabel("x (spaxel)")
    ax.set_ylabel("y (spaxel)")
    return _save(fig, path)


def plot_mrs_spectrum(spectra, *, stitched=None, path=None):
    """Time-median spectrum (Jy) per band, and the stitched spectrum if given.

    Parameters
    ----------
    spectra : tsoreduce.datamodel.SpectraData
        MRS x1dints ``(nints, nwave)`` with per-plane band labels.
    stitched : tsoreduce.mrs.bands.StitchedSpectrum, optional
        Drawn as a line.
    path : str or pathlib.Path, optional
        Where to save the PNG.

    Returns
    -------
    matplotlib.figure.Figure
        The figure (closed once saved to ``path``).
    """
    from ..mrs.bands import band_labels_of
    fig, ax = plt.subplots(figsize=(7, 3.5))
    labels = band_labels_of(spectra)
    with np.errstate(all="ignore"):
        med = np.nanmedian(spectra.data, axis=0)
    for b in dict.fromkeys(labels):
        s = labels == b
        ax.plot(spectra.wavelength[s], med[s], ".", ms=3, label=f"{b}")
    if stitched is not None:
        ax.plot(stitched.wavelength, stitched.flux, "k-", lw=0.8, label=f"stitched ({stitched.method})")
    ax.set_xlabel("wavelength (um)")
    ax.set_ylabel(f"median flux ({spectra.units})")
    ax.legend(fontsize=7)
    return _save(fig, path)


def plot_mrs_lightcurves(lc, *, path=None, offset=None):
    """White light curve and the spectroscopic channels (offset vertically), labelled by band.

    Parameters
    ----------
    lc : tsoreduce.datamodel.LightCurves
        MRS light curves (``meta['band']`` per channel).
    path : str or pathlib.Path, optional
        Where to save the PNG.
    offset : float, optional
        Vertical step between channels (default: 3 x the largest channel scatter).

    Returns
    -------
    matplotlib.figure.Figure
        The figure (closed once saved to ``path``).
    """
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 4))
    t = lc.time - lc.time[0]
    if lc.white_flux is not None:
        a1.errorbar(t, lc.white_flux, lc.white_err, fmt=".k", ms=3)
    a1.set_title("white light curve")
    a1.set_xlabel("time since first integration (d)")
    step = offset if offset is not None else 3 * np.nanmax([np.nanstd(f) for f in lc.flux] + [1e-4])
    bands = lc.meta.get("band", [""] * lc.nchan)
    for i in range(lc.nchan):
        a2.plot(t, lc.flux[i] - i * step, ".", ms=2)
        a2.text(t[-1], np.nanmedian(lc.flux[i]) - i * step, f" {bands[i]} {lc.wavelength[i]:.2f}",
                fontsize=6, va="center")
    a2.set_title("channels (offset)")
    a2.set_xlabel("time since first integration (d)")
    return _save(fig, path)


def plot_mrs_background(spectra, *, path=None):
    """Annulus background (time-median, MJy/sr) per band against wavelength, and its time series.

    Parameters
    ----------
    spectra : tsoreduce.datamodel.SpectraData
        MRS x1dints with ``meta['_photometry']``.
    path : str or pathlib.Path, optional
        Where to save the PNG.

    Returns
    -------
    matplotlib.figure.Figure
        The figure (closed once saved to ``path``).
    """
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.5))
    for ph in spectra.meta.get("_photometry", []):
        with np.errstate(all="ignore"):
            a1.plot(ph.wavelength, np.nanmedian(ph.background, axis=0), ".-", ms=3, label=ph.band)
            b = np.nanmean(ph.background, axis=1)
            a2.plot(b / np.nanmedian(b), ".", ms=3, label=ph.band)
    a1.set_xlabel("wavelength (um)")
    a1.set_ylabel("background (MJy/sr)")
    a2.set_xlabel("integration")
    a2.set_ylabel("band-mean background / median")
    a1.legend(fontsize=7)
    return _save(fig, path)


def plot_mrs_centroids(spectra, *, path=None):
    """Per-integration centroid offsets (spaxels) of each band.

    Parameters
    ----------
    spectra : tsoreduce.datamodel.SpectraData
        MRS x1dints with ``meta['_photometry']`` (centroids tracked).
    path : str or pathlib.Path, optional
        Where to save the PNG.

    Returns
    -------
    matplotlib.figure.Figure
        The figure (closed once saved to ``path``).
    """
    fig, ax = plt.subplots(figsize=(6, 3.2))
    for ph in spectra.meta.get("_photometry", []):
        if ph.centroid_x is None:
            continue
        ax.plot(ph.centroid_x - np.median(ph.centroid_x), ".", ms=3, label=f"{ph.band} x")
        ax.plot(ph.centroid_y - np.median(ph.centroid_y), ".", ms=3, label=f"{ph.band} y")
    ax.set_xlabel("integration")
    ax.set_ylabel("centroid - median (spaxel)")
    ax.legend(fontsize=7)
    return _save(fig, path)
