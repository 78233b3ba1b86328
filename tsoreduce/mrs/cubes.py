"""MIRI MRS spectral cubes (``s3d``) as a time series: the :class:`CubeSeries` container and readers.

The STScI pipeline stops MRS time series at ``calints``; users build one ``s3d`` cube per integration
(``cube_build`` on single-integration cal files, pinned ``ra_center``/``dec_center``/``cube_pa``/
``nspax_x``/``nspax_y`` so every cube shares one grid) or stack them into a 4-D array.  This module
reads either form (JWST pipeline documentation, ``cube_build`` and the ``s3d`` science product):

* one ``s3d`` file per integration (a list of paths or a glob), ordered by INTSTART;
* one file holding a 4-D SCI stack, numpy shape ``(integration, wavelength, y, x)``;
* arrays already in memory (:func:`cubes_from_arrays`).

Cube contract (JWST pipeline ``s3d`` product; stdatamodels ``ifucube`` schema):
SCI and ERR in MJy/sr, DQ uint32 (1 = DO_NOT_USE, 512 = NON_SCIENCE),
optional WMAP (coverage; 0 = no data), the wavelength axis either linear
(``lambda_k = CRVAL3 + (k + 1 - CRPIX3) * CDELT3`` for 0-based plane k) or tabulated
(CTYPE3 = 'WAVE-TAB', the WCS-TABLE extension, column ``wavelength``), PIXAR_SR = spaxel solid angle
(sr) and the spaxel scale CDELT1/2 (deg).  Times come from an INT_TIMES table where present (columns
``int_{start,mid,end}_BJD_TDB`` as MJD), else from the barycentric header keywords
BSTRTIME/BMIDTIME/BENDTIME.
"""

from __future__ import annotations

import glob
import logging
import os
from dataclasses import dataclass, field

import numpy as np
from astropy.io import fits

from ..datamodel import DQ, IntTimes
from ..errors import (EmptyDataError, MalformedCubeError, MissingExtensionError, ShapeError,
                      TruncatedFileError, WrongInstrumentError)

log = logging.getLogger(__name__)

__all__ = ["CubeSeries", "MRS_BANDS", "band_label", "band_of_wavelength", "read_cubes",
           "read_cube_bands", "cubes_from_arrays", "cube_wavelengths", "ARCSEC2_TO_SR"]

#: (pi / 648000)^2: one square arcsecond in steradian (1 arcsec = pi / 648000 rad)
ARCSEC2_TO_SR = (np.pi / 648000.0) ** 2

#: MRS sub-bands: label -> (lambda_min, lambda_max) um, default spaxel (arcsec), spectral step (um).
#: Source: CRDS reference file jwst_miri_cubepar_0014.fits, as tabulated in stpsf (``stpsf/detectors.py``).
MRS_BANDS = {
    "1A": (4.90, 5.74, 0.13, 0.0008), "1B": (5.66, 6.63, 0.13, 0.0008),
    "1C": (6.53, 7.65, 0.13, 0.0008), "2A": (7.51, 8.77, 0.17, 0.0013),
    "2B": (8.67, 10.13, 0.17, 0.0013), "2C": (10.01, 11.70, 0.17, 0.0013),
    "3A": (11.55, 13.47, 0.20, 0.0025), "3B": (13.34, 15.57, 0.20, 0.0025),
    "3C": (15.41, 17.98, 0.20, 0.0025), "4A": (17.70, 20.95, 0.35, 0.0060),
    "4B": (20.69, 24.48, 0.35, 0.0060), "4C": (24.40, 28.70, 0.35, 0.0060),
}
_SUBBAND = {"SHORT": "A", "MEDIUM": "B", "LONG": "C"}


def band_label(channel, band) -> str:
    """Band label from the CHANNEL / BAND header keywords.

    Parameters
    ----------
    channel : str or int or None
        CHANNEL keyword ('1' ... '4', or e.g. '12' for a multi-band cube).
    band : str or None
        BAND keyword ('SHORT', 'MEDIUM', 'LONG', or e.g. 'SHORT-MEDIUM').

    Returns
    -------
    str
        ('1', 'SHORT') -> '1A'; ('12', 'SHORT-MEDIUM') -> '12-SHORT-MEDIUM'; 'MRS' when both are empty.
    """
    ch = str(channel or "").strip()
    bd = str(band or "").strip().upper()
    if len(ch) == 1 and ch in "1234" and bd in _SUBBAND:
        return ch + _SUBBAND[bd]
    if ch or bd:
        return f"{ch}-{bd}" if ch and bd else (ch or bd)
    return "MRS"


def band_of_wavelength(wavelength) -> np.ndarray:
    """Nominal sub-band label of each wavelength, from :data:`MRS_BANDS`.

    Parameters
    ----------
    wavelength : float or array_like
        Wavelengths in um.

    Returns
    -------
    numpy.ndarray
        str labels, at least 1-D; in overlaps the bluer band wins; outside all bands ''.
    """
    wl = np.atleast_1d(np.asarray(wavelength, float))
    out = np.full(wl.shape, "", dtype="<U2")
    for lab in reversed(list(MRS_BANDS)):
        lo, hi = MRS_BANDS[lab][:2]
        out[(wl >= lo) & (wl <= hi)] = lab
    return out


@dataclass
class CubeSeries:
    """A time series of MRS spectral cubes on one fixed grid (one band, or one multi-band cube).

    Parameters
    ----------
    data : numpy.ndarray
        float32 ``(nints, nwave, ny, nx)``, surface brightness in MJy/sr (NaN = no data).
    err : numpy.ndarray
        float32, same shape, 1-sigma MJy/sr.
    dq : numpy.ndarray
        uint32, same shape (JWST flags; DO_NOT_USE marks unusable voxels).
    wavelength : numpy.ndarray
        float64 ``(nwave,)``, um, strictly increasing.
    pixar_sr : float
        Spaxel solid angle (sr).
    pixel_scale : float
        Spaxel side (arcsec).
    wmap : numpy.ndarray or None
        float32 ``(nints, nwave, ny, nx)`` coverage (0 = no data).
    int_times : tsoreduce.datamodel.IntTimes or None
        Integration times.
    band : str
        Band label ('1A', ... or '12-SHORT-MEDIUM' for a multi-band cube).
    meta : dict
        Header keywords (first integration's primary + SCI headers).

    Raises
    ------
    tsoreduce.errors.ShapeError
        When the arrays disagree.
    tsoreduce.errors.MalformedCubeError
        For a non-positive solid angle / scale or a non-increasing wavelength axis.
    """

    data: np.ndarray
    err: np.ndarray | None = None
    dq: np.ndarray | None = None
    wavelength: np.ndarray | None = None
    pixar_sr: float = float("nan")
    pixel_scale: float = float("nan")
    wmap: np.ndarray | None = None
    int_times: IntTimes | None = None
    band: str = "MRS"
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.data = np.asarray(self.data, np.float32)
        if self.data.ndim != 4:
            raise ShapeError(f"CubeSeries.data must be 4-D (integration, wavelength, y, x), got shape "
                             f"{self.data.shape}")
        shape = self.data.shape
        if self.err is None:
            self.err = np.zeros(shape, np.float32)
        if self.dq is None:
            self.dq = np.zeros(shape, np.uint32)
        self.err = np.asarray(self.err, np.float32)
        self.dq = np.asarray(self.dq, np.uint32)
        for name in ("err", "dq", "wmap"):
            v = getattr(self, name)
            if v is not None and v.shape != shape:
                raise ShapeError(f"CubeSeries.{name} has shape {v.shape}, expected {shape}")
        if self.wavelength is None:
            raise ShapeError("CubeSeries.wavelength is required (um, shape (nwave,))")
        self.wavelength = np.asarray(self.wavelength, np.float64).ravel()
        if self.wavelength.shape != (shape[1],):
            raise ShapeError(f"CubeSeries.wavelength has shape {self.wavelength.shape}, expected "
                             f"({shape[1]},)")
        src = self.meta.get("_source_path", "<memory>")
        if not np.all(np.isfinite(self.wavelength)) or np.any(np.diff(self.wavelength) <= 0):
            raise MalformedCubeError(src, "wavelength axis is not finite and strictly increasing")
        if not (np.isfinite(self.pixar_sr) and self.pixar_sr > 0):
            raise MalformedCubeError(src, f"PIXAR_SR = {self.pixar_sr!r}: the spaxel solid angle must "
                                          "be a positive number of steradian")
        if not (np.isfinite(self.pixel_scale) and self.pixel_scale > 0):
            raise MalformedCubeError(src, f"spaxel scale = {self.pixel_scale!r} arcsec is not positive")
        if self.int_times is not None and len(self.int_times) != shape[0]:
            raise ShapeError(f"CubeSeries.int_times has {len(self.int_times)} rows, expected {shape[0]}")
        self.meta = dict(self.meta)

    @property
    def nints(self) -> int:
        return self.data.shape[0]

    @property
    def nwave(self) -> int:
        return self.data.shape[1]

    @property
    def shape(self) -> tuple:
        return self.data.shape

    def bad_voxels(self) -> np.ndarray:
        """bool ``(nints, nwave, ny, nx)``: True where a voxel cannot be used (non-finite SCI or ERR,
        DO_NOT_USE, or zero coverage).  The pipeline relies on WMAP == 0 alone (jwst ``extract_1d/ifu.py``); NaNs are
        masked explicitly as well."""
        bad = ~np.isfinite(self.data) | ~np.isfinite(self.err)
        bad |= (self.dq & np.uint32(DQ.DO_NOT_USE)) != 0
        if self.wmap is not None:
            bad |= ~(self.wmap > 0)
        return bad

    def replace(self, **changes) -> "CubeSeries":
        import dataclasses
        return dataclasses.replace(self, **changes)

    def select_integrations(self, index) -> "CubeSeries":
        """A new CubeSeries holding only the integrations in ``index``."""
        return self.replace(data=self.data[index], err=self.err[index], dq=self.dq[index],
                            wmap=None if self.wmap is None else self.wmap[index],
                            int_times=None if self.int_times is None else self.int_times.select(index))


# --------------------------------------------------------------------------------------------------
# reading

def cube_wavelengths(sci_header, hdul=None, path="<memory>") -> np.ndarray:
    """Wavelength of every plane of a cube.

    Rule (jwst ``cube_build/ifu_cube.py``; stdatamodels ``wcsinfo`` schema):
    a WCS-TABLE extension (column ``wavelength``) wins when present -- it is the only
    description of a WAVE-TAB axis and cube_build writes it for linear cubes too; otherwise
    ``lambda_k = CRVAL3 + (k + 1 - CRPIX3) * CDELT3`` (0-based k; CUNIT3 um or m).

    Parameters
    ----------
    sci_header : astropy.io.fits.Header
        Header of the SCI extension.
    hdul : astropy.io.fits.HDUList, optional
        The open file (for a WCS-TABLE extension).
    path : str
        File name for the messages.

    Returns
    -------
    numpy.ndarray
        ``(nwave,)`` float64, um.

    Raises
    ------
    tsoreduce.errors.MalformedCubeError
        When neither description is usable, axis 3 is not a wavelength axis, or the sizes disagree.
    """
    naxis = int(sci_header.get("NAXIS", 0))
    nwave = int(sci_header.get("NAXIS3", 0)) if naxis >= 3 else 0
    ctype3 = str(sci_header.get("CTYPE3", "")).strip().upper()
    if ctype3 and not ctype3.startswith("WAVE"):
        raise MalformedCubeError(path, f"CTYPE3 = {ctype3!r}: axis 3 is not a wavelength axis "
                                       "(expected 'WAVE' or 'WAVE-TAB')")
    if hdul is not None and "WCS-TABLE" in hdul:
        tab = hdul["WCS-TABLE"].data
        names = [n.lower() for n in tab.columns.names]
        if "wavelength" not in names:
            raise MalformedCubeError(path, "WCS-TABLE has no 'wavelength' column")
        wl = np.asarray(tab.field(tab.columns.names[names.index("wavelength")]), float).ravel()
        unit = (tab.columns[names.index("wavelength")].unit or "um").strip().lower()
    elif ctype3.startswith("WAVE-TAB"):
        raise MalformedCubeError(path, "CTYPE3 = WAVE-TAB but the WCS-TABLE extension is missing")
    elif ctype3.startswith("WAVE"):
        for key in ("CRVAL3", "CDELT3"):
            if key not in sci_header:
                raise MalformedCubeError(path, f"linear wavelength axis without {key} in the SCI header")
        k = np.arange(nwave)
        crpix = float(sci_header.get("CRPIX3", 1.0))
        wl = float(sci_header["CRVAL3"]) + (k + 1 - crpix) * float(sci_header["CDELT3"])
        unit = str(sci_header.get("CUNIT3", "um")).strip().lower()
    else:
        raise MalformedCubeError(path, f"CTYPE3 = {ctype3!r}: axis 3 is not a wavelength axis "
                                       "(expected 'WAVE' or 'WAVE-TAB')")
    if unit in ("m", "meter", "metre"):
        wl = wl * 1e6
    elif unit not in ("um", "micron", "microns", "micrometer"):
        raise MalformedCubeError(path, f"wavelength unit {unit!r} is not um or m")
    if wl.size != nwave:
        raise MalformedCubeError(path, f"the wavelength axis has {wl.size} values but SCI has {nwave} "
                                       "planes")
    return wl


def _check_mrs(primary, sci, path):
    inst = str(primary.get("INSTRUME", sci.get("INSTRUME", ""))).strip().upper()
    exp = str(primary.get("EXP_TYPE", sci.get("EXP_TYPE", ""))).strip().upper()
    if inst != "MIRI":
        raise WrongInstrumentError(path, f"INSTRUME = {inst or '<missing>'!r}; the MRS branch needs MIRI "
                                         "cubes")
    if exp != "MIR_MRS":
        raise WrongInstrumentError(path, f"EXP_TYPE = {exp or '<missing>'!r}; the MRS branch needs "
                                         "EXP_TYPE = 'MIR_MRS' (use tsoreduce.extraction for LRS)")
    bunit = str(sci.get("BUNIT", "MJy/sr")).strip().replace(" ", "")
    if bunit.lower() not in ("mjy/sr", "mjy/steradian", "mjy.sr**-1", "mjysr-1"):
        raise MalformedCubeError(path, f"SCI BUNIT = {bunit!r}; s3d cubes are in MJy/sr")


def _solid_angle_and_scale(sci, path):
    c1, c2 = sci.get("CDELT1"), sci.get("CDELT2")
    scale = np.sqrt(abs(float(c1) * float(c2))) * 3600.0 if c1 is not None and c2 is not None else np.nan
    if "PIXAR_SR" in sci:
        pixar = float(sci["PIXAR_SR"])
    elif "PIXAR_A2" in sci:
        pixar = float(sci["PIXAR_A2"]) * ARCSEC2_TO_SR
        log.info("%s: PIXAR_SR absent; using PIXAR_A2 x (pi/648000)^2", path)
    elif np.isfinite(scale):
        pixar = scale ** 2 * ARCSEC2_TO_SR
        log.info("%s: PIXAR_SR absent; using CDELT1 x CDELT2", path)
    else:
        raise MalformedCubeError(path, "no PIXAR_SR, PIXAR_A2 or CDELT1/CDELT2: the spaxel solid angle "
                                       "is unknown")
    if not np.isfinite(scale):
        scale = np.sqrt(pixar / ARCSEC2_TO_SR)
    return pixar, scale


def _int_times_from(hdul, primary, nints, intstart, path):
    if "INT_TIMES" in hdul:
        tab = hdul["INT_TIMES"].data
        names = {n.lower(): n for n in tab.columns.names}
        need = ("integration_number", "int_start_bjd_tdb", "int_mid_bjd_tdb", "int_end_bjd_tdb")
        if all(n in names for n in need):
            num = np.asarray(tab[names["integration_number"]], int)
            want = np.arange(intstart, intstart + nints)
            hit = np.flatnonzero(np.isin(num, want))
            if hit.size == nints:
                rows = hit[np.argsort(num[hit])]
            elif num.size == nints:
                rows = np.arange(nints)
            else:
                raise MalformedCubeError(path, f"INT_TIMES does not cover integrations {intstart}.."
                                               f"{intstart + nints - 1}")
            col = lambda n: (np.asarray(tab[names[n]], float)[rows] if n in names  # noqa: E731
                             else None)
            return IntTimes(num[rows], col("int_start_bjd_tdb"), col("int_mid_bjd_tdb"),
                            col("int_end_bjd_tdb"), col("int_start_mjd_utc"), col("int_mid_mjd_utc"),
                            col("int_end_mjd_utc"))
        log.warning("%s: INT_TIMES lacks BJD_TDB columns; falling back to header times", path)
    if nints == 1 and all(k in primary for k in ("BSTRTIME", "BENDTIME")):
        s, e = float(primary["BSTRTIME"]), float(primary["BENDTIME"])
        m = float(primary.get("BMIDTIME", 0.5 * (s + e)))
        return IntTimes([intstart], [s], [m], [e], reconstructed=True)
    return None


def _read_one(path, wavelength_range=None, box=None):
    """Arrays and metadata of one cube file (3-D or 4-D SCI), optionally cropped on read."""
    path = str(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such cube file")
    try:
        with fits.open(path, memmap=False) as hdul:  # .section reads only the cut from disk
            primary = hdul[0].header
            if "SCI" not in hdul:
                if len(hdul) == 1 and hdul[0].data is not None:
                    raise MissingExtensionError(path, "no SCI extension (the data are in the primary "
                                                      "HDU; an s3d cube keeps them in EXTNAME='SCI')")
                raise MissingExtensionError(path, "no SCI extension")
            sci_hdu = hdul["SCI"]
            sci_h = sci_hdu.header
            _check_mrs(primary, sci_h, path)
            shape = tuple(sci_hdu.shape) if sci_h.get("NAXIS", 0) else ()
            if not shape:
                raise MalformedCubeError(path, "SCI extension holds no data")
            if len(shape) not in (3, 4):
                raise MalformedCubeError(path, f"SCI has {len(shape)} axes (shape {shape}); a cube "
                                               "needs 3 (wavelength, y, x) or 4 (integration, wavelength, "
                                               "y, x)")
            wl = cube_wavelengths(sci_h, hdul, path)
            # crop on read (only the requested planes / box leave the disk: bounded memory)
            ksel = np.arange(wl.size)
            if wavelength_range is not None:
                ksel = np.flatnonzero((wl >= wavelength_range[0]) & (wl <= wavelength_range[1]))
                if ksel.size == 0:
                    log.info("%s: no plane within wavelength_range %s; file skipped", path,
                             wavelength_range)
                    return None
            ks = slice(int(ksel[0]), int(ksel[-1]) + 1)
            x0, x1, y0, y1 = box if box is not None else (0, shape[-1], 0, shape[-2])
            cut = (ks, slice(y0, y1), slice(x0, x1))
            if len(shape) == 4:
                cut = (slice(None),) + cut
            wl = wl[ks]
            arrays = {"data": np.asarray(sci_hdu.section[cut], np.float32)}
            if arrays["data"].size == 0:
                raise MalformedCubeError(path, f"box {box} selects no spaxel of the {shape[-2:]} field")
            for ext, dtype in (("ERR", np.float32), ("DQ", np.uint32), ("WMAP", np.float32)):
                if ext in hdul and hdul[ext].header.get("NAXIS", 0):
                    eshape = tuple(hdul[ext].shape)
                    if eshape != shape:
                        raise MalformedCubeError(path, f"{ext} has shape {eshape} but SCI has {shape}")
                    arrays[ext.lower()] = np.asarray(hdul[ext].section[cut], dtype)
                elif ext == "ERR":
                    raise MissingExtensionError(path, "no ERR extension: flux errors cannot be "
                                                      "propagated")
            if len(shape) == 3:
                arrays = {k: v[None] for k, v in arrays.items()}
            nints = arrays["data"].shape[0]
            pixar, scale = _solid_angle_and_scale(sci_h, path)
            intstart = int(primary.get("INTSTART", 1))
            times = _int_times_from(hdul, primary, nints, intstart, path)
            meta = {k: primary[k] for k in primary if k and k not in ("COMMENT", "HISTORY", "")}
            if box is not None:
                meta["MRSBOXX0"], meta["MRSBOXY0"] = int(x0), int(y0)
            for k in ("BUNIT", "CDELT1", "CDELT2", "CTYPE3", "PIXAR_SR", "PIXAR_A2"):
                if k in sci_h:
                    meta[k] = sci_h[k]
    except (OSError, TypeError, IndexError, ValueError) as exc:  # astropy's errors on a cut-short file
        if isinstance(exc, FileNotFoundError):
            raise
        raise TruncatedFileError(path, f"cannot read the FITS data ({exc}); the file may be truncated"
                                 ) from exc
    meta["_source_path"] = path
    label = band_label(primary.get("CHANNEL"), primary.get("BAND"))
    return dict(arrays=arrays, wavelength=wl, pixar=pixar, scale=scale, times=times, meta=meta,
                band=label, intstart=intstart)


def _expand(source) -> list[str]:
    if isinstance(source, (str, os.PathLike)):
        s = str(source)
        if any(c in s for c in "*?["):
            paths = sorted(glob.glob(s))
            if not paths:
                raise FileNotFoundError(f"{s}: no cube file matches this pattern")
            return paths
        return [s]
    paths = []
    for item in source:
        paths.extend(_expand(item))
    if not paths:
        raise FileNotFoundError("read_cubes() got an empty list of cube files")
    return paths


def _assemble(parts: list[dict]) -> CubeSeries:
    parts = sorted(parts, key=lambda p: p["intstart"])
    ref = parts[0]
    starts = [p["intstart"] for p in parts]
    if len(set(starts)) != len(starts):
        dup = sorted({s for s in starts if starts.count(s) > 1})
        where = [p["meta"]["_source_path"] for p in parts if p["intstart"] in dup][:2]
        raise MalformedCubeError(where[0], f"several cubes of band {ref['band']} have INTSTART = {dup[0]} "
                                           f"(e.g. {', '.join(where)}): the integration order and times are "
                                           "ambiguous; set INTSTART/INTEND in each per-integration file")
    for p in parts[1:]:
        where = p["meta"]["_source_path"]
        if p["arrays"]["data"].shape[1:] != ref["arrays"]["data"].shape[1:]:
            raise MalformedCubeError(where, f"cube grid {p['arrays']['data'].shape[1:]} differs from "
                                            f"{ref['arrays']['data'].shape[1:]} of "
                                            f"{ref['meta']['_source_path']}; build every integration "
                                            "on one grid (pin nspax_x/nspax_y/ra_center/dec_center)")
        if not np.allclose(p["wavelength"], ref["wavelength"], rtol=0, atol=1e-7):
            raise MalformedCubeError(where, "wavelength axis differs from the first cube's")
        if not np.isclose(p["pixar"], ref["pixar"], rtol=1e-6):
            raise MalformedCubeError(where, f"PIXAR_SR {p['pixar']} differs from the first cube's "
                                            f"{ref['pixar']}")
        if p["band"] != ref["band"]:
            raise MalformedCubeError(where, f"band {p['band']} differs from {ref['band']} of the first "
                                            "cube; use read_cube_bands() for several bands")
    cat = lambda k: (np.concatenate([p["arrays"][k] for p in parts])  # noqa: E731
                     if all(k in p["arrays"] for p in parts) else None)
    times = [p["times"] for p in parts]
    int_times = None if any(t is None for t in times) else IntTimes.concatenate(times)
    if int_times is None:
        log.warning("%s: no INT_TIMES table or BSTRTIME/BENDTIME keywords; integration times unknown",
                    ref["meta"]["_source_path"])
    meta = dict(ref["meta"])
    meta["_source_paths"] = [p["meta"]["_source_path"] for p in parts]
    cubes = CubeSeries(cat("data"), cat("err"), cat("dq"), ref["wavelength"], ref["pixar"],
                       ref["scale"], cat("wmap"), int_times, ref["band"], meta)
    if not np.any(np.isfinite(cubes.data)):
        raise EmptyDataError(ref["meta"]["_source_path"], "SCI is NaN everywhere in every integration")
    return cubes


def read_cube_bands(source, *, wavelength_range=None, box=None) -> dict[str, CubeSeries]:
    """Read MRS ``s3d`` cubes of one or several bands.

    Parameters
    ----------
    source : path, glob pattern, or list of paths/patterns.  Files may hold one integration
        (3-D SCI) or a 4-D stack; files of one band are joined in INTSTART order.
    wavelength_range : (min, max) um -- keep only these planes (read from disk plane by plane).
    box : (x0, x1, y0, y1) -- keep only this spaxel box (0-based, end exclusive); positions measured on
        the cropped cube are relative to (x0, y0) (stored as meta MRSBOXX0/MRSBOXY0).  Together they
        bound the memory of long TSOs: the data held are nints x nplanes x box x 13 bytes.

    Returns
    -------
    dict band label -> :class:`CubeSeries` (in the order of increasing first wavelength).

    Raises
    ------
    FileNotFoundError, WrongInstrumentError (not MIRI / not MIR_MRS), MissingExtensionError (no SCI or
    ERR), MalformedCubeError (wrong dimensionality, shapes, wavelength axis, units, solid angle, grids
    that differ within a band), TruncatedFileError, EmptyDataError.
    """
    groups: dict[str, list] = {}
    paths = _expand(source)
    for p in paths:
        part = _read_one(p, wavelength_range, box)
        if part is not None:
            groups.setdefault(part["band"], []).append(part)
    if not groups:
        raise MalformedCubeError(paths[0], f"no cube has a plane within wavelength_range {wavelength_range}")
    out = {b: _assemble(parts) for b, parts in groups.items()}
    return dict(sorted(out.items(), key=lambda kv: kv[1].wavelength[0]))


def read_cubes(source, *, wavelength_range=None, box=None) -> CubeSeries:
    """Read the ``s3d`` cubes of ONE band.

    Parameters
    ----------
    source : str or list of str
        Path, glob pattern, or list of paths/patterns (as :func:`read_cube_bands`).
    wavelength_range : tuple of float, optional
        (min, max) um: keep only these planes.
    box : tuple of int, optional
        (x0, x1, y0, y1): keep only this spaxel box (0-based, end exclusive).

    Returns
    -------
    CubeSeries
        ``(nints, nwave, ny, nx)``.

    Raises
    ------
    tsoreduce.errors.MalformedCubeError
        If the files hold more than one band (and the errors of :func:`read_cube_bands`).
    """
    bands = read_cube_bands(source, wavelength_range=wavelength_range, box=box)
    if len(bands) > 1:
        first = next(iter(bands.values())).meta["_source_path"]
        raise MalformedCubeError(first, f"the inputs hold several bands ({', '.join(bands)}); use "
                                        "read_cube_bands()")
    return next(iter(bands.values()))


def cubes_from_arrays(data, err, wavelength, pixar_sr, *, dq=None, wmap=None, pixel_scale=None,
                      int_times=None, band="MRS", meta=None) -> CubeSeries:
    """A :class:`CubeSeries` from arrays in memory.

    Parameters
    ----------
    data, err : array_like
        ``(nints, nwave, ny, nx)`` (a 3-D cube is one integration), MJy/sr.
    wavelength : array_like
        ``(nwave,)`` um.
    pixar_sr : float
        Spaxel solid angle (sr).
    dq, wmap : array_like, optional
        DQ flags and coverage, the shape of ``data``.
    pixel_scale : float, optional
        Spaxel side in arcsec (default sqrt(pixar_sr) in arcsec).
    int_times : tsoreduce.datamodel.IntTimes, optional
        Integration times.
    band : str
        Band label.
    meta : dict, optional
        Header keywords.

    Returns
    -------
    CubeSeries
        Checked like the container (ShapeError / MalformedCubeError).
    """
    def four(a):
        if a is None:
            return None
        a = np.asarray(a)
        return a[None] if a.ndim == 3 else a
    scale = np.sqrt(pixar_sr / ARCSEC2_TO_SR) if pixel_scale is None else float(pixel_scale)
    return CubeSeries(four(data), four(err), four(dq), wavelength, float(pixar_sr), scale, four(wmap),
                      int_times, band, dict(meta or {}))
