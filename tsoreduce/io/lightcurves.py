"""Light-curve tables: our LightCurves format (ECSV or HDF5) and readers of published tables.

``write_lightcurves(path, lc)`` writes :class:`~tsoreduce.datamodel.LightCurves` as

* ECSV (``.ecsv``): one row per integration; columns ``time`` (BMJD_TDB, d), ``mask``, ``white_flux``,
  ``white_err``, ``flux`` and ``err`` as (nints, nchan) array columns, one column ``reg_<name>`` per
  regressor; channel wavelengths (um) and ``meta`` in the table header; ``tsoreduce_format:
  lightcurves-1``.
* HDF5 (``.h5`` / ``.hdf5``): datasets ``time``, ``mask``, ``flux`` (nchan, nints), ``err``,
  ``wavelength``, ``wavelength_lower``, ``wavelength_upper``, optional ``white_flux``, ``white_err``,
  group ``regressors``; attribute ``format = tsoreduce-lightcurves-1`` and ``meta`` (JSON).

``read_lightcurves(path)`` opens those and, detected from their content, two published layouts:

* SPARTA-style HDF5 (Bell et al. 2024 WASP-43b public light curves): ``time`` (BMJD_TDB),
  ``flux_white``/``err_white``/``mask_white``, ``flux``/``err``/``mask`` (nchan, nints), ``wavelength``,
  ``wave_low``, ``wave_hi``, ``centroid_y``, ``psf_width_y``.  The per-channel masks become NaN fluxes
  (excluded by Stage 4); ``mask`` is ``mask_white``.
* Eureka!-style ECSV white light curve: ``time`` (BMJD_TDB), ``lcdata``, ``lcerr``, ``ypos``,
  ``ywidth`` (the cross-dispersion position and width: MIRI LRS is dispersed along rows, so they map to
  our ``trace_x`` / ``trace_width``).  The band (e.g. "5.0-10.5 um" in the description) goes to
  ``meta['white_wavelength_lower'/'_upper']``.

Regressor names follow Stage 3: ``trace_x`` (cross-dispersion trace position, px) and ``trace_width``.
Writers are atomic and refuse to overwrite an existing file unless ``overwrite=True``, and always refuse
to overwrite the file a LightCurves was read from.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import h5py
import numpy as np
from astropy import units as u
from astropy.table import Table

from .._util import atomic_write
from ..datamodel import LightCurves
from ..errors import OverwriteError, ProductError

__all__ = ["write_lightcurves", "read_lightcurves"]

log = logging.getLogger(__name__)

_FORMAT_ECSV = "lightcurves-1"
_FORMAT_H5 = "tsoreduce-lightcurves-1"


def _public_meta(meta: dict) -> dict:
    out = {}
    for k, v in meta.items():
        if str(k).startswith("_"):
            continue
        if isinstance(v, (np.generic,)):
            v = v.item()
        try:
            json.dumps(v)
        except TypeError:
            v = str(v)
        out[str(k)] = v
    return out


def _check_target(path: Path, lc: LightCurves, overwrite: bool):
    src = lc.meta.get("_source_path")
    if src is not None and Path(src).resolve() == path.resolve():
        raise OverwriteError(f"{path}: refusing to overwrite the file these light curves were read from")
    if path.exists() and not overwrite:
        raise OverwriteError(f"{path}: exists; pass overwrite=True to replace it")


def write_lightcurves(path, lc: LightCurves, *, overwrite=False) -> Path:
    """Write ``lc`` to ``path`` (.ecsv or .h5/.hdf5), atomically.

    Parameters
    ----------
    path : str or pathlib.Path
        Destination; the suffix chooses the format (``.ecsv``, ``.h5`` or ``.hdf5``).
    lc : LightCurves
        The light curves.
    overwrite : bool
        Replace an existing file (never the file ``lc`` was read from).

    Returns
    -------
    pathlib.Path
        The file written.

    Raises
    ------
    OverwriteError
        The file exists and ``overwrite`` is False, or it is the file ``lc`` was read from.
    ValueError
        An unknown suffix.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".ecsv", ".h5", ".hdf5"):
        raise ValueError(f"{path}: light-curve tables are written as .ecsv or .h5/.hdf5")
    _check_target(path, lc, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: (_write_ecsv if suffix == ".ecsv" else _write_h5)(tmp, lc), suffix)
    return path


#: regressors in pixels / spaxels: Stage 3's trace_x / trace_width and the MRS centroid_x / centroid_y
#: (with a ``_<band>`` suffix when several bands are extracted); others stay unitless
_PIXEL_REGRESSORS = ("trace_x", "trace_width", "centroid_x", "centroid_y")


def _regressor_unit(name: str) -> str | None:
    return "pix" if name.startswith(_PIXEL_REGRESSORS) else None


def _flux_unit(lc: LightCurves) -> str:
    """Unit string of flux/err/white_flux from ``meta['flux_units']``: '' (dimensionless) when the
    light curves are normalised or the unit is unknown to astropy, else the astropy form (e.g. 'Jy')."""
    name = str(lc.meta.get("flux_units", "normalised"))
    if name.lower() in ("normalised", "normalized", "relative", ""):
        return ""
    try:
        return u.Unit(name).to_string()
    except ValueError:
        return ""


def _write_ecsv(tmp, lc: LightCurves):
    t = Table()
    t["time"] = lc.time
    t["time"].description = "mid-integration BMJD_TDB"
    t["time"].unit = u.day
    t["mask"] = lc.mask
    funit = u.Unit(_flux_unit(lc))
    if lc.white_flux is not None:
        t["white_flux"] = lc.white_flux
        t["white_err"] = lc.white_err if lc.white_err is not None else np.full(lc.nints, np.nan)
        t["white_flux"].unit = t["white_err"].unit = funit
    if lc.nchan:
        t["flux"] = lc.flux.T
        t["err"] = lc.err.T
        t["flux"].unit = t["err"].unit = funit
    for k, v in lc.regressors.items():
        t[f"reg_{k}"] = v
        if _regressor_unit(k):
            t[f"reg_{k}"].unit = u.Unit(_regressor_unit(k))
    t.meta["tsoreduce_format"] = _FORMAT_ECSV
    t.meta["nchan"] = int(lc.nchan)
    t.meta["wavelength"] = [float(x) for x in lc.wavelength]
    t.meta["wavelength_lower"] = [float(x) for x in lc.wavelength_lower]
    t.meta["wavelength_upper"] = [float(x) for x in lc.wavelength_upper]
    t.meta["wavelength_unit"] = "um"
    t.meta["lc_meta"] = json.dumps(_public_meta(lc.meta))
    t.write(tmp, format="ascii.ecsv", overwrite=True)


def _write_h5(tmp, lc: LightCurves):
    with h5py.File(tmp, "w") as f:
        f.attrs["format"] = _FORMAT_H5
        f.attrs["meta"] = json.dumps(_public_meta(lc.meta))
        f.create_dataset("time", data=lc.time).attrs["units"] = "BMJD_TDB (d)"
        f.create_dataset("mask", data=lc.mask.astype(np.uint8))
        funit = _flux_unit(lc) or "dimensionless"
        f.create_dataset("flux", data=lc.flux).attrs["units"] = funit
        f.create_dataset("err", data=lc.err).attrs["units"] = funit
        for k in ("wavelength", "wavelength_lower", "wavelength_upper"):
            f.create_dataset(k, data=getattr(lc, k)).attrs["units"] = "um"
        for k in ("white_flux", "white_err"):
            if getattr(lc, k) is not None:
                f.create_dataset(k, data=getattr(lc, k)).attrs["units"] = funit
        g = f.create_group("regressors")
        for k, v in lc.regressors.items():
            d = g.create_dataset(k, data=v)
            if _regressor_unit(k):
                d.attrs["units"] = _regressor_unit(k)


def read_lightcurves(path) -> LightCurves:
    """Open a light-curve table (our ECSV/HDF5, SPARTA-style HDF5, Eureka!-style ECSV).

    Parameters
    ----------
    path : str or pathlib.Path
        The table: ``.ecsv``, ``.h5``/``.hdf5`` (ours or SPARTA-style) or ``.nc``.

    Returns
    -------
    LightCurves
        Time in BMJD_TDB, mask, regressors; ``meta['_source_path']`` is the file.

    Raises
    ------
    ProductError
        Missing file or unrecognised layout.
    """
    path = Path(path)
    if not path.exists():
        raise ProductError(path, "file not found")
    suffix = path.suffix.lower()
    if suffix in (".h5", ".hdf5", ".nc"):
        lc = _read_h5(path)
    elif suffix == ".ecsv":
        lc = _read_ecsv(path)
    else:
        raise ProductError(path, "light-curve tables are .ecsv or .h5/.hdf5")
    lc.meta["_source_path"] = str(path)
    return lc


def _read_h5(path) -> LightCurves:
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise ProductError(path, f"not a readable HDF5 file ({e})") from None
    with f:
        if f.attrs.get("format") == _FORMAT_H5:
            meta = json.loads(f.attrs.get("meta", "{}"))
            get = lambda k: f[k][()] if k in f else None  # noqa: E731
            return LightCurves(time=f["time"][()], flux=f["flux"][()], err=f["err"][()],
                               wavelength=get("wavelength"), wavelength_lower=get("wavelength_lower"),
                               wavelength_upper=get("wavelength_upper"), white_flux=get("white_flux"),
                               white_err=get("white_err"), mask=f["mask"][()].astype(bool),
                               regressors={k: v[()] for k, v in f.get("regressors", {}).items()}, meta=meta)
        if all(k in f for k in ("time", "flux_white", "err_white")):
            return _read_sparta(path, f)
    raise ProductError(path, "unrecognised HDF5 light-curve layout (expected tsoreduce format or SPARTA-style "
                             "datasets time, flux_white, err_white, flux, err, mask)")


def _read_sparta(path, f) -> LightCurves:
    units = f["time"].attrs.get("time_units", b"")
    units = units.decode() if isinstance(units, bytes) else str(units)
    if units and "BMJD" not in units.upper():
        raise ProductError(path, f"time units {units!r}: expected BMJD_TDB")
    time = f["time"][()].astype(float)
    n = time.size
    mask = f["mask_white"][()].astype(bool) if "mask_white" in f else np.zeros(n, bool)
    white = f["flux_white"][()].astype(float)
    werr = f["err_white"][()].astype(float)
    white = np.where(mask, np.nan, white)
    flux = err = wl = lo = hi = None
    if "flux" in f:
        flux = f["flux"][()].astype(float)
        err = f["err"][()].astype(float)
        if "mask" in f:
            cm = f["mask"][()].astype(bool)
            flux = np.where(cm, np.nan, flux)
        wl = f["wavelength"][()] if "wavelength" in f else None
        lo = f["wave_low"][()] if "wave_low" in f else None
        hi = f["wave_hi"][()] if "wave_hi" in f else None
    if flux is not None and flux.shape[0] > 1 and all(
            np.array_equal(flux[0], flux[k], equal_nan=True) for k in range(1, flux.shape[0])):
        log.warning("%s: all %d spectroscopic channels hold identical fluxes; the channel light curves are "
                    "not independent (check the file)", path, flux.shape[0])
        identical = True
    else:
        identical = False
    regs = {}
    for src, name in (("centroid_y", "trace_x"), ("psf_width_y", "trace_width"), ("centroid_x", "trace_y")):
        if src in f:
            v = f[src][()].astype(float)
            if not np.isfinite(v).any():
                log.warning("%s: regressor %s is NaN everywhere; not used", path, src)
                continue
            regs[name] = v
    meta = {"source_format": "SPARTA-style HDF5", "time_scale": "BMJD_TDB", "channels_identical": identical,
            "regressor_sources": {"trace_x": "centroid_y", "trace_width": "psf_width_y"}}
    if wl is not None and lo is not None:
        meta["white_wavelength_lower"] = float(np.nanmin(lo))
        meta["white_wavelength_upper"] = float(np.nanmax(hi))
    log.info("%s: SPARTA-style light curves, %d integrations, %d channels, %d masked", path, n,
             0 if flux is None else flux.shape[0], int(mask.sum()))
    return LightCurves(time=time, flux=flux, err=err, wavelength=wl, wavelength_lower=lo, wavelength_upper=hi,
                       white_flux=white, white_err=werr, mask=mask, regressors=regs, meta=meta)


def _read_ecsv(path) -> LightCurves:
    try:
        t = Table.read(path, format="ascii.ecsv")
    except Exception as e:  # astropy raises several types for malformed ECSV
        raise ProductError(path, f"not a readable ECSV table ({e})") from None
    if t.meta.get("tsoreduce_format") == _FORMAT_ECSV:
        nchan = int(t.meta.get("nchan", 0))
        meta = json.loads(t.meta.get("lc_meta", "{}"))
        flux = np.asarray(t["flux"], float).reshape(len(t), -1).T if nchan else None
        err = np.asarray(t["err"], float).reshape(len(t), -1).T if nchan else None
        regs = {c[4:]: np.asarray(t[c], float) for c in t.colnames if c.startswith("reg_")}
        wf = np.asarray(t["white_flux"], float) if "white_flux" in t.colnames else None
        we = np.asarray(t["white_err"], float) if "white_err" in t.colnames else None
        return LightCurves(time=np.asarray(t["time"], float), flux=flux, err=err,
                           wavelength=t.meta["wavelength"] if nchan else None,
                           wavelength_lower=t.meta["wavelength_lower"] if nchan else None,
                           wavelength_upper=t.meta["wavelength_upper"] if nchan else None,
                           white_flux=wf, white_err=we, mask=np.asarray(t["mask"], bool), regressors=regs,
                           meta=meta)
    if {"time", "lcdata", "lcerr"} <= set(t.colnames):
        return _read_eureka(path, t)
    raise ProductError(path, f"unrecognised ECSV light-curve layout (columns {t.colnames}); expected the "
                             "tsoreduce format or Eureka!-style time, lcdata, lcerr")


def _read_eureka(path, t) -> LightCurves:
    time = np.asarray(t["time"], float)
    flux = np.asarray(t["lcdata"], float)
    err = np.asarray(t["lcerr"], float)
    mask = ~(np.isfinite(flux) & np.isfinite(err))
    if "mask" in t.colnames:
        mask |= np.asarray(t["mask"], bool)
    regs = {}
    for src, name in (("ypos", "trace_x"), ("ywidth", "trace_width"), ("xpos", "trace_y")):
        if src in t.colnames:
            v = np.asarray(t[src], float)
            if not np.isfinite(v).any():
                log.warning("%s: regressor %s is NaN everywhere; not used", path, src)
                continue
            regs[name] = v
    meta = {"source_format": "Eureka!-style ECSV", "time_scale": "BMJD_TDB",
            "regressor_sources": {"trace_x": "ypos", "trace_width": "ywidth"}}
    desc = str(t.meta.get("description", ""))
    m = re.search(r"(\d+(?:\.\d+)?)\s*-\s*(\d+(?:\.\d+)?)\s*(?:um|µm|micron)", desc)
    if m:
        meta["white_wavelength_lower"] = float(m.group(1))
        meta["white_wavelength_upper"] = float(m.group(2))
    if desc:
        meta["description"] = desc
    return LightCurves(time=time, white_flux=flux, white_err=err, mask=mask, regressors=regs, meta=meta)
