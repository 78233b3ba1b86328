"""JWST-format FITS products of a MIRI time-series reduction: uncal, rateints, calints, x1dints.

HDU layouts (the STScI ``jwst`` pipeline's, so our products open in ``jwst``/Eureka!/exoTEDRF and theirs
open here).  Every product ends with an ``ASDF`` extension (jwst's metadata tree, see
:mod:`tsoreduce.io._jwst_layout`), without which stdatamodels, ``Step.call(path)`` and ``strun`` refuse
a FITS file:

=========  ==========================================================================================
uncal      PRIMARY (DATAMODL RampModel); SCI float32 ``(nints, ngroups, rows, cols)`` DN; PIXELDQ
           uint32 ``(rows, cols)``; GROUPDQ uint8 ``(nints, ngroups, rows, cols)``; ERR float32 (only if
           present); GDQ_HIGH uint32 (only if a group flag above bit 7 is set); INT_TIMES; ASDF.
           Real uncal SCI is uint16 (a Level1bModel): we write float32 so that corrected ramps
           round-trip losslessly, and accept any integer or float type on reading.
rateints   PRIMARY (CubeModel); SCI, ERR float32 ``(nints, rows, cols)``; DQ uint32; VAR_POISSON,
           VAR_RNOISE (when present); INT_TIMES; ASDF.  DISPAXIS = 2 in SCI for LRS slitless.
calints    as rateints, plus WAVELENGTH float32 ``(rows, cols)`` um (when present).
x1dints    PRIMARY (TSOMultiSpecModel); one EXTRACT1D table of ``nints`` rows in jwst >= 1.17's
           ``tso_spectable`` layout (vector WAVELENGTH um, FLUX, FLUX_ERROR with TUNIT = the
           container's units, 'Jy' or 'DN/s', DQ uint32, INT_NUM and MJD/TDB times per row); INT_TIMES;
           TSO_AUX BinTable with one float64 column per per-integration regressor of
           ``SpectraData.aux``; ASDF.  The reader also accepts the older one-EXTRACT1D-per-integration
           layout (jwst < 1.17).
=========  ==========================================================================================

INT_TIMES has exactly JWST's columns: ``integration_number, int_start_MJD_UTC, int_mid_MJD_UTC,
int_end_MJD_UTC, int_start_BJD_TDB, int_mid_BJD_TDB, int_end_BJD_TDB`` (days, MJD).  When a file's
INT_TIMES is empty or absent (MIRISim products, some user files) the times are rebuilt from header
keywords by :func:`reconstruct_int_times`, which warns with :class:`IntTimesReconstructedWarning`.

Header keywords: everything in ``meta`` whose key does not start with ``_`` goes to the primary header,
except keywords belonging to the SCI extension (BUNIT, SRCTYPE, PHOTMJSR, PHOTUJA2, PIXAR_SR, PIXAR_A2).
Keywords missing from ``meta`` get defaults: TELESCOP JWST, INSTRUME MIRI, DETECTOR MIRIMAGE, EXP_TYPE
MIR_LRS-SLITLESS, SUBARRAY SLITLESSPRISM, NINTS = nints, INTSTART 1, INTEND, NFRAMES 1, EXSEGNUM/EXSEGTOT 1
and, for SLITLESSPRISM, READPATT FASTR1, TFRAME 0.15904 s, TGROUP = TFRAME * NFRAMES; the uncal writer
sets NGROUPS to the SCI cube's group count; for SLITLESSPRISM the readout keywords jwst reads get their
flight values when absent (FRMDIVSR = NFRAMES, NSAMPLES 1, GROUPGAP 0, DRPFRMS1/DRPFRMS3 0, NRSTSTRT 0,
NRESETS 1); TSOPROD (product kind), DATAMODL and FILENAME are always set.  Meta keys that are not
standard 8-character keywords are kept in the ASDF tree (``tsoreduce.meta``), never as HIERARCH cards;
``provenance`` goes to the tree (``tsoreduce.provenance``), with short keywords TSOVER, TSOSOFT, TSOSTAGE,
TSOCFGH, TSORUNCF, TSOSIM, TSOSEED and multi-line values as HISTORY.  Readers restore both: long keys
under their own names, provenance entries as ``meta["TSO <KEY>"]``.
Readers put the primary header keywords (and those SCI keywords) into ``meta`` and the file name into
``meta["_source_path"]``.  Writers are atomic (temporary file in the target directory, then
``os.replace``), refuse to overwrite an existing file unless ``overwrite=True``, and always refuse to
overwrite the file the product was read from (:class:`~tsoreduce.errors.OverwriteError`).

Readers check the input and raise named errors (all :class:`~tsoreduce.errors.ProductError` subclasses,
carrying ``path`` and ``reason``): not a FITS file / does not exist (ProductError), not MIRI or not an
allowed EXP_TYPE (WrongInstrumentError), not 416 x 72 SLITLESSPRISM (WrongSubarrayError), a required
extension absent (MissingExtensionError), file shorter than its headers announce (TruncatedFileError),
science data non-finite everywhere (EmptyDataError).

Integration times: :mod:`tsoreduce.io.int_times`; writers: :mod:`tsoreduce.io.fits_writers` (re-exported here).

Sources: JWST pipeline documentation, "Science Products" / "Data Product Types" (HDU names and order
of _uncal, _rateints, _calints, _x1dints) and the ``INT_TIMES`` table definition (stdatamodels
``int_times`` schema); JWST keyword dictionary (EXPSTART, TFRAME, TGROUP, NRESETS, INTSTART, ...).
"""

from __future__ import annotations

import glob as _glob
import logging
import os
from pathlib import Path

import numpy as np
from astropy.io import fits

from ..datamodel import RampData, RateData, SpectraData, concatenate
from ..errors import (EmptyDataError, MissingExtensionError, ProductError, ShapeError,
                      WrongInstrumentError, WrongSubarrayError)
from ..instrument import SUBARRAY_NAME, SUBARRAY_SHAPE
from ._fitsfile import image_shape, open_checked, read_image_blocks
from .fits_writers import (GROUPDQ_HIGH, PRODUCT_KEYWORD, write_calints, write_rateints, write_uncal,
                           write_x1dints)
from .int_times import (INT_TIMES_COLUMNS, IntTimesMissingWarning, IntTimesReconstructedWarning,
                        int_times_from_columns, int_times_hdu, read_int_times, reconstruct_int_times)
# SCI_KEYWORDS: the keywords that live in the SCI header rather than the primary header
from ._jwst_layout import SCI_KEYWORDS, read_asdf_tree

__all__ = [
    "read", "read_uncal", "read_rateints", "read_calints", "read_x1dints", "read_segments",
    "write_uncal", "write_rateints", "write_calints", "write_x1dints",
    "reconstruct_int_times", "IntTimesReconstructedWarning", "IntTimesMissingWarning", "product_type",
    "DEFAULT_EXP_TYPES", "INT_TIMES_COLUMNS",
]

log = logging.getLogger(__name__)

#: transition alias (tests/test_io.py, benchmarks/bench_stage1.py): use tsoreduce.io.int_times.int_times_hdu
_int_times_hdu = int_times_hdu

#: EXP_TYPE accepted by default (MIRI LRS slitless); pass ``allowed_exp_types=None`` to accept any.
DEFAULT_EXP_TYPES = ("MIR_LRS-SLITLESS",)


_STRUCTURAL = {"SIMPLE", "BITPIX", "NAXIS", "EXTEND", "COMMENT", "HISTORY", "", "XTENSION", "PCOUNT",
               "GCOUNT", "EXTNAME", "EXTVER", "CHECKSUM", "DATASUM", "BSCALE", "BZERO"}


# ----------------------------------------------------------------------------------------- opening
def _meta_from(hdul) -> dict:
    meta = {}
    for key, value in hdul[0].header.items():
        if key in _STRUCTURAL or key.startswith("NAXIS"):
            continue
        meta[key] = value
    if "SCI" in hdul:
        for key in SCI_KEYWORDS:
            if key in hdul["SCI"].header:
                meta[key] = hdul["SCI"].header[key]
    try:
        tree = read_asdf_tree(hdul)
    except Exception as exc:  # noqa: BLE001 -- a foreign or damaged ASDF extension: headers still hold
        log.warning("%s: ASDF extension unreadable (%s); using the FITS headers only",
                    hdul.filename(), exc)
        tree = None
    ours = (tree or {}).get("tsoreduce") or {}
    if isinstance(ours, dict):
        # meta keys that are not 8-character FITS keywords, and provenance, as "TSO <KEY>"
        meta.update({str(k): v for k, v in (ours.get("meta") or {}).items()})
        meta.update({f"TSO {str(k).upper()}": v for k, v in (ours.get("provenance") or {}).items()})
    return meta


def _check_identity(path, meta, *, what, allowed_exp_types):
    inst = meta.get("INSTRUME")
    if inst is None:
        raise WrongInstrumentError(path, f"{what}: no INSTRUME keyword in the primary header; "
                                   "tsoreduce reads JWST MIRI products")
    if str(inst).strip().upper() != "MIRI":
        raise WrongInstrumentError(path, f"{what}: INSTRUME = {inst!r}, tsoreduce reads MIRI products")
    if allowed_exp_types is not None:
        allowed = tuple(str(e).upper() for e in allowed_exp_types)
        exp = str(meta.get("EXP_TYPE", "")).strip().upper()
        if exp not in allowed:
            raise WrongInstrumentError(path, f"{what}: EXP_TYPE = {meta.get('EXP_TYPE')!r}, expected one "
                                       f"of {allowed} (pass allowed_exp_types= to accept others)")


def _check_frame(path, meta, shape, *, what, expected_shape):
    if expected_shape is None:
        return
    if tuple(shape) != tuple(expected_shape):
        raise WrongSubarrayError(path, f"{what}: frames are {shape[0]} rows x {shape[1]} columns, "
                                 f"expected {expected_shape[0]} x {expected_shape[1]} "
                                 f"({SUBARRAY_NAME}); SUBARRAY = {meta.get('SUBARRAY')!r}")
    sub = meta.get("SUBARRAY")
    if sub is not None and tuple(expected_shape) == SUBARRAY_SHAPE and str(sub).strip() != SUBARRAY_NAME:
        raise WrongSubarrayError(path, f"{what}: SUBARRAY = {sub!r}, expected {SUBARRAY_NAME!r}")


def _require(path, hdul, name, *, what):
    """The HDU ``name``; MissingExtensionError if absent or empty.  Images are checked from the header
    (touching ``.data`` would read and scale the whole array, e.g. 1.2 GB per uncal segment)."""
    if name not in hdul:
        have = ", ".join(h.name for h in hdul)
        raise MissingExtensionError(path, f"{what}: required extension {name} is absent (HDUs: {have})")
    hdu = hdul[name]
    empty = (0 in image_shape(hdu)) if isinstance(hdu, fits.ImageHDU) else hdu.data is None
    if empty:
        raise MissingExtensionError(path, f"{what}: extension {name} holds no data")
    return hdu


def _image(hdul, name, dtype):
    """A native-endian copy of an image extension (None if absent), so nothing refers to the file."""
    if name not in hdul or hdul[name].data is None:
        return None
    return np.array(hdul[name].data, dtype=dtype)


def _check_not_empty(path, data, *, what, name="SCI"):
    if not np.isfinite(data).any():
        raise EmptyDataError(path, f"{what}: {name} is NaN/non-finite everywhere ({data.shape})")


def _units(meta, default):
    u = meta.pop("BUNIT", None)
    return str(u).strip() if u else default


# ----------------------------------------------------------------------------------------- reading
def read_uncal(path, *, allowed_exp_types=DEFAULT_EXP_TYPES, expected_shape=SUBARRAY_SHAPE,
               integrations: tuple[int, int] | None = None) -> RampData:
    """Read a JWST ``_uncal`` (or ``_ramp``) file into a :class:`RampData` (DN, float32).

    SCI may be uint16 (flight) or float; GROUPDQ uint8/uint32 and PIXELDQ are optional (zeros when
    absent, logged); ERR is read when present.  Times come from INT_TIMES or
    :func:`reconstruct_int_times`.  ``allowed_exp_types=None`` / ``expected_shape=None`` disable those
    checks.

    ``integrations=(start, stop)`` reads only the file's integrations ``start .. stop-1`` (0-based,
    within this file) through ``ImageHDU.section``, so a segment can be processed in chunks with
    bounded memory; INTSTART/INTEND of the returned meta then describe the chunk.


    Parameters
    ----------
    path : str or pathlib.Path
        The FITS file.
    allowed_exp_types : tuple of str or None
        EXP_TYPE values accepted (default MIRI LRS slitless); None accepts any.
    expected_shape : tuple of int or None
        ``(rows, cols)`` the frames must have (default SLITLESSPRISM 416 x 72); None accepts any.
    integrations : tuple of int, optional
        ``(start, stop)``, 0-based within the file: read only these integrations.

    Returns
    -------
    RampData
        ``data`` float32 ``(nints, ngroups, rows, cols)`` DN, ``groupdq``, ``pixeldq``, ``err`` (or
        None), ``int_times`` and the header keywords as ``meta``.

    Raises
    ------
    ProductError
        Missing file or not FITS.
    WrongInstrumentError
        Not MIRI or an EXP_TYPE not allowed.
    WrongSubarrayError
        Frames not of ``expected_shape``.
    MissingExtensionError
        A required extension is absent.
    TruncatedFileError
        The file is shorter than its headers announce.
    EmptyDataError
        SCI non-finite everywhere.
    ShapeError
        An empty or out-of-range ``integrations``.
    """
    what = "uncal"
    with open_checked(path, what=what) as hdul:
        meta = _meta_from(hdul)
        _check_identity(path, meta, what=what, allowed_exp_types=allowed_exp_types)
        sci = _require(path, hdul, "SCI", what=what)
        shape = image_shape(sci)
        if len(shape) != 4:
            raise WrongSubarrayError(path, f"{what}: SCI has shape {shape}, expected 4-D "
                                     "(integration, group, row, column)")
        _check_frame(path, meta, shape[2:], what=what, expected_shape=expected_shape)
        nfile = shape[0]
        a = b = None
        if integrations is not None:
            a, b = (int(v) for v in integrations)
            if not 0 <= a < b <= nfile:
                raise ShapeError(f"{path}: integrations {integrations} outside 0..{nfile} of the file")
        for name in ("GROUPDQ", "ERR", GROUPDQ_HIGH):
            # checked before reading: a chunk read would otherwise fail mid-array, unnamed
            if name in hdul and image_shape(hdul[name]) not in ((0,), shape):
                raise ProductError(path, f"{what}: inconsistent extensions: {name} has shape "
                                   f"{image_shape(hdul[name])}, SCI {shape}")
        data, groupdq, err, high = (
            read_image_blocks(path, name, dt, start=a, stop=b, memmap=True)
            if name in hdul and 0 not in image_shape(hdul[name]) else None
            for name, dt in (("SCI", np.float32), ("GROUPDQ", np.uint32), ("ERR", np.float32),
                             (GROUPDQ_HIGH, np.uint32)))
        if high is not None:
            # our flags above GROUPDQ's byte (see write_uncal)
            groupdq = high if groupdq is None else groupdq | high
        _check_not_empty(path, data, what=what)
        pixeldq = _image(hdul, "PIXELDQ", np.uint32)
        for name, arr in (("GROUPDQ", groupdq), ("PIXELDQ", pixeldq)):
            if arr is None:
                log.info("%s: no %s extension; assuming all pixels good", path, name)
        times = read_int_times(path, hdul, nfile, meta)
    if integrations is not None:
        if times is not None:
            times = times.select(slice(a, b))
        start = int(meta.get("INTSTART", 1) or 1)
        meta["INTSTART"], meta["INTEND"] = start + a, start + b - 1
    meta.pop("BUNIT", None)
    meta["_source_path"] = str(Path(path).resolve())
    try:
        return RampData(data, groupdq, pixeldq, err, times, meta)
    except ShapeError as exc:
        raise ProductError(path, f"{what}: inconsistent extensions: {exc}") from exc


def _read_rate(path, what, allowed_exp_types, expected_shape, variances=True):
    # headers and checks first (no data read), then each cube block by block: holding the file's
    # raw arrays next to the converted ones doubled the memory of Stages 2-3
    with open_checked(path, what=what) as hdul:
        meta = _meta_from(hdul)
        _check_identity(path, meta, what=what, allowed_exp_types=allowed_exp_types)
        sci = _require(path, hdul, "SCI", what=what)
        shape = image_shape(sci)
        if len(shape) != 3:
            raise WrongSubarrayError(path, f"{what}: SCI has shape {shape}, expected 3-D "
                                     "(integration, row, column) -- a 2-D _rate file has no "
                                     "per-integration images")
        _check_frame(path, meta, shape[1:], what=what, expected_shape=expected_shape)
        for name in ("ERR", "DQ"):
            _require(path, hdul, name, what=what)
        cubes = [("ERR", np.float32), ("DQ", np.uint32)]
        if variances:
            cubes += [("VAR_POISSON", np.float32), ("VAR_RNOISE", np.float32)]
        present = [(n, dt) for n, dt in cubes if n in hdul and 0 not in image_shape(hdul[n])]
        wavelength = _image(hdul, "WAVELENGTH", np.float32)
        times = read_int_times(path, hdul, shape[0], meta)
    data = read_image_blocks(path, "SCI", np.float32)
    _check_not_empty(path, data, what=what)
    arrays = {name.lower(): read_image_blocks(path, name, dt) for name, dt in present}
    arrays["wavelength"] = wavelength
    units = _units(meta, "DN/s")
    meta["_source_path"] = str(Path(path).resolve())
    try:
        return RateData(data, int_times=times, meta=meta, units=units, **arrays)
    except ShapeError as exc:
        raise ProductError(path, f"{what}: inconsistent extensions: {exc}") from exc


def read_rateints(path, *, allowed_exp_types=DEFAULT_EXP_TYPES, expected_shape=SUBARRAY_SHAPE,
                 variances: bool = True) -> RateData:
    """Read a JWST ``_rateints`` file into a :class:`RateData` (``units`` from SCI BUNIT, default DN/s).

    DQ of any integer type (MIRISim: int32 with BZERO) is read as uint32.  Required: SCI (3-D), ERR, DQ.
    Warns IntTimesReconstructedWarning when INT_TIMES is empty.

    Parameters
    ----------
    path : str or pathlib.Path
        The FITS file.
    allowed_exp_types : tuple of str or None
        EXP_TYPE values accepted (default MIRI LRS slitless); None accepts any.
    expected_shape : tuple of int or None
        ``(rows, cols)`` the frames must have (default SLITLESSPRISM 416 x 72); None accepts any.
    variances : bool
        Read VAR_POISSON and VAR_RNOISE (False: skip them, two cubes less in memory, e.g. for Stage 3,
        which uses ERR only).

    Returns
    -------
    RateData
        ``(nints, rows, cols)`` data, err, dq, variances (when present and asked for), int_times and meta.

    Raises
    ------
    ProductError
        Missing file or not FITS.
    WrongInstrumentError
        Not MIRI or an EXP_TYPE not allowed.
    WrongSubarrayError
        Frames not of ``expected_shape``.
    MissingExtensionError
        A required extension is absent.
    TruncatedFileError
        The file is shorter than its headers announce.
    EmptyDataError
        SCI non-finite everywhere.
    """
    return _read_rate(path, "rateints", allowed_exp_types, expected_shape, variances)


def read_calints(path, *, allowed_exp_types=DEFAULT_EXP_TYPES, expected_shape=SUBARRAY_SHAPE,
                 variances: bool = True) -> RateData:
    """Read a JWST ``_calints`` file into a :class:`RateData`, including the WAVELENGTH map (um) when
    present.  Same checks and errors as :func:`read_rateints`.

    Parameters
    ----------
    path : str or pathlib.Path
        The FITS file.
    allowed_exp_types : tuple of str or None
        EXP_TYPE values accepted (default MIRI LRS slitless); None accepts any.
    expected_shape : tuple of int or None
        ``(rows, cols)`` the frames must have (default SLITLESSPRISM 416 x 72); None accepts any.
    variances : bool
        Read VAR_POISSON and VAR_RNOISE (False: skip them, two cubes less in memory, e.g. for Stage 3,
        which uses ERR only).

    Returns
    -------
    RateData
        ``(nints, rows, cols)`` data, err, dq, variances (when present and asked for), ``wavelength`` ``(rows, cols)``
        um (when present), int_times and meta.

    Raises
    ------
    ProductError
        Missing file or not FITS.
    WrongInstrumentError
        Not MIRI or an EXP_TYPE not allowed.
    WrongSubarrayError
        Frames not of ``expected_shape``.
    MissingExtensionError
        A required extension is absent.
    TruncatedFileError
        The file is shorter than its headers announce.
    EmptyDataError
        SCI non-finite everywhere.
    """
    return _read_rate(path, "calints", allowed_exp_types, expected_shape, variances)


def read_x1dints(path, *, allowed_exp_types=DEFAULT_EXP_TYPES) -> SpectraData:
    """Read a JWST ``_x1dints`` file into a :class:`SpectraData`.

    Accepts jwst >= 1.17's (and our) single EXTRACT1D table with one row per integration and vector
    columns (TSOMultiSpecModel), and the older layout of one EXTRACT1D table per integration (e.g. the
    flight WASP-39 file).  Times come from INT_TIMES, else from the table's INT_NUM / MJD-* / TDB-*
    columns, else from the header (:func:`reconstruct_int_times`).  ``data`` = FLUX, ``err`` = FLUX_ERROR,
    ``dq`` = DQ (uint32), ``wavelength`` = WAVELENGTH (1-D when identical in every integration),
    ``units`` = TUNIT of FLUX, ``aux`` from TSO_AUX.


    Parameters
    ----------
    path : str or pathlib.Path
        The FITS file.
    allowed_exp_types : tuple of str or None
        EXP_TYPE values accepted (default MIRI LRS slitless); None accepts any.

    Returns
    -------
    SpectraData
        ``(nints, nwave)`` flux, err and dq, wavelength, int_times, aux and meta.

    Raises
    ------
    ProductError
        Missing file or not FITS.
    WrongInstrumentError
        Not MIRI or an EXP_TYPE not allowed.
    MissingExtensionError
        No EXTRACT1D table.
    TruncatedFileError
        The file is shorter than its headers announce.
    EmptyDataError
        FLUX NaN everywhere.
    """
    what = "x1dints"
    with open_checked(path, what=what) as hdul:
        meta = _meta_from(hdul)
        _check_identity(path, meta, what=what, allowed_exp_types=allowed_exp_types)
        tables = [h for h in hdul if h.name == "EXTRACT1D"]
        if not tables:
            _require(path, hdul, "EXTRACT1D", what=what)
        for h in tables:
            if h.data is None or "FLUX" not in h.columns.names or "WAVELENGTH" not in h.columns.names:
                raise MissingExtensionError(path, f"{what}: EXTRACT1D {h.ver} lacks FLUX/WAVELENGTH data")
        first = tables[0].data
        units = tables[0].columns["FLUX"].unit or meta.get("TSOUNITS") or "DN/s"

        def col(name, dtype, fill):
            if name not in first.columns.names:
                return None
            if len(tables) == 1 and np.ndim(first[name]) == 2:
                return np.array(first[name], dtype=dtype)
            try:
                return np.array([np.asarray(h.data[name]) for h in tables]).astype(dtype)
            except ValueError as exc:
                raise ProductError(path, f"{what}: EXTRACT1D tables have different lengths") from exc

        vector = len(tables) == 1 and np.ndim(first["FLUX"]) == 2
        flux = col("FLUX", np.float64, np.nan)
        if not vector and len(tables) == 1:
            flux = flux.reshape(1, -1)
        err = col("FLUX_ERROR", np.float64, np.nan)
        dq = col("DQ", np.int64, 0)
        wave = col("WAVELENGTH", np.float64, np.nan)
        if dq is not None:
            dq = (dq % (1 << 32)).astype(np.uint32)  # int32 'J' columns without TZERO wrap bit 31
        _check_not_empty(path, flux, what=what, name="FLUX")
        if wave is not None and np.array_equal(wave, wave[:1].repeat(len(wave), 0), equal_nan=True):
            wave = wave[0]
        if wave is not None and not np.isfinite(wave).any():
            wave = None  # our writer stores a missing wavelength as NaN
        aux = {}
        if "TSO_AUX" in hdul:
            aux = {c: np.array(hdul["TSO_AUX"].data[c], np.float64) for c in hdul["TSO_AUX"].columns.names}
        times = None
        if vector and "INT_TIMES" not in hdul:
            times = int_times_from_columns(first)
        if times is None:
            times = read_int_times(path, hdul, flux.shape[0], meta)
    meta.pop("TSOUNITS", None)
    meta["_source_path"] = str(Path(path).resolve())
    try:
        return SpectraData(flux, err, dq, wave, times, aux, meta, units=str(units).strip())
    except ShapeError as exc:
        raise ProductError(path, f"{what}: inconsistent tables: {exc}") from exc


_SUFFIXES = {"uncal": "uncal", "ramp": "uncal", "rateints": "rateints", "calints": "calints",
             "x1dints": "x1dints"}
_MODELS = {"level1bmodel": "uncal", "rampmodel": "uncal", "multispecmodel": "x1dints",
           "tsomultispecmodel": "x1dints"}


def product_type(path) -> str:
    """'uncal', 'rateints', 'calints' or 'x1dints' for a product file, decided by (in order) our
    TSOPROD keyword, the file-name suffix (``_uncal``, ``_ramp``, ``_rateints``, ``_calints``,
    ``_x1dints``), DATAMODL, then the HDU structure (EXTRACT1D -> x1dints; 4-D SCI -> uncal; 3-D SCI
    with WAVELENGTH -> calints; 3-D SCI -> rateints).

    Parameters
    ----------
    path : str or pathlib.Path
        A FITS product.

    Returns
    -------
    str
        ``"uncal"``, ``"rateints"``, ``"calints"`` or ``"x1dints"``.

    Raises
    ------
    ProductError
        Undecidable, missing or not FITS.
    WrongSubarrayError
        A 2-D SCI image (a _rate/_cal product averaged over integrations).
    """
    with open_checked(path, what="product") as hdul:
        ph = hdul[0].header
        kind = str(ph.get(PRODUCT_KEYWORD, "")).strip().lower()
        if kind in _SUFFIXES.values():
            return kind
        stem = Path(path).name.split(".")[0].lower()
        for suffix, kind in _SUFFIXES.items():
            if stem.endswith("_" + suffix):
                return kind
        model = str(ph.get("DATAMODL", "")).strip().lower()
        if model in _MODELS:
            return _MODELS[model]
        if "EXTRACT1D" in hdul:
            return "x1dints"
        if "SCI" in hdul and hdul["SCI"].data is not None:
            nd = hdul["SCI"].data.ndim
            if nd == 4:
                return "uncal"
            if nd == 3:
                return "calints" if "WAVELENGTH" in hdul else "rateints"
            if nd == 2:
                raise WrongSubarrayError(path, "SCI is 2-D (a _rate/_cal image averaged over "
                                         "integrations); time series need rateints/calints")
        raise ProductError(path, "cannot tell the product type (no TSOPROD, known file suffix, DATAMODL, "
                           "EXTRACT1D table or 3/4-D SCI extension)")


_READERS = {"uncal": read_uncal, "rateints": read_rateints, "calints": read_calints,
            "x1dints": read_x1dints}


def read(path, **kwargs):
    """Read any supported product and return the matching container (:class:`RampData` for uncal,
    :class:`RateData` for rateints/calints, :class:`SpectraData` for x1dints); see
    :func:`product_type`.

    Parameters
    ----------
    path : str or pathlib.Path
        A FITS product.
    **kwargs
        Passed to the specific reader (e.g. ``allowed_exp_types``).

    Returns
    -------
    RampData, RateData or SpectraData
        The product.
    """
    return _READERS[product_type(path)](path, **kwargs)


_CONSISTENT_KEYS = ("EXP_TYPE", "SUBARRAY", "NGROUPS", "READPATT", "NFRAMES")


def read_segments(paths_or_glob, **kwargs):
    """Read the segments of one exposure (``-seg001``, ``-seg002``, ...) and join them in time order.

    ``paths_or_glob`` is a list of paths or a glob pattern string.  Segments are ordered by their
    INTSTART keyword (not by name) and joined with :func:`tsoreduce.datamodel.concatenate`.

    Parameters
    ----------
    paths_or_glob : str, os.PathLike or list of them
        The segment files, or a glob pattern.
    **kwargs
        Passed to the reader of each segment.

    Returns
    -------
    RampData, RateData or SpectraData
        The whole exposure.

    Raises
    ------
    ProductError
        No file matches, mixed product types, or segments that disagree in EXP_TYPE, SUBARRAY,
        NGROUPS, READPATT, NFRAMES, frame shape or overlap in integration numbers (naming the files).
    """
    if isinstance(paths_or_glob, (str, os.PathLike)):
        paths = sorted(_glob.glob(str(paths_or_glob)))
        if not paths:
            raise ProductError(paths_or_glob, "no file matches this pattern")
    else:
        paths = [str(p) for p in paths_or_glob]
        if not paths:
            raise ProductError("<segments>", "read_segments() got an empty list")
    kinds = {p: product_type(p) for p in paths}
    if len(set(kinds.values())) > 1:
        raise ProductError(paths[0], f"segments are different product types: {kinds}")
    parts = [read(p, **kwargs) for p in paths]
    order = sorted(range(len(parts)), key=lambda i: int(parts[i].meta.get("INTSTART", 1)))
    parts = [parts[i] for i in order]
    paths = [paths[i] for i in order]
    first = parts[0]
    for p, path in zip(parts[1:], paths[1:]):
        for key in _CONSISTENT_KEYS:
            if p.meta.get(key) != first.meta.get(key):
                raise ProductError(path, f"segment disagrees with {paths[0]}: {key} = "
                                   f"{p.meta.get(key)!r} vs {first.meta.get(key)!r}")
        if p.data.shape[1:] != first.data.shape[1:]:
            raise ProductError(path, f"segment shape {p.data.shape[1:]} differs from {paths[0]}'s "
                               f"{first.data.shape[1:]}")
    for (a, pa), (b, pb) in zip(zip(parts, paths), zip(parts[1:], paths[1:])):
        end_a = int(a.meta.get("INTSTART", 1)) + a.nints - 1
        if int(b.meta.get("INTSTART", 1)) <= end_a:
            raise ProductError(pb, f"segment starts at integration {b.meta.get('INTSTART')} but {pa} "
                               f"already ends at {end_a} (overlapping or duplicated segments)")
    out = concatenate(parts, release=True)  # each part's arrays freed as they are joined
    out.meta.pop("_source_path", None)
    out.meta["_source_paths"] = [str(Path(p).resolve()) for p in paths]
    return out
