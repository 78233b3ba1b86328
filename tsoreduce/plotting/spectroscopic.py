"""Stage 2 diagnostic figures: background, bad pixels, PCA eigenimages / eigen-time-series.

Each function returns the matplotlib Figure and saves it (PNG, 120 dpi) when ``path`` is given.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

__all__ = ["plot_background", "plot_bad_pixels", "plot_pca"]


def _save(fig, path):
    if path is not None:
        fig.savefig(path, dpi=120, bbox_inches="tight")
    return fig


def _limits(img, lo=2, hi=98):
    v = np.asarray(img, float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return 0, 1
    return np.percentile(v, lo), np.percentile(v, hi)


def plot_background(background, deep_frame, columns=None, *, path=None):
    """Row-wise background: (left) median background per row vs row, with the 16-84 % range over
    integrations; (middle) background time series averaged over rows; (right) deep frame with the
    background columns marked.

    Parameters
    ----------
    background : numpy.ndarray
        ``(nints, nrows, ncols)`` (or ``(nints, nrows)``) subtracted background, data units.
    deep_frame : numpy.ndarray
        ``(nrows, ncols)`` background-subtracted deep frame, data units.
    columns : array_like of int, optional
        Background columns, marked on the deep frame.
    path : str or os.PathLike, optional
        PNG file written (120 dpi).

    Returns
    -------
    matplotlib.figure.Figure
        The figure.
    """
    fig = Figure(figsize=(12, 4.5))
    a1, a2, a3 = fig.subplots(1, 3)
    row_bkg = np.asarray(background)
    if background.ndim == 3:  # median over columns, a few integrations at a time (no full-cube copy)
        row_bkg = np.concatenate([np.median(background[i:i + 64], axis=2)
                                  for i in range(0, background.shape[0], 64)])
    med = np.median(row_bkg, axis=0)
    lo, hi = np.percentile(row_bkg, [16, 84], axis=0)
    r = np.arange(med.size)
    a1.fill_between(r, lo, hi, color="0.8", label="16-84 % over integrations")
    a1.plot(r, med, "k-", lw=1, label="median")
    a1.set_xlabel("row")
    a1.set_ylabel("background per pixel")
    a1.legend(fontsize=8)
    a2.plot(np.arange(row_bkg.shape[0]), row_bkg.mean(axis=1), "k.-", ms=3)
    a2.set_xlabel("integration")
    a2.set_ylabel("mean background")
    vmin, vmax = _limits(deep_frame)
    a3.imshow(deep_frame, origin="lower", aspect="auto", vmin=vmin, vmax=vmax, cmap="viridis")
    if columns is not None:
        for c in np.asarray(columns):
            a3.axvline(c, color="w", lw=0.3, alpha=0.6)
    a3.set_xlabel("column")
    a3.set_ylabel("row")
    a3.set_title("deep frame (bkg-subtracted), bkg columns", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def plot_bad_pixels(deep_frame, hot_pixel_map, temporal_count_map=None, *, path=None):
    """Deep frame with the spatial hot-pixel map (red) and pixels with temporal outliers (cyan).

    Parameters
    ----------
    deep_frame : numpy.ndarray
        ``(nrows, ncols)`` deep frame, data units.
    hot_pixel_map : numpy.ndarray
        bool ``(nrows, ncols)``, pixels replaced in every integration.
    temporal_count_map : numpy.ndarray, optional
        int ``(nrows, ncols)``, temporal replacements per pixel.
    path : str or os.PathLike, optional
        PNG file written (120 dpi).

    Returns
    -------
    matplotlib.figure.Figure
        The figure.
    """
    fig = Figure(figsize=(8, 6))
    a1, a2 = fig.subplots(1, 2)
    vmin, vmax = _limits(deep_frame)
    a1.imshow(deep_frame, origin="lower", aspect="auto", vmin=vmin, vmax=vmax, cmap="gray")
    yy, xx = np.nonzero(hot_pixel_map)
    a1.plot(xx, yy, "rs", ms=2, mfc="none", label=f"spatial map ({yy.size})")
    if temporal_count_map is not None:
        ty, tx = np.nonzero(temporal_count_map)
        a1.plot(tx, ty, "c.", ms=2, label=f"temporal outliers ({int(np.sum(temporal_count_map))})")
    a1.legend(fontsize=7, loc="upper right")
    a1.set_xlabel("column")
    a1.set_ylabel("row")
    a1.set_title("bad pixels", fontsize=9)
    if temporal_count_map is not None:
        im = a2.imshow(temporal_count_map, origin="lower", aspect="auto", cmap="magma")
        fig.colorbar(im, ax=a2, label="temporal replacements")
    a2.set_xlabel("column")
    a2.set_title("temporal outliers per pixel", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def plot_pca(pca, *, n_show=5, path=None):
    """PCA eigenimages (top) and eigen-time-series (bottom) for the first ``n_show`` components, with
    the explained-variance ratio in each title.

    Parameters
    ----------
    pca : tsoreduce.spectroscopic.PCAResult
        From :func:`tsoreduce.spectroscopic.pca_reconstruct`.
    n_show : int
        Components shown.
    path : str or os.PathLike, optional
        PNG file written (120 dpi).

    Returns
    -------
    matplotlib.figure.Figure
        The figure.
    """
    k = min(n_show, pca["eigenimages"].shape[0])
    fig = Figure(figsize=(2.6 * k, 6.5))
    axes = fig.subplots(2, k, squeeze=False)
    c0, c1 = pca["columns"]
    for j in range(k):
        img = pca["eigenimages"][j][:, c0:c1]
        v = np.nanpercentile(np.abs(img), 99) or 1.0
        axes[0, j].imshow(img, origin="lower", aspect="auto", cmap="RdBu_r", vmin=-v, vmax=v,
                          extent=(c0 - 0.5, c1 - 0.5, -0.5, img.shape[0] - 0.5))
        tag = " (removed)" if (j + 1) in pca["removed"] else ""
        axes[0, j].set_title(f"PC{j + 1}: {100 * pca['explained_variance_ratio'][j]:.2g} %{tag}",
                             fontsize=9)
        axes[0, j].set_xlabel("column")
        axes[1, j].plot(pca["timeseries"][j], "k.-", ms=2, lw=0.5)
        axes[1, j].set_xlabel("integration")
    axes[0, 0].set_ylabel("row")
    axes[1, 0].set_ylabel("component score")
    fig.tight_layout()
    return _save(fig, path)
