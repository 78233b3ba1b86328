"""Stage 2 step 1: the SLITLESSPRISM wavelength map (the jwst ``assign_wcs`` MIR_LRS-SLITLESS model).

Sources (docs/sources.md): the CRDS MIRI LRS specwcs reference file (row -> wavelength table) and the
jwst pipeline documentation of ``assign_wcs`` for MIRI LRS.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from .. import reference
from .. import instrument
from ..datamodel import RateData
from ..errors import ConfigError, ReferenceFileError

log = logging.getLogger(__name__)

__all__ = ["read_specwcs_wavelength_map", "assign_wavelength"]


def _read_wavetable(path):
    """``(Y_CENTER, WAVELENGTH, IMYSLTL)`` of a CRDS specwcs file."""
    from astropy.io import fits

    try:
        with fits.open(path) as hdul:
            hdr = hdul[0].header
            tab = next((h for h in hdul[1:] if getattr(h, "columns", None) is not None
                        and "WAVELENGTH" in h.columns.names), None)
            if tab is None:
                raise ReferenceFileError(f"{path}: no table with a WAVELENGTH column (not a specwcs file)")
            if "Y_CENTER" not in tab.columns.names:
                raise ReferenceFileError(f"{path}: WAVETABLE has no Y_CENTER column")
            yc = np.asarray(tab.data["Y_CENTER"], float)
            wl = np.asarray(tab.data["WAVELENGTH"], float)
            imy = hdr.get("IMYSLTL", tab.header.get("IMYSLTL"))
            if imy is None:
                raise ReferenceFileError(f"{path}: IMYSLTL keyword missing")
    except OSError as exc:
        raise ReferenceFileError(f"{path}: cannot read specwcs file ({exc})") from exc
    return yc, wl, float(imy)


def read_specwcs_wavelength_map(path, shape=instrument.SUBARRAY_SHAPE) -> np.ndarray:
    """Wavelength map of the SLITLESSPRISM subarray from a CRDS MIRI LRS specwcs file.

    The WAVETABLE gives, per trace sample, X_CENTER/Y_CENTER (relative to the slit reference point
    IMXSLTL/IMYSLTL in 1-based full-frame pixels) and WAVELENGTH.  Subarray row (0-based) =
    IMYSLTL + Y_CENTER - 1 - (SUBSTRT2 - 1); the wavelength is interpolated in row and repeated
    along the row (jwst ``assign_wcs`` for SLITLESSPRISM is constant along rows to < 1e-3 um).
    Source: CRDS specwcs file format and jwst ``assign_wcs`` (docs/sources.md).

    Parameters
    ----------
    path : str or os.PathLike
        CRDS specwcs FITS file (e.g. ``jwst_miri_specwcs_0006.fits``).
    shape : tuple of int
        ``(nrows, ncols)`` of the map.

    Returns
    -------
    numpy.ndarray
        float32 ``(nrows, ncols)``, um; NaN for rows outside the table.

    Raises
    ------
    tsoreduce.errors.ReferenceFileError
        When the file cannot be read or is not a specwcs table.
    """
    yc, wl, imy = _read_wavetable(path)
    rows = imy + yc - 1.0 - (instrument.SUBSTRT2 - 1)
    order = np.argsort(rows)
    rows, wl = rows[order], wl[order]
    r = np.arange(shape[0], dtype=float)
    w = np.interp(r, rows, wl)
    w[(r < rows[0]) | (r > rows[-1])] = np.nan
    return np.repeat(w[:, None], shape[1], axis=1).astype(np.float32)


def _bundled_map(shape, map_name, source, ext, meta):
    name = map_name or reference.DEFAULT_WAVELENGTH_MAP
    wmap = reference.default_wavelength_map(shape, name)
    label = reference.wavelength_map_label(name)
    table = reference.WAVELENGTH_MAPS.get(name, Path(name).name)
    if source == "auto":
        why = "absent" if ext is None else "all zero or NaN"
        log.warning("wavelength: the input has no usable WAVELENGTH extension (%s); using the bundled "
                    "map %s (%s, tsoreduce/data/%s) for all %d rows", why, name, label, table, shape[0])
    else:
        log.info("wavelength map: bundled %s (%s) by configuration", name, label)
    meta["R_SPCWCS"] = label
    meta["WAVSRC"] = f"bundled {table}"
    return wmap


def assign_wavelength(rates: RateData, source: str = "auto", specwcs_path=None, *,
                      map_name: str | None = None) -> RateData:
    """Attach a wavelength map to ``rates.wavelength`` and record its origin.

    Source: the jwst ``assign_wcs`` MIR_LRS-SLITLESS model (row -> wavelength table of the CRDS
    specwcs reference file; jwst pipeline documentation, assign_wcs for MIRI LRS, docs/sources.md).
    The returned ``meta`` records what was used (written into calints and x1dints headers):
    ``R_SPCWCS`` the specwcs file (the input's own R_SPCWCS when its WAVELENGTH extension is kept)
    and ``WAVSRC`` ``'input WAVELENGTH extension'``, ``'bundled <table file>'`` or
    ``'specwcs file <name>'``.  The data arrays are shared with ``rates`` (not copied).

    Parameters
    ----------
    rates : tsoreduce.datamodel.RateData
        ``(nints, nrows, ncols)`` rates; not modified.
    source : {"auto", "extension", "default", "specwcs"}
        ``"extension"`` keeps the file's WAVELENGTH map (error if absent or all zero/NaN -- jwst
        #6963 wrote zeros); ``"default"`` uses the bundled map ``map_name``
        (:func:`tsoreduce.reference.default_wavelength_map`); ``"specwcs"`` reads ``specwcs_path``;
        ``"auto"``: ``specwcs_path`` when given, else the extension when valid, else the bundled map
        (a fallback logged at WARNING naming the map).
    specwcs_path : str or os.PathLike, optional
        CRDS specwcs file.
    map_name : str, optional
        Bundled map (``"specwcs_0009"``, the current CRDS solution, by default; or ``"specwcs_0006"``).

    Returns
    -------
    tsoreduce.datamodel.RateData
        ``rates`` with ``wavelength`` float32 ``(nrows, ncols)`` in um and the keywords above.

    Raises
    ------
    tsoreduce.errors.ConfigError
        Unknown ``source``, or ``"extension"``/``"specwcs"`` without a usable extension / path.
    tsoreduce.errors.ReferenceFileError
        Bad specwcs file or unknown map name.
    """
    shape = rates.data.shape[1:]
    ext = rates.wavelength
    ext_ok = ext is not None and np.isfinite(ext).any() and np.nanmax(np.abs(ext)) > 0
    meta = dict(rates.meta)
    if source == "specwcs" or (source == "auto" and specwcs_path):
        if not specwcs_path:
            raise ConfigError("stage2.wavelength.source = 'specwcs' needs stage2.wavelength.specwcs_path")
        wmap = read_specwcs_wavelength_map(specwcs_path, shape)
        meta["R_SPCWCS"] = Path(specwcs_path).name
        meta["WAVSRC"] = f"specwcs file {Path(specwcs_path).name}"
        log.info("wavelength map from specwcs file %s", specwcs_path)
    elif source == "extension" or (source == "auto" and ext_ok):
        if not ext_ok:
            raise ConfigError("stage2.wavelength.source = 'extension' but the product has no usable "
                              "WAVELENGTH extension (absent, zero or NaN)")
        wmap = np.where(ext > 0, ext, np.nan).astype(np.float32)
        meta["WAVSRC"] = "input WAVELENGTH extension"
        meta["R_SPCWCS"] = str(meta.get("R_SPCWCS") or "unknown (input WAVELENGTH extension)")
        log.info("wavelength map from the product's WAVELENGTH extension (R_SPCWCS %s)", meta["R_SPCWCS"])
    elif source in ("default", "auto"):
        wmap = _bundled_map(shape, map_name, source, ext, meta)
    else:
        raise ConfigError(f"stage2.wavelength.source: unknown value {source!r}")
    return rates.replace(wavelength=wmap, meta=meta)
