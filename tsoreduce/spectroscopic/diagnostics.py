"""The Stage 2 diagnostics file (deep frame, hot-pixel map, background per row, PCA), written by the
file-level runner :func:`tsoreduce.pipeline.run_stage2_files` from ``StageResult.diagnostics``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .common import integration_blocks

__all__ = ["write_stage2_diagnostics"]


def _background_rows(background) -> np.ndarray:
    """Median over columns of the background cube, float32 ``(nints, nrows)``, block by block."""
    out = np.empty(background.shape[:2], np.float32)
    for blk in integration_blocks(background.shape):
        out[blk] = np.median(background[blk], axis=2)
    return out


def write_stage2_diagnostics(path, diag: dict, *, overwrite: bool = False):
    """Write the Stage 2 diagnostics to a FITS file (atomically: temporary file + ``os.replace``).

    HDUs: DEEP (deep frame, float32 ``(nrows, ncols)``), HOTPIX (uint8 hot-pixel map, 1 = replaced in
    every integration), TEMPOUT (int32 count of temporal replacements per pixel), BKGROW (float32
    ``(nints, nrows)`` median background of each row) and, when PCA ran, PCA_EIGIMG ``(K, nrows,
    ncols)`` and PCA_TS ``(K, nints)`` with the explained-variance ratios in the PCA_TS header
    (EVR1...).  Primary header: NREPSPA, NREPTEM (replaced values), TRACECOL.

    Parameters
    ----------
    path : str or os.PathLike
        Destination FITS file.
    diag : dict
        ``StageResult.diagnostics`` of :func:`tsoreduce.spectroscopic.run`.
    overwrite : bool
        Replace an existing file.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    tsoreduce.errors.OverwriteError
        When ``path`` exists and ``overwrite`` is False.
    """
    from astropy.io import fits

    from .._util import atomic_write
    from ..errors import OverwriteError

    path = Path(path)
    if path.exists() and not overwrite:
        raise OverwriteError(f"{path} exists (pass overwrite=True to replace it)")
    prim = fits.PrimaryHDU()
    prim.header["NREPSPA"] = (int(diag.get("n_replaced_spatial", 0)), "spatially replaced values")
    prim.header["NREPTEM"] = (int(diag.get("n_replaced_temporal", 0)), "temporally replaced values")
    if "trace_center" in diag:
        prim.header["TRACECOL"] = (float(diag["trace_center"]), "coarse trace column (0-based)")
    hdus = [prim, fits.ImageHDU(np.asarray(diag["deep_frame"], np.float32), name="DEEP"),
            fits.ImageHDU(np.asarray(diag["hot_pixel_map"], np.uint8), name="HOTPIX")]
    if diag.get("temporal_count_map") is not None:
        hdus.append(fits.ImageHDU(np.asarray(diag["temporal_count_map"], np.int32), name="TEMPOUT"))
    if diag.get("background") is not None:
        hdus.append(fits.ImageHDU(_background_rows(diag["background"]), name="BKGROW"))
    pca = diag.get("pca")
    if pca is not None:
        hdus.append(fits.ImageHDU(pca["eigenimages"], name="PCA_EIGIMG"))
        ts = fits.ImageHDU(np.asarray(pca["timeseries"], np.float64), name="PCA_TS")
        for k, v in enumerate(pca["explained_variance_ratio"][:99]):
            ts.header[f"EVR{k + 1}"] = float(v)
        ts.header["REMOVED"] = ",".join(str(r) for r in pca["removed"]) or "none"
        hdus.append(ts)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: fits.HDUList(hdus).writeto(tmp, overwrite=True), ".fits")
    return path
