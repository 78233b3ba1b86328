"""Stage 3 step 4: the wavelength of every spectral element, and the units of the spectra.

The wavelength map (jwst ``assign_wcs`` / CRDS specwcs, jwst-pipeline.readthedocs.io) is sampled at the
trace; without a map the bundled default (specwcs_0009) is used with a WARNING.  Sources:
docs/sources.md.
"""

from __future__ import annotations

import logging

import numpy as np

from .. import reference
from ..datamodel import RateData

log = logging.getLogger(__name__)

__all__ = ["wavelength_at_trace", "wavelength_provenance", "spectral_units"]


def wavelength_at_trace(calints: RateData, trace, *, map_name: str | None = None) -> np.ndarray:
    """Wavelength of every row at the trace.

    The map in ``calints.wavelength`` linearly interpolated along the row at the trace column (jwst
    ``assign_wcs`` / CRDS specwcs).  Without a map (a calints that did not go through Stage 2's
    ``assign_wavelength``) the bundled map ``map_name`` is used, with a WARNING naming it.  Rows where
    the map is not finite (outside the table, rows 7-394 for SLITLESSPRISM) are NaN -- never an edge
    value repeated.

    Parameters
    ----------
    calints : RateData
        ``(nints, nrows, ncols)`` calints, with ``wavelength`` ``(nrows, ncols)`` in um or None.
    trace : array_like
        ``(nrows,)`` trace centre columns.
    map_name : str or None
        Bundled map used without a calints map (None:
        :data:`tsoreduce.reference.DEFAULT_WAVELENGTH_MAP`).

    Returns
    -------
    numpy.ndarray
        ``(nrows,)`` wavelength (um), NaN outside the map.
    """
    nrows, ncols = calints.data.shape[1:]
    if calints.wavelength is None or not np.isfinite(calints.wavelength).any():
        name = map_name or reference.DEFAULT_WAVELENGTH_MAP
        log.warning("wavelength: the calints has no wavelength map; using the bundled map %s (%s) for all "
                    "%d rows", name, reference.wavelength_map_label(name), nrows)
        return reference.wavelength_of_row(np.arange(nrows), name)
    wm = np.asarray(calints.wavelength, float)
    wm = np.where(wm > 0, wm, np.nan)
    t = np.clip(np.asarray(trace, float), 0, ncols - 1.000001)
    j = np.floor(t).astype(int)
    fr = t - j
    r = np.arange(nrows)
    return (1 - fr) * wm[r, j] + fr * wm[r, j + 1]


def wavelength_provenance(calints: RateData) -> dict:
    """Header keywords naming the wavelength map when the bundled one was used.

    Parameters
    ----------
    calints : RateData
        The calints.

    Returns
    -------
    dict
        ``R_SPCWCS`` and ``WAVSRC`` when the calints has no usable map; empty otherwise (the calints
        header already names its map).
    """
    if calints.wavelength is None or not np.isfinite(calints.wavelength).any():
        return {"R_SPCWCS": reference.wavelength_map_label(),
                "WAVSRC": "bundled " + reference.WAVELENGTH_MAPS[reference.DEFAULT_WAVELENGTH_MAP]}
    return {}


def spectral_units(calints: RateData):
    """Scale and units of the extracted spectra.

    MJy/sr calints are converted to Jy with the pixel solid angle PIXAR_SR when the header gives it
    (jwst ``photom`` convention); other units are kept (flux summed over the aperture).

    Parameters
    ----------
    calints : RateData
        The calints (``units``, ``meta['PIXAR_SR']``).

    Returns
    -------
    scale : float
        Factor applied to the summed flux and error.
    units : str
        Units of the spectra.
    """
    u = calints.units or "DN/s"
    if "MJy" in u and "sr" in u:
        pix = calints.meta.get("PIXAR_SR")
        if pix:
            log.info("calints in %s: spectra converted to Jy with PIXAR_SR = %g sr", u, pix)
            return float(pix) * 1e6, "Jy"
        log.info("calints in %s without PIXAR_SR: spectra are surface brightness summed over pixels", u)
        return 1.0, f"{u} x pixel"
    return 1.0, u
