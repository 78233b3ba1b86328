"""Calibration reference files in CRDS format: found in the local CRDS cache or given by path, never
required and never downloaded.

* :func:`find_reference` -- an explicit path, else the newest matching file in the local CRDS cache
  ``$CRDS_PATH/references/jwst/miri/`` (never downloads), else None.
* :func:`load_linearity`, :func:`load_dark`, :func:`load_flat`, :func:`load_gain`,
  :func:`load_readnoise`, :func:`load_saturation` -- arrays cut to the data's subarray.

File formats: JWST pipeline documentation, reference files of ``linearity``, ``dark_current``,
``flat_field``, ``gain``, ``readnoise``, ``saturation`` (``docs/sources.md``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from ..errors import ProductError, ReferenceFileError
from ..instrument import FULL_FRAME_SHAPE, SUBARRAY_NAME, SUBSIZE1, SUBSIZE2, SUBSTRT1, SUBSTRT2
from ..io._fitsfile import open_checked

__all__ = ["crds_cache_dir", "find_reference", "load_linearity", "load_dark", "load_flat", "load_gain",
           "load_readnoise", "load_saturation"]

log = logging.getLogger(__name__)

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
    """The local CRDS cache of MIRI reference files, if there is one.

    Returns
    -------
    pathlib.Path or None
        ``$CRDS_PATH/references/jwst/miri`` if CRDS_PATH is set and that folder exists, else None.
    """
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

    Selection rules: CRDS rmap matching on DETECTOR, EXP_TYPE, READPATT and SUBARRAY (JWST pipeline
    documentation, "Reference Files, Parameter Files and Environment Variables").

    Parameters
    ----------
    reftype : str
        The CRDS reference type, e.g. ``"linearity"``, ``"dark"`` (case-insensitive).
    path : str or pathlib.Path, optional
        An explicit file; it must exist and be of ``reftype``.
    meta : dict, optional
        The data's header keywords, to select a compatible file from the cache.

    Returns
    -------
    pathlib.Path or None
        The file to use, or None when there is none (defaults are then used, logged by the caller).

    Raises
    ------
    ReferenceFileError
        An explicit ``path`` is missing, unreadable or of another REFTYPE.
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
    try:
        hdul = open_checked(path, what=f"{reftype.lower()} reference")  # also catches truncated files
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
