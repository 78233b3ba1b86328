"""MIRI LRS slitless instrument constants and reference data.

Constants (each with its source)
--------------------------------
* ``SUBARRAY_SHAPE = (416, 72)`` -- SLITLESSPRISM subarray rows x columns, SUBSTRT1 = 1, SUBSTRT2 = 529
  (JDox "MIRI Detector Subarrays"; jwst ``subarray`` keywords of every MIR_LRS-SLITLESS product).
* ``N_REFERENCE_COLUMNS = 4`` -- columns 0-3 of SLITLESSPRISM are reference pixels (JDox, MIRI subarrays;
  the DQ REFERENCE_PIXEL flag of real rateints).
* ``PIXEL_CLOCK = 10e-6`` s, ``ROW_CLOCKS = 28``, ``FRAME_CLOCKS = 15904`` -- MIRI FAST readout clocking
  for SLITLESSPRISM, as used by the jwst ``emicorr`` step (Tframe = ny*rowclocks + (1024-ny)*(4+3) ticks).
* ``TFRAME = 0.15904`` s -- FAST frame time of SLITLESSPRISM (= FRAME_CLOCKS * PIXEL_CLOCK; the TFRAME
  keyword of MIR_LRS-SLITLESS exposures).
* ``GAIN = 3.1`` e-/DN -- in-flight MIRI gain adopted for LRS time series (Bell et al. 2023,
  arXiv:2301.06350, as used by ExoTiC-MIRI's ``SetCustomGain(gain_value=3.1)`` and Eureka! examples),
  instead of the pre-flight 5.5 e-/DN of early CRDS gain files (jwst issue #6250).  JDox "MIRI Detector
  Performance" quotes "~4 e/ADU" as a detector average; use a gain reference file
  (:func:`load_gain`) when one is available.
* ``READ_NOISE_DN = 6.0`` -- read noise in DN; JDox "MIRI Detector Performance" Table 1 ("Read noise
  (DN) ~6", flight measurement).  A default used only when no readnoise reference file is given.
* ``SATURATION_DN = 60000`` -- approximate MIRI hard saturation: JDox "MIRI Detector Performance" gives
  a full well of ~210 000 e-, i.e. ~52 000-68 000 DN for a gain of 4-3.1 e-/DN; exoTEDRF flags at 80 % of
  a 56 600 DN full well (exoTEDRF's MIRI saturation step).  The per-pixel CRDS saturation
  reference (:func:`load_saturation`) should be preferred; this default is used only without one.
* ``EMI_FREQUENCIES`` -- the MIRI EMI frequencies in Hz, with the names of the jwst ``emicorr``
  reference file (stdatamodels ``EmiModel``: Hz390, Hz218a, Hz218b, Hz218c, Hz164, Hz10) and the values
  of the jwst emicorr documentation ("The known frequencies to correct for are [Hz]: 390.625, 218.52055,
  218.520470, 218.520665, 164.9305, 10.039216").  ``Hz390`` = 390.625 Hz is exactly one period per 256
  pixel-clock ticks of 10 us; its amplitude is ~ +-4 DN (same page).

Reference data
--------------
* :func:`specwcs_table` / :func:`default_wavelength_map` / :func:`wavelength_of_row`: the bundled
  SLITLESSPRISM wavelength solutions, by default the current CRDS ``jwst_miri_specwcs_0009.fits``
  (``specwcs_0009``); the 2022 commissioning ``jwst_miri_specwcs_0006.fits`` stays selectable by name
  (``specwcs_0006``).  :func:`trace_x_center`: the nominal trace of specwcs_0006.  See
  ``tsoreduce/data/README.md``.
* :func:`pixel_read_time_offsets`: the read time of every pixel of every group and integration.

Calibration reference files (CRDS format)
-----------------------------------------
* :func:`find_reference` -- an explicit path, else the newest matching file in the local CRDS cache
  ``$CRDS_PATH/references/jwst/miri/`` (never downloads), else None.
* :func:`load_linearity`, :func:`load_dark`, :func:`load_flat`, :func:`load_gain`,
  :func:`load_readnoise`, :func:`load_saturation` -- arrays cut to the data's subarray.
"""

from __future__ import annotations

import logging
import os
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

from .errors import ReferenceFileError

log = logging.getLogger(__name__)

SUBARRAY_NAME = "SLITLESSPRISM"
SUBARRAY_SHAPE = (416, 72)
SUBSTRT1 = 1
SUBSTRT2 = 529
N_REFERENCE_COLUMNS = 4
FULL_FRAME_ROWS = 1024
#: MIRI full frame: 1024 rows x 1032 columns (4 reference columns at each side)
FULL_FRAME_SHAPE = (1024, 1032)
SUBSIZE1 = SUBARRAY_SHAPE[1]
SUBSIZE2 = SUBARRAY_SHAPE[0]

PIXEL_CLOCK = 10.0e-6  # s per tick
ROW_CLOCKS = 28
FRAME_CLOCKS = 15904
TFRAME = FRAME_CLOCKS * PIXEL_CLOCK  # 0.15904 s
#: FAST readout: one sample per pixel (SLOW reads 9)
NSAMPLES_FAST = 1

GAIN = 3.1  # e-/DN
READ_NOISE_DN = 6.0  # DN per single read (approximate default)
SATURATION_DN = 60000.0  # DN (approximate default)

EMI_FREQUENCIES = {
    "Hz390": 390.625,
    "Hz218a": 218.52055,
    "Hz218b": 218.520470,
    "Hz218c": 218.520665,
    "Hz164": 164.9305,
    "Hz10": 10.039216,
}
#: harmonics of the 390 Hz EMI seen in MIRI data (Eureka! remove390 fits f, 2f, 4f)
EMI_390_HARMONICS = (1, 2, 4)


def frame_ticks(nrows: int = SUBARRAY_SHAPE[0]) -> int:
    """Pixel-clock ticks per frame of a FAST subarray with ``nrows`` rows (ROI rows cost ROW_CLOCKS,
    the others 7 ticks).  15904 for SLITLESSPRISM."""
    return nrows * ROW_CLOCKS + (FULL_FRAME_ROWS - nrows) * 7


def pixel_read_time_offsets(nints: int, ngroups: int, *, int_offset: int = 0,
                            shape: tuple[int, int] = SUBARRAY_SHAPE, reset_frames: int = 1):
    """Read time of every pixel, split into separable parts so nothing 4-D is allocated.

    The read time (s, relative to the first read of integration 0 of the exposure) of pixel
    ``(row, col)`` in group ``g`` of integration ``i`` is::

        t = t_int[i] + t_group[g] + t_pixel[row, col]

    with, in pixel-clock ticks of 10 us (jwst ``emicorr`` clocking for FAST SLITLESSPRISM),
    ``t_pixel = row * ROW_CLOCKS + (col // 4) * NSAMPLES_FAST`` (4 amplifiers read 4 adjacent columns at
    once), ``t_group = g * Tframe`` and ``t_int = i * (ngroups + reset_frames) * Tframe`` (FASTR1 adds
    one reset frame between integrations).

    Parameters
    ----------
    nints, ngroups : int
    int_offset : int
        Index of the first integration in the exposure (INTSTART - 1 for a segment).
    shape : (nrows, ncols)
    reset_frames : int
        Frames spent resetting between integrations (1 for FASTR1).

    Returns
    -------
    t_int : ``(nints,)`` s;  t_group : ``(ngroups,)`` s;  t_pixel : ``(nrows, ncols)`` s
    """
    nrows, ncols = shape
    tframe = frame_ticks(nrows)
    i = np.arange(int_offset, int_offset + nints, dtype=np.float64)
    t_int = i * (ngroups + reset_frames) * tframe * PIXEL_CLOCK
    t_group = np.arange(ngroups, dtype=np.float64) * tframe * PIXEL_CLOCK
    rows = np.arange(nrows, dtype=np.float64)[:, None]
    quad = (np.arange(ncols) // 4).astype(np.float64)[None, :]
    t_pixel = (rows * ROW_CLOCKS + quad * NSAMPLES_FAST) * PIXEL_CLOCK
    return t_int, t_group, t_pixel


#: bundled SLITLESSPRISM wavelength tables (``tsoreduce/data``, see its README.md): name -> file
WAVELENGTH_MAPS = {
    "specwcs_0009": "slitlessprism_specwcs_0009.ecsv",
    "specwcs_0006": "slitlessprism_specwcs_0006.ecsv",
}
#: the bundled map used by default: the current CRDS solution (2024 slitless recalibration)
DEFAULT_WAVELENGTH_MAP = "specwcs_0009"
#: the CRDS reference file each bundled table reproduces (written as R_SPCWCS into products)
WAVELENGTH_MAP_CRDS = {"specwcs_0009": "jwst_miri_specwcs_0009.fits",
                       "specwcs_0006": "jwst_miri_specwcs_0006.fits"}


def _map_name(name):
    return DEFAULT_WAVELENGTH_MAP if name is None else str(name)


@lru_cache(maxsize=8)
def specwcs_table(name: str | None = None):
    """A SLITLESSPRISM wavelength solution as an astropy Table.

    Parameters
    ----------
    name : ``"specwcs_0009"`` (default, :data:`DEFAULT_WAVELENGTH_MAP`), ``"specwcs_0006"``, or the
        path of an ECSV file with the same columns.

    Columns: ``row`` (0-based subarray row, 7-394), ``x_center`` (0-based subarray column of the trace
    centre, pix), ``wavelength`` (um, decreasing with row).  ``specwcs_0009``: the WAVELENGTH extension
    that jwst 2.0.1 wrote with CRDS ``jwst_miri_specwcs_0009.fits`` (context jwst_1535; the 2024 slitless
    wavelength recalibration of CRDS jwst_1293), sampled at the trace; ``specwcs_0006``: the 2022
    commissioning file's WAVETABLE, ``row = IMYSLTL + Y_CENTER - 1 - 528`` and
    ``x_center = IMXSLTL + X_CENTER - 1`` with IMYSLTL = 829.0 and IMXSLTL = 38.5.  Both use the 0006
    trace centre (the WAVELENGTH extension carries none).  Derivations: ``tsoreduce/data/README.md``.

    Raises
    ------
    ReferenceFileError
        unknown name / unreadable file / missing columns.
    """
    from astropy.table import Table

    name = _map_name(name)
    if name in WAVELENGTH_MAPS:
        path = resources.files("tsoreduce") / "data" / WAVELENGTH_MAPS[name]
        with resources.as_file(path) as p:
            return Table.read(p, format="ascii.ecsv")
    p = Path(name)
    if not p.is_file():
        raise ReferenceFileError(f"wavelength map {name!r}: neither a bundled map "
                                 f"({', '.join(WAVELENGTH_MAPS)}) nor an existing ECSV file")
    try:
        t = Table.read(p, format="ascii.ecsv")
    except (OSError, ValueError) as exc:
        raise ReferenceFileError(f"{p}: not a readable ECSV wavelength table ({exc})") from exc
    missing = {"row", "x_center", "wavelength"} - set(t.colnames)
    if missing:
        raise ReferenceFileError(f"{p}: wavelength table lacks columns {sorted(missing)}")
    return t


def wavelength_map_label(name: str | None = None) -> str:
    """The name written into products (R_SPCWCS) for a bundled map or a table file: the CRDS file it
    reproduces (``jwst_miri_specwcs_0009.fits``) or the table's file name."""
    name = _map_name(name)
    return WAVELENGTH_MAP_CRDS.get(name, Path(name).name)


def wavelength_of_row(rows, name: str | None = None) -> np.ndarray:
    """Wavelength (um) at (fractional, 0-based) subarray ``rows`` from the map ``name`` (default
    :data:`DEFAULT_WAVELENGTH_MAP`), linear between table rows; NaN outside the table (rows 7-394),
    never the edge value repeated."""
    t = specwcs_table(_map_name(name))
    r = np.asarray(t["row"], float)
    w = np.asarray(t["wavelength"], float)
    rows = np.asarray(rows, float)
    out = np.interp(rows, r, w)
    out = np.where((rows < r[0]) | (rows > r[-1]), np.nan, out)
    return out


def trace_x_center(rows) -> np.ndarray:
    """Nominal trace-centre column (0-based subarray pixels) at ``rows`` from specwcs_0006 (the only
    bundled source of a trace position); rows outside 7-394 are extrapolated linearly from the nearest end."""
    t = specwcs_table("specwcs_0006")
    r = np.asarray(t["row"], float)
    x = np.asarray(t["x_center"], float)
    rows = np.asarray(rows, float)
    # the trace is curved: extrapolate each end with a line through its own last 20 rows
    lo, hi = np.polyfit(r[:20], x[:20], 1), np.polyfit(r[-20:], x[-20:], 1)
    out = np.interp(rows, r, x)
    out = np.where(rows < r[0], np.polyval(lo, rows), out)
    return np.where(rows > r[-1], np.polyval(hi, rows), out)


def default_wavelength_map(shape: tuple[int, int] = SUBARRAY_SHAPE, name: str | None = None) -> np.ndarray:
    """Wavelength map of SLITLESSPRISM from the bundled map ``name`` (default
    :data:`DEFAULT_WAVELENGTH_MAP`), float32 ``(416, 72)`` in um, constant along each row (as the jwst
    pipeline's WAVELENGTH extension), NaN in rows without a solution."""
    nrows, ncols = shape
    w = wavelength_of_row(np.arange(nrows), name)
    return np.repeat(w[:, None], ncols, axis=1).astype(np.float32)


# ------------------------------------------------------------------------------ reference files
#: the data extension of each reference type (CRDS / jwst reference-file formats)
_REF_EXT = {"LINEARITY": "COEFFS", "DARK": "SCI", "FLAT": "SCI", "GAIN": "SCI", "READNOISE": "SCI",
            "SATURATION": "SCI"}
_REF_NDIM = {"LINEARITY": (3,), "DARK": (3, 4), "FLAT": (2,), "GAIN": (2,), "READNOISE": (2,),
             "SATURATION": (2,)}
#: CRDS selection keywords compared with the data's meta (value, or CRDS pattern keyword P_*)
_MATCH_KEYS = (("DETECTOR", "P_DETECT"), ("EXP_TYPE", "P_EXP_TY"), ("READPATT", "P_READPA"),
               ("SUBARRAY", "P_SUBARR"))
_WILDCARDS = {"", "ANY", "N/A", "GENERIC", "ALL"}


def _window(header_or_meta, shape=None):
    """(substrt1, substrt2, subsize1, subsize2), 1-based FITS conventions, of a file or of the data.

    From SUBSTRT1/2 and SUBSIZE1/2 when present; else full frame when ``shape`` is 1024 x 1032 or
    SUBARRAY is FULL; else SLITLESSPRISM when SUBARRAY says so (or, for data, when nothing is said).
    Returns None when undecidable.
    """
    h = header_or_meta
    keys = ("SUBSTRT1", "SUBSTRT2", "SUBSIZE1", "SUBSIZE2")
    if all(h.get(k) is not None for k in keys):
        return tuple(int(h[k]) for k in keys)
    sub = str(h.get("SUBARRAY", "") or "").strip().upper()
    if (shape is not None and tuple(shape[-2:]) == FULL_FRAME_SHAPE) or sub == "FULL":
        return (1, 1, FULL_FRAME_SHAPE[1], FULL_FRAME_SHAPE[0])
    if sub == SUBARRAY_NAME or (shape is None and sub == ""):
        return (SUBSTRT1, SUBSTRT2, SUBSIZE1, SUBSIZE2)
    return None


def _covers(ref_win, data_win) -> bool:
    r1, r2, rs1, rs2 = ref_win
    d1, d2, ds1, ds2 = data_win
    return r1 <= d1 and r2 <= d2 and d1 + ds1 <= r1 + rs1 and d2 + ds2 <= r2 + rs2


def _pattern_ok(header, key, pkey, value) -> bool:
    if value is None:
        return True
    want = str(value).strip().upper()
    for k in (pkey, key):
        if k in header:
            allowed = {v.strip().upper() for v in str(header[k]).split("|")} - {""}
            if not allowed or allowed & _WILDCARDS:
                return True
            return want in allowed
    return True


def _compatible(header, meta, path) -> bool:
    if str(header.get("INSTRUME", "MIRI")).strip().upper() != "MIRI":
        return False
    for key, pkey in _MATCH_KEYS:
        if key == "SUBARRAY":
            continue
        if not _pattern_ok(header, key, pkey, meta.get(key)):
            return False
    data_win = _window(meta)
    ref_win = _window(header)
    if data_win is not None and ref_win is not None:
        return _covers(ref_win, data_win)
    return _pattern_ok(header, "SUBARRAY", "P_SUBARR", meta.get("SUBARRAY"))


def crds_cache_dir() -> Path | None:
    """``$CRDS_PATH/references/jwst/miri`` if CRDS_PATH is set and that folder exists, else None."""
    root = os.environ.get("CRDS_PATH")
    if not root:
        return None
    d = Path(root) / "references" / "jwst" / "miri"
    return d if d.is_dir() else None


def find_reference(reftype: str, path=None, meta: dict | None = None) -> Path | None:
    """Locate a CRDS-format MIRI reference file of type ``reftype`` (e.g. ``"linearity"``).

    1. ``path`` given: that file, after checking it exists and that its primary REFTYPE is ``reftype``.
    2. Else the local CRDS cache ``$CRDS_PATH/references/jwst/miri/*.fits``: files whose primary
       REFTYPE matches, whose INSTRUME is MIRI, and -- when ``meta`` (the data's header keywords) is
       given -- whose DETECTOR / EXP_TYPE / READPATT (or CRDS P_* pattern keywords, ``A|B|``) accept the
       data and whose SUBSTRT/SUBSIZE window covers the data's subarray (FULL covers every subarray).
       Among those the newest by file name wins (``jwst_miri_linearity_0032`` over ``_0024``).
    3. Else None (logged).  Nothing is ever downloaded.

    Raises :class:`~tsoreduce.errors.ReferenceFileError` when an explicit ``path`` is missing,
    unreadable or of another REFTYPE.
    """
    from astropy.io import fits

    want = str(reftype).strip().upper()
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ReferenceFileError(f"{path}: {want.lower()} reference file does not exist")
        try:
            header = fits.getheader(path, 0)
        except (OSError, ValueError) as exc:
            raise ReferenceFileError(f"{path}: not a readable FITS reference file ({exc})") from exc
        got = str(header.get("REFTYPE", "")).strip().upper()
        if got != want:
            raise ReferenceFileError(f"{path}: REFTYPE is {got or 'missing'!r}, expected {want!r}")
        return path
    cache = crds_cache_dir()
    if cache is None:
        log.info("find_reference(%s): no explicit file and no CRDS cache (CRDS_PATH unset or without "
                 "references/jwst/miri); using defaults", want.lower())
        return None
    meta = dict(meta or {})
    for cand in sorted(cache.glob("*.fits"), key=lambda p: p.name, reverse=True):
        try:
            header = fits.getheader(cand, 0)
        except (OSError, ValueError):
            log.warning("find_reference: skipping unreadable file %s", cand)
            continue
        if str(header.get("REFTYPE", "")).strip().upper() != want:
            continue
        if _compatible(header, meta, cand):
            log.info("find_reference(%s): using %s from the CRDS cache", want.lower(), cand)
            return cand
    log.info("find_reference(%s): no compatible file in %s", want.lower(), cache)
    return None


def _load(path, reftype: str, subarray_meta, with_dq: bool, dtype=np.float32):
    """Read a CRDS-format reference file and cut its arrays to the data's subarray window."""
    from astropy.io import fits

    path = Path(path)
    if not path.is_file():
        raise ReferenceFileError(f"{path}: {reftype.lower()} reference file does not exist")
    from .errors import ProductError
    from .io.fits_products import _open

    try:
        hdul = _open(path, what=f"{reftype.lower()} reference")  # also catches truncated files
    except ProductError as exc:
        raise ReferenceFileError(str(exc)) from exc
    with hdul:
        header = hdul[0].header
        got = str(header.get("REFTYPE", "")).strip().upper()
        if got != reftype:
            raise ReferenceFileError(f"{path}: REFTYPE is {got or 'missing'!r}, expected {reftype!r}")
        inst = str(header.get("INSTRUME", "MIRI")).strip().upper()
        if inst != "MIRI":
            raise ReferenceFileError(f"{path}: INSTRUME is {inst!r}, expected 'MIRI'")
        ext = _REF_EXT[reftype]
        if ext not in hdul or hdul[ext].data is None:
            raise ReferenceFileError(f"{path}: malformed {reftype.lower()} reference, extension {ext} "
                                     "is missing or empty")
        try:
            data = np.array(hdul[ext].data, dtype=dtype)
        except (OSError, ValueError, TypeError) as exc:  # truncated data
            raise ReferenceFileError(f"{path}: cannot read {ext} ({exc})") from exc
        if data.ndim not in _REF_NDIM[reftype]:
            raise ReferenceFileError(f"{path}: malformed {reftype.lower()} reference, {ext} has shape "
                                     f"{data.shape}, expected {_REF_NDIM[reftype]}-D")
        dq = None
        if "DQ" in hdul and hdul["DQ"].data is not None:
            dq = np.array(hdul["DQ"].data, dtype=np.int64)
            dq = (dq % (1 << 32)).astype(np.uint32)
            if dq.shape[-2:] != data.shape[-2:]:
                raise ReferenceFileError(f"{path}: DQ shape {dq.shape} does not match {ext} {data.shape}")
            if dq.ndim > 2:
                # MIRI darks carry DQ (nints, 1, rows, cols): a pixel flag in any plane flags the pixel
                # (what jwst's dark_current does, OR-ing dq[i, 0] over integrations)
                dq = np.bitwise_or.reduce(dq.reshape((-1,) + dq.shape[-2:]), axis=0)
        merged = dict(header)
        merged.update({k: hdul[ext].header[k] for k in ("SUBSTRT1", "SUBSTRT2", "SUBSIZE1", "SUBSIZE2")
                       if k in hdul[ext].header and k not in header})
    ref_win = _window(merged, data.shape)
    if ref_win is None:
        raise ReferenceFileError(f"{path}: cannot place the reference on the detector (no SUBSTRT1/2, "
                                 f"SUBSIZE1/2; SUBARRAY = {header.get('SUBARRAY')!r}; shape {data.shape})")
    if (ref_win[3], ref_win[2]) != data.shape[-2:]:
        raise ReferenceFileError(f"{path}: malformed reference, SUBSIZE2 x SUBSIZE1 = {ref_win[3]} x "
                                 f"{ref_win[2]} but {ext} frames are {data.shape[-2]} x {data.shape[-1]}")
    data_win = _window(dict(subarray_meta or {}))
    if data_win is None:
        raise ReferenceFileError(f"{path}: the data's subarray {dict(subarray_meta or {}).get('SUBARRAY')!r} "
                                 "has no SUBSTRT1/2, SUBSIZE1/2 keywords to place it")
    if not _covers(ref_win, data_win):
        raise ReferenceFileError(
            f"{path}: reference window (SUBSTRT1={ref_win[0]}, SUBSTRT2={ref_win[1]}, SUBSIZE1={ref_win[2]}, "
            f"SUBSIZE2={ref_win[3]}) does not cover the data's (SUBSTRT1={data_win[0]}, "
            f"SUBSTRT2={data_win[1]}, SUBSIZE1={data_win[2]}, SUBSIZE2={data_win[3]})")
    # both windows are 1-based (FITS): the data's first pixel sits at these 0-based offsets in the file
    x0, y0 = data_win[0] - ref_win[0], data_win[1] - ref_win[1]
    cut = (Ellipsis, slice(y0, y0 + data_win[3]), slice(x0, x0 + data_win[2]))
    out = np.ascontiguousarray(data[cut])
    log.info("loaded %s reference %s: %s cut to %s", reftype.lower(), path.name, data.shape, out.shape)
    if with_dq:
        dq_out = np.ascontiguousarray(dq[cut]) if dq is not None else np.zeros(out.shape[-2:], np.uint32)
        return out, dq_out
    return out


_LOADER_DOC = """Load a CRDS-format MIRI {what} reference file cut to the data's subarray.

    Parameters
    ----------
    path : str or Path
    subarray_meta : dict, optional
        The data's header keywords (SUBSTRT1, SUBSTRT2, SUBSIZE1, SUBSIZE2 or SUBARRAY); default
        SLITLESSPRISM (SUBSTRT1 = 1, SUBSTRT2 = 529, 72 x 416).  The file's own window comes from its
        SUBSTRT/SUBSIZE keywords (1-based FITS pixels) or, for a 1024 x 1032 array, full frame.
    with_dq : bool
        Also return the file's DQ extension cut the same way (zeros when absent), uint32.

    Returns
    -------
    {returns}

    Raises
    ------
    ReferenceFileError
        missing / unreadable file, REFTYPE not {reftype}, INSTRUME not MIRI, missing {ext} extension or
        wrong dimensionality, SUBSIZE inconsistent with the array, or a window that does not cover the
        data's subarray.
    """


def load_linearity(path, subarray_meta=None, *, with_dq: bool = False):
    return _load(path, "LINEARITY", subarray_meta, with_dq, np.float64)


def load_dark(path, subarray_meta=None, *, with_dq: bool = False):
    return _load(path, "DARK", subarray_meta, with_dq)


def load_flat(path, subarray_meta=None, *, with_dq: bool = False):
    return _load(path, "FLAT", subarray_meta, with_dq)


def load_gain(path, subarray_meta=None, *, with_dq: bool = False):
    return _load(path, "GAIN", subarray_meta, with_dq)


def load_readnoise(path, subarray_meta=None, *, with_dq: bool = False):
    return _load(path, "READNOISE", subarray_meta, with_dq)


def load_saturation(path, subarray_meta=None, *, with_dq: bool = False):
    return _load(path, "SATURATION", subarray_meta, with_dq)


load_linearity.__doc__ = _LOADER_DOC.format(
    what="linearity", reftype="LINEARITY", ext="COEFFS",
    returns="coeffs : float64 ``(ncoeffs, nrows, ncols)``; the correction is "
            "``corrected = sum_k coeffs[k] * raw**k`` (DN), as in the jwst ``linearity`` step.")
load_dark.__doc__ = _LOADER_DOC.format(
    what="dark", reftype="DARK", ext="SCI",
    returns="dark : float32 ``(ngroups, nrows, ncols)`` or ``(nints, ngroups, nrows, ncols)`` (MIRI darks "
            "have one cube per integration), DN, to subtract group by group.")
load_flat.__doc__ = _LOADER_DOC.format(
    what="flat-field", reftype="FLAT", ext="SCI", returns="flat : float32 ``(nrows, ncols)``, normalised.")
load_gain.__doc__ = _LOADER_DOC.format(
    what="gain", reftype="GAIN", ext="SCI", returns="gain : float32 ``(nrows, ncols)``, e-/DN.")
load_readnoise.__doc__ = _LOADER_DOC.format(
    what="read-noise", reftype="READNOISE", ext="SCI",
    returns="read noise : float32 ``(nrows, ncols)``, DN (as in the CRDS MIRI readnoise files).")
load_saturation.__doc__ = _LOADER_DOC.format(
    what="saturation", reftype="SATURATION", ext="SCI",
    returns="saturation threshold : float32 ``(nrows, ncols)``, DN.")
