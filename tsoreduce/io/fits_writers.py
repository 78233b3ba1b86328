"""Writers of JWST-format products: uncal, rateints, calints, x1dints.

The layouts, header-keyword rules and provenance conventions are described in
:mod:`tsoreduce.io.fits_products` (which re-exports these writers).  Every writer is atomic
(:func:`tsoreduce._util.atomic_write`: temporary file in the target directory, then ``os.replace``)
and refuses to overwrite an existing file unless ``overwrite=True``, and the product's own source
file always.

Sources: JWST pipeline documentation, "Science Products" / "Data Product Types"; stdatamodels
schemas (``core``, ``ramp``, ``cube``, ``tso_spectable``) and ASDF-in-FITS (``docs/sources.md``).
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import numpy as np
from astropy.io import fits

from .._util import atomic_write
from ..datamodel import RampData, RateData, SpectraData
from ..errors import OverwriteError, ProductError
from ..instrument import SUBARRAY_NAME, TFRAME
from ._jwst_layout import SCI_KEYWORDS, TSO_SPECTABLE, asdf_hdu
from .int_times import int_times_hdu

__all__ = ["write_uncal", "write_rateints", "write_calints", "write_x1dints", "PRODUCT_KEYWORD",
           "PROVENANCE_KEYWORDS", "GROUPDQ_HIGH"]

log = logging.getLogger(__name__)

#: our product-type keyword (primary header); read() also uses DATAMODL, the file name and HDUs
PRODUCT_KEYWORD = "TSOPROD"
# uncal: our SCI is float32 with GROUPDQ/PIXELDQ, i.e. a RampModel (a Level1bModel has uint16 SCI and no
# DQ arrays: stdatamodels would cast and drop them); x1dints: jwst >= 1.17's one-table layout
_DATAMODL = {"uncal": "RampModel", "rateints": "CubeModel", "calints": "CubeModel",
             "x1dints": "TSOMultiSpecModel"}
#: provenance entries also written as 8-character primary keywords (all of them go to the ASDF tree)
PROVENANCE_KEYWORDS = {"software": "TSOSOFT", "stage": "TSOSTAGE", "config_hash": "TSOCFGH",
                       "run_config": "TSORUNCF", "simulator": "TSOSIM", "seed": "TSOSEED"}
#: readout keywords of MIRI SLITLESSPRISM (FASTR1) that jwst reads (emicorr, dark, jump): flight values
_MIRI_READOUT_DEFAULTS = {"NSAMPLES": 1, "GROUPGAP": 0, "DRPFRMS1": 0, "DRPFRMS3": 0, "NRSTSTRT": 0,
                          "NRESETS": 1}
#: bits above GROUPDQ's byte (not JWST group flags) are kept in this extension, OR-ed back on reading
GROUPDQ_HIGH = "GDQ_HIGH"
_DEFAULT_META = {"TELESCOP": "JWST", "INSTRUME": "MIRI", "DETECTOR": "MIRIMAGE",
                 "EXP_TYPE": "MIR_LRS-SLITLESS", "SUBARRAY": SUBARRAY_NAME}


def _header_value(value):
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    if isinstance(value, str):
        # FITS headers hold printable ASCII only: escape the rest (e.g. "µm" in config comments)
        value = value.replace("\t", " ").encode("ascii", "backslashreplace").decode("ascii")
        return "".join(c if 32 <= ord(c) < 127 or c == "\n" else " " for c in value)
    return None


def _is_standard_keyword(key: str) -> bool:
    """A FITS standard keyword: <= 8 characters of A-Z, 0-9, '-' and '_' (no HIERARCH needed)."""
    return 0 < len(key) <= 8 and all(c.isdigit() or ("A" <= c <= "Z") or c in "-_" for c in key)


def _set_key(header, key, value, *, quiet=False) -> bool:
    """Set one standard keyword; False when it cannot be a FITS card without HIERARCH (then the caller
    keeps it in the ASDF tree) or the value is not a header value."""
    v = _header_value(value)
    if v is None:
        log.debug("meta[%r] of type %s is not a header value; not written", key, type(value).__name__)
        return False
    if isinstance(v, float) and not np.isfinite(v):
        return False
    if not _is_standard_keyword(key):
        return False
    if isinstance(v, str):
        v = v.replace("\n", " ")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", fits.verify.VerifyWarning)  # e.g. a too-long string card
            card = fits.Card(key, v)
            card.image  # noqa: B018 -- formats (and validates) the card now
            if card.keyword in header:
                header[card.keyword] = v  # e.g. 'ngroups' and 'NGROUPS' in meta: the last one wins
            else:
                header.append(card)
    except (ValueError, fits.verify.VerifyError, fits.verify.VerifyWarning) as exc:
        if not quiet:
            log.warning("meta[%r] cannot be written as a FITS keyword (%s); kept in the ASDF tree", key, exc)
        return False
    return True


def _yaml_value(value):
    """A value the ASDF tree can hold (str / int / float / bool / list of those), or None."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(x, (str, bool, int, float)) for x in value):
        return list(value)
    return None


def _headers(product, kind: str, provenance: dict | None, units: str | None, path):
    """Primary and SCI headers, and the ``tsoreduce`` node of the ASDF tree (provenance, and the meta
    keys that are not standard 8-character keywords: never written as HIERARCH cards)."""
    primary = fits.Header()
    sci = fits.Header()
    meta = {k: v for k, v in product.meta.items() if not str(k).startswith("_")}
    for k, v in _DEFAULT_META.items():
        meta.setdefault(k, v)
    nints = product.nints
    meta.setdefault("NINTS", nints)
    meta.setdefault("INTSTART", 1)
    meta.setdefault("INTEND", int(meta["INTSTART"]) + nints - 1)
    meta.setdefault("NFRAMES", 1)
    meta.setdefault("EXSEGNUM", 1)
    meta.setdefault("EXSEGTOT", 1)
    if str(meta.get("SUBARRAY")).strip() == SUBARRAY_NAME:
        # the only science readout of SLITLESSPRISM: FASTR1, one frame per group (JDox); the readout
        # keywords jwst's emicorr / dark / jump steps read, with their flight values
        meta.setdefault("READPATT", "FASTR1")
        meta.setdefault("TFRAME", TFRAME)
        meta.setdefault("TGROUP", float(meta["TFRAME"]) * int(meta["NFRAMES"]))
        meta.setdefault("FRMDIVSR", int(meta["NFRAMES"]))
        for k, v in _MIRI_READOUT_DEFAULTS.items():
            meta.setdefault(k, v)
    if kind in ("rateints", "calints") and str(meta.get("EXP_TYPE")).strip() == "MIR_LRS-SLITLESS":
        meta.setdefault("DISPAXIS", 2)  # LRS disperses along rows (detector y): jwst wcsinfo convention
    if kind == "uncal":
        meta["NGROUPS"] = product.ngroups  # the header must describe the SCI cube actually written
    meta[PRODUCT_KEYWORD] = kind
    meta["FILENAME"] = Path(path).name
    meta["DATAMODL"] = _DATAMODL[kind]
    if units is not None:
        meta["BUNIT"] = units
    extra = {}
    for k, v in meta.items():
        key = str(k).upper()
        if _set_key(sci if key in SCI_KEYWORDS else primary, key, v, quiet=not _is_standard_keyword(key)):
            continue
        y = _yaml_value(v)
        if y is not None:
            extra[str(k)] = y
    if extra:
        log.debug("%s: meta keys kept in the ASDF tree (not 8-character FITS keywords): %s",
                  path, sorted(extra))
    tso = {"meta": extra}
    if provenance:
        from .. import __version__
        primary["TSOVER"] = (__version__, "tsoreduce version that wrote this file")
        prov = {}
        for k, v in provenance.items():
            y = _yaml_value(v)
            prov[str(k)] = y if y is not None else str(v)
            v1 = _header_value(v)
            key = PROVENANCE_KEYWORDS.get(str(k).lower())
            if isinstance(v1, str) and "\n" in v1:
                for line in v1.splitlines() or [""]:
                    primary.add_history(f"{k}: {line}")
            elif key is None or v1 is None or not _set_key(primary, key, v1, quiet=True):
                primary.add_history(f"{k}: {v1 if v1 is not None else _header_value(repr(v))}")
        tso["provenance"] = prov
    return primary, sci, tso


def _finish(hdus: list, primary, sci, tso: dict) -> fits.HDUList:
    """Append the ASDF extension (jwst's metadata tree + our ``tsoreduce`` node) and build the list."""
    hdus.append(asdf_hdu(primary, sci, tsoreduce=tso))
    return fits.HDUList(hdus)


def _check_target(path, product, overwrite):
    path = Path(path)
    sources = list(product.meta.get("_source_paths", []))
    if product.meta.get("_source_path") is not None:
        sources.append(product.meta["_source_path"])
    for src in sources:
        if path.exists() and os.path.exists(src) and os.path.samefile(path, src):
            raise OverwriteError(f"{path}: refusing to overwrite the file this product was read from")
    if path.exists() and not overwrite:
        raise OverwriteError(f"{path}: file exists; pass overwrite=True to replace it")
    if not path.parent.is_dir():
        raise ProductError(path, f"output directory {path.parent} does not exist")


def _atomic_write(hdul: fits.HDUList, path) -> Path:
    path = Path(path)
    atomic_write(path, lambda tmp: hdul.writeto(tmp, overwrite=True, output_verify="exception"))
    log.info("wrote %s", path)
    return path


def _image_hdu(name, data, header=None):
    return fits.ImageHDU(np.ascontiguousarray(data), header=header, name=name)


def write_uncal(path, ramp: RampData, *, overwrite: bool = False, provenance: dict | None = None) -> Path:
    """Write a :class:`RampData` as a JWST ``_uncal``-layout FITS file that jwst opens as a RampModel.

    SCI float32 ``(nints, ngroups, rows, cols)`` DN; PIXELDQ uint32 ``(rows, cols)``; GROUPDQ uint8
    (JWST group flags use one byte); ERR float32 if ``ramp.err`` is not None; INT_TIMES; ASDF.
    DATAMODL = RampModel, the jwst model of a float32 ramp with DQ arrays (a Level1bModel has uint16
    SCI and no DQ: jwst would cast our values and drop the flags).  Flags above 255 in ``groupdq`` are
    not JWST group flags: they go to a uint32 ``GDQ_HIGH`` extension (logged at WARNING with a count)
    that :func:`read_uncal` ORs back, so nothing is truncated for either reader.  NGROUPS in the
    header is set to the SCI cube's group count.

    Parameters
    ----------
    path : str or pathlib.Path
        Destination file (its directory must exist).
    ramp : RampData
        The ramps, ``(nints, ngroups, rows, cols)`` DN.
    overwrite : bool
        Replace an existing file (never the file the product was read from).
    provenance : dict, optional
        Software, stage, config hash, run config, simulator, seed ...: written to the ASDF tree and
        as the TSO* keywords.

    Returns
    -------
    pathlib.Path
        The file written (atomically).

    Raises
    ------
    OverwriteError
        The file exists and ``overwrite`` is False, or it is the product's own source file.
    ProductError
        The output directory does not exist.
    """
    _check_target(path, ramp, overwrite)
    primary, sci, tso = _headers(ramp, "uncal", provenance, "DN", path)
    gdq = ramp.groupdq
    high = None
    if gdq.max(initial=0) > 255:
        high = gdq & np.uint32(0xFFFFFF00)
        log.warning("%s: %d group DQ values carry flags above bit 7 (not JWST group flags); they are "
                    "written to the %s extension, GROUPDQ keeps the low byte", path,
                    int(np.count_nonzero(high)), GROUPDQ_HIGH)
        primary["GDQHIGH"] = (int(np.count_nonzero(high)), f"group DQ values with bits > 7 in {GROUPDQ_HIGH}")
    hdus = [fits.PrimaryHDU(header=primary), _image_hdu("SCI", ramp.data.astype(np.float32, copy=False), sci),
            _image_hdu("PIXELDQ", ramp.pixeldq), _image_hdu("GROUPDQ", (gdq & 0xFF).astype(np.uint8))]
    if ramp.err is not None:
        hdus.append(_image_hdu("ERR", ramp.err))
    if high is not None:
        hdus.append(_image_hdu(GROUPDQ_HIGH, high))
    hdus.append(int_times_hdu(ramp.int_times))
    return _atomic_write(_finish(hdus, primary, sci, tso), path)


def _write_rate(path, rate: RateData, kind, overwrite, provenance):
    _check_target(path, rate, overwrite)
    primary, sci, tso = _headers(rate, kind, provenance, rate.units, path)
    hdus = [fits.PrimaryHDU(header=primary), _image_hdu("SCI", rate.data, sci),
            _image_hdu("ERR", rate.err), _image_hdu("DQ", rate.dq)]
    for name, arr in (("VAR_POISSON", rate.var_poisson), ("VAR_RNOISE", rate.var_rnoise)):
        if arr is not None:
            hdus.append(_image_hdu(name, arr))
    hdus.append(int_times_hdu(rate.int_times))
    if rate.wavelength is not None:
        hdus.append(_image_hdu("WAVELENGTH", rate.wavelength))
    return _atomic_write(_finish(hdus, primary, sci, tso), path)


def write_rateints(path, rate: RateData, *, overwrite: bool = False, provenance: dict | None = None) -> Path:
    """Write a :class:`RateData` as a JWST ``_rateints`` file (jwst CubeModel): SCI, ERR (float32), DQ
    (uint32) ``(nints, rows, cols)``, VAR_POISSON / VAR_RNOISE when present, INT_TIMES, WAVELENGTH when
    present, ASDF.  BUNIT of SCI = ``rate.units``; DISPAXIS = 2 in SCI for LRS slitless.

    Parameters
    ----------
    path : str or pathlib.Path
        Destination file (its directory must exist).
    rate : RateData
        The rates, ``(nints, rows, cols)``.
    overwrite : bool
        Replace an existing file (never the file the product was read from).
    provenance : dict, optional
        Software, stage, config hash, run config, simulator, seed ...: written to the ASDF tree and
        as the TSO* keywords.

    Returns
    -------
    pathlib.Path
        The file written (atomically).

    Raises
    ------
    OverwriteError
        The file exists and ``overwrite`` is False, or it is the product's own source file.
    ProductError
        The output directory does not exist.
    """
    return _write_rate(path, rate, "rateints", overwrite, provenance)


def write_calints(path, rate: RateData, *, overwrite: bool = False, provenance: dict | None = None) -> Path:
    """Write a :class:`RateData` as a JWST ``_calints`` file (rateints layout plus the WAVELENGTH
    ``(rows, cols)`` um extension when ``rate.wavelength`` is set).

    Parameters
    ----------
    path : str or pathlib.Path
        Destination file (its directory must exist).
    rate : RateData
        The calibrated images, ``(nints, rows, cols)``.
    overwrite : bool
        Replace an existing file (never the file the product was read from).
    provenance : dict, optional
        Software, stage, config hash, run config, simulator, seed ...: written to the ASDF tree and
        as the TSO* keywords.

    Returns
    -------
    pathlib.Path
        The file written (atomically).

    Raises
    ------
    OverwriteError
        The file exists and ``overwrite`` is False, or it is the product's own source file.
    ProductError
        The output directory does not exist.
    """
    return _write_rate(path, rate, "calints", overwrite, provenance)


def _tso_spectable(spec: SpectraData) -> fits.BinTableHDU:
    """jwst's ``tso_spectable`` EXTRACT1D: one row per integration, columns in schema order and dtype."""
    n, nw = spec.data.shape
    wave = np.full(nw, np.nan) if spec.wavelength is None else spec.wavelength
    wave = np.broadcast_to(wave, (n, nw))
    t = spec.int_times
    intstart = int(spec.meta.get("INTSTART", 1) or 1)
    values = {
        "INT_NUM": t.integration_number if t is not None else np.arange(intstart, intstart + n),
        "WAVELENGTH": wave, "FLUX": spec.data, "FLUX_ERROR": spec.err, "DQ": spec.dq,
        "N_ALONGDISP": np.full(n, nw), "SEGMENT": np.full(n, int(spec.meta.get("EXSEGNUM", 1) or 1)),
    }
    if t is not None:
        values.update({"MJD-BEG": t.start_mjd_utc, "MJD-AVG": t.mid_mjd_utc, "MJD-END": t.end_mjd_utc,
                       "TDB-BEG": t.start_bjd_tdb, "TDB-MID": t.mid_bjd_tdb, "TDB-END": t.end_bjd_tdb})
    units = {"WAVELENGTH": "um", "FLUX": spec.units, "FLUX_ERROR": spec.units}
    cols = []
    for name, dtype, vector in TSO_SPECTABLE:
        shape = (n, nw) if vector else (n,)
        arr = np.asarray(values[name]) if name in values else np.full(shape, np.nan)
        arr = np.ascontiguousarray(np.broadcast_to(arr, shape), dtype)
        code = {"f8": "D", "i4": "J", "u4": "J"}[dtype]
        cols.append(fits.Column(name=name, format=f"{nw}{code}" if vector else code,
                                unit=units.get(name, "d" if name[:4] in ("MJD-", "TDB-") else None),
                                bzero=2147483648 if dtype == "u4" else None, array=arr,
                                dim=f"({nw})" if vector else None))
    hdu = fits.BinTableHDU.from_columns(cols, name="EXTRACT1D")
    hdu.header["EXTVER"] = 1
    if str(spec.meta.get("EXP_TYPE", "MIR_LRS-SLITLESS")).strip() == "MIR_LRS-SLITLESS":
        hdu.header["DISPAXIS"] = (2, "dispersion direction: rows (detector y)")
    return hdu


def write_x1dints(path, spec: SpectraData, *, overwrite: bool = False, provenance: dict | None = None) -> Path:
    """Write a :class:`SpectraData` as a JWST ``_x1dints`` file in jwst's current (>= 1.17) layout.

    PRIMARY (DATAMODL = TSOMultiSpecModel; every non-private ``spec.meta`` keyword); one EXTRACT1D
    table of ``nints`` rows with the ``tso_spectable`` columns in schema order and dtype: INT_NUM,
    vector WAVELENGTH (um), FLUX and FLUX_ERROR (TUNIT = ``spec.units``: DN/s unless a photometric
    calibration was applied), the variance / surface-brightness / background columns (NaN: not
    measured here), DQ (uint32), NPIXELS (NaN: not recorded), N_ALONGDISP (= nwave), SEGMENT (EXSEGNUM), MJD-BEG/AVG/END
    (UTC) and TDB-BEG/MID/END (BJD_TDB - 2400000.5) from ``int_times``; INT_TIMES; TSO_AUX (one float64
    column of ``nints`` rows per ``spec.aux`` regressor); ASDF.  TSOUNITS in the primary header repeats
    the flux unit.  :func:`read_x1dints` reads this and the older one-table-per-integration layout.

    Parameters
    ----------
    path : str or pathlib.Path
        Destination file (its directory must exist).
    spec : SpectraData
        The spectra, ``(nints, nwave)``.
    overwrite : bool
        Replace an existing file (never the file the product was read from).
    provenance : dict, optional
        Software, stage, config hash, run config, simulator, seed ...: written to the ASDF tree and
        as the TSO* keywords.

    Returns
    -------
    pathlib.Path
        The file written (atomically).

    Raises
    ------
    OverwriteError
        The file exists and ``overwrite`` is False, or it is the product's own source file.
    ProductError
        The output directory does not exist.
    """
    _check_target(path, spec, overwrite)
    primary, sci, tso = _headers(spec, "x1dints", provenance, None, path)
    primary["TSOUNITS"] = (spec.units, "EXTRACT1D flux unit (DN/s: not calibrated)")
    hdus = [fits.PrimaryHDU(header=primary), _tso_spectable(spec), int_times_hdu(spec.int_times)]
    if spec.aux:
        hdus.append(fits.BinTableHDU.from_columns(
            [fits.Column(name=k, format="D", array=v) for k, v in spec.aux.items()], name="TSO_AUX"))
    return _atomic_write(_finish(hdus, primary, sci, tso), path)
