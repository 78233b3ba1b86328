"""Tables of the MRS branch's product and the writer the file-level runner uses.

:func:`tsoreduce.mrs.stage.run` returns the x1dints (with the per-band photometry and the stitched
spectrum in its metadata) and the light curves; :func:`write_products` writes
``<name>_mrs_x1dints.fits`` (JWST x1dints layout, Jy), ``<name>_mrs_photometry.ecsv`` (per-plane
aperture diagnostics) and ``<name>_mrs_stitched_spectrum.ecsv``.  Only
:func:`tsoreduce.pipeline.run_mrs_files` calls it; the light curves are written there.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .._util import atomic_write
from ..errors import OverwriteError

__all__ = ["photometry_table", "stitched_table", "write_products"]


def photometry_table(spectra):
    """Per-plane aperture diagnostics of every band, one row per wavelength plane.

    Parameters
    ----------
    spectra : tsoreduce.datamodel.SpectraData
        The MRS x1dints with ``meta['_photometry']`` (one
        :class:`~tsoreduce.mrs.photometry.CubePhotometry` per band).

    Returns
    -------
    astropy.table.Table
        band, wavelength (um), time-median flux and error (Jy), background (MJy/sr), aperture spaxel
        count, spaxels lost to the fixed bad-spaxel mask and their PSF fraction, aperture and annulus
        radii (spaxels), aperture correction; the centre of each band in the metadata.
    """
    from astropy.table import Table, vstack

    rows = []
    for ph in spectra.meta["_photometry"]:
        with np.errstate(all="ignore"):
            t = Table({"band": np.full(ph.wavelength.size, ph.band), "wavelength": ph.wavelength,
                       "flux_median": np.nanmedian(ph.flux, axis=0),
                       "flux_err_median": np.nanmedian(ph.flux_err, axis=0),
                       "background_median": np.nanmedian(ph.background, axis=0),
                       "npix": ph.npix, "npix_lost": ph.npix_lost, "psf_lost": ph.psf_lost,
                       "radius_pix": ph.radius, "r_in_pix": ph.r_in, "r_out_pix": ph.r_out,
                       "apcorr": ph.apcorr})
        t["wavelength"].unit = "um"
        t["flux_median"].unit = t["flux_err_median"].unit = "Jy"
        t["background_median"].unit = "MJy/sr"
        t.meta.update({"band": ph.band, "centre_x": ph.centre[0], "centre_y": ph.centre[1],
                       "pixar_sr": ph.pixar_sr, "pixel_scale_arcsec": ph.pixel_scale})
        rows.append(t)
    out = vstack(rows, metadata_conflicts="silent")
    out.meta["centres"] = {ph.band: list(ph.centre) for ph in spectra.meta["_photometry"]}
    return out


def stitched_table(spectra):
    """The stitched time-median spectrum (display product).

    Parameters
    ----------
    spectra : tsoreduce.datamodel.SpectraData
        The MRS x1dints with ``meta['_stitched']`` (a :class:`~tsoreduce.mrs.bands.StitchedSpectrum`).

    Returns
    -------
    astropy.table.Table
        wavelength (um), flux and flux_err (the x1dints units), band; the stitching method and the
        per-band scale factors in the metadata.
    """
    from astropy.table import Table

    st = spectra.meta["_stitched"]
    t = Table({"wavelength": st.wavelength, "flux": st.flux, "flux_err": st.err, "band": st.band})
    t["wavelength"].unit = "um"
    t["flux"].unit = t["flux_err"].unit = spectra.units
    t.meta.update({"method": st.method, "scale": st.scale})
    return t


def _write_ecsv(table, path: Path, overwrite: bool) -> Path:
    if path.exists() and not overwrite:
        raise OverwriteError(f"{path} exists; pass overwrite=True (--force) to replace it")
    atomic_write(path, lambda tmp: table.write(tmp, format="ascii.ecsv", overwrite=True), ".ecsv")
    return path


def write_products(product, outdir, *, name: str = "tso", overwrite: bool = False) -> list:
    """Write the x1dints and the two ECSV tables of an MRS product, atomically.

    Parameters
    ----------
    product : tsoreduce.contract.Stage3Product
        From :func:`tsoreduce.mrs.stage.run`; not modified.
    outdir : str or pathlib.Path
        Output directory (created).
    name : str
        File name prefix.
    overwrite : bool
        Replace existing files.

    Returns
    -------
    list of pathlib.Path
        ``<name>_mrs_x1dints.fits``, ``<name>_mrs_photometry.ecsv``, ``<name>_mrs_stitched_spectrum.ecsv``.

    Raises
    ------
    tsoreduce.errors.OverwriteError
        If a file exists and ``overwrite`` is false.
    """
    from .. import io

    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    spectra = product.x1dints
    x1d = outdir / f"{name}_mrs_x1dints.fits"
    io.write_x1dints(x1d, spectra, overwrite=overwrite)
    return [x1d, _write_ecsv(photometry_table(spectra), outdir / f"{name}_mrs_photometry.ecsv", overwrite),
            _write_ecsv(stitched_table(spectra), outdir / f"{name}_mrs_stitched_spectrum.ecsv", overwrite)]
