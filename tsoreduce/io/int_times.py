"""Per-integration times of JWST products: the INT_TIMES table (read, written), its reconstruction
from header keywords when a product has none, and the time columns of one-table x1dints.

INT_TIMES has exactly JWST's columns: ``integration_number, int_start_MJD_UTC, int_mid_MJD_UTC,
int_end_MJD_UTC, int_start_BJD_TDB, int_mid_BJD_TDB, int_end_BJD_TDB`` (days, MJD; stdatamodels
``int_times`` schema, JWST pipeline documentation "Science Products").
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
from astropy.io import fits

from ..datamodel import IntTimes
from ..errors import ProductError

__all__ = ["INT_TIMES_COLUMNS", "IntTimesReconstructedWarning", "IntTimesMissingWarning",
           "reconstruct_int_times", "read_int_times", "int_times_hdu", "int_times_from_columns"]

log = logging.getLogger(__name__)

INT_TIMES_COLUMNS = ("integration_number", "int_start_MJD_UTC", "int_mid_MJD_UTC", "int_end_MJD_UTC",
                     "int_start_BJD_TDB", "int_mid_BJD_TDB", "int_end_BJD_TDB")
_INT_TIMES_FIELDS = ("integration_number", "start_mjd_utc", "mid_mjd_utc", "end_mjd_utc",
                     "start_bjd_tdb", "mid_bjd_tdb", "end_bjd_tdb")


class IntTimesReconstructedWarning(UserWarning):
    """A product's INT_TIMES table was empty or absent; times were rebuilt from header keywords."""


class IntTimesMissingWarning(UserWarning):
    """A product has no usable INT_TIMES and its header cannot rebuild them: ``int_times`` is None."""


def _from_table(path, hdul, nints, meta):
    """IntTimes from a populated INT_TIMES table (rows for INTSTART..INTEND selected), else None."""
    if "INT_TIMES" not in hdul or hdul["INT_TIMES"].data is None or len(hdul["INT_TIMES"].data) == 0:
        return None
    tab = hdul["INT_TIMES"].data
    names = {n.lower(): n for n in tab.columns.names}
    missing = [c for c in INT_TIMES_COLUMNS if c.lower() not in names]
    if missing:
        raise ProductError(path, f"INT_TIMES lacks columns {missing}")
    num = np.asarray(tab[names["integration_number"]], np.int64)
    if len(num) == nints:
        rows = np.arange(nints)
    else:
        # segment files may carry the whole exposure's table (jwst selects rows by integration_number)
        start = int(meta.get("INTSTART", 1))
        wanted = np.arange(start, start + nints)
        rows = np.searchsorted(num, wanted)
        if (rows >= len(num)).any() or not np.array_equal(num[np.minimum(rows, len(num) - 1)], wanted):
            log.warning("%s: INT_TIMES has %d rows that do not cover integrations %d-%d; "
                        "rebuilding the times from header keywords", path, len(num), start,
                        start + nints - 1)
            return None
    cols = [np.asarray(tab[names[c.lower()]], np.float64)[rows] for c in INT_TIMES_COLUMNS[1:]]
    # TIMERECO: our flag that the stored times were themselves rebuilt from keywords
    return IntTimes(num[rows], start_bjd_tdb=cols[3], mid_bjd_tdb=cols[4], end_bjd_tdb=cols[5],
                    start_mjd_utc=cols[0], mid_mjd_utc=cols[1], end_mjd_utc=cols[2],
                    reconstructed=bool(hdul["INT_TIMES"].header.get("TIMERECO", False)))


def reconstruct_int_times(meta: dict, nints: int, *, path=None, warn: bool = True) -> IntTimes:
    """Per-integration times rebuilt from header keywords when INT_TIMES is empty.

    Method (JWST keyword dictionary definitions; MIRI resets between integrations):

    * integration numbers ``n = INTSTART .. INTSTART + nints - 1`` (INTSTART defaults to 1);
    * UTC start of integration n: ``EXPSTART + (n - 1) * (NGROUPS * TGROUP + NRESETS * TFRAME)`` --
      EXPSTART is the UTC MJD start of the exposure (integration 1); each integration lasts
      ``NGROUPS * TGROUP`` and is followed by NRESETS reset frames (1 for FASTR1, 0 for MIRISim FAST);
    * mid / end = start + half / all of ``NGROUPS * TGROUP``;
    * BJD_TDB (as MJD) = UTC converted to TDB plus the Roemer/Einstein delay of the target
      (TARG_RA, TARG_DEC) for an observer at the geocentre (astropy ``Time.light_travel_time``).
      JWST sits near L2 (~1.5e6 km), so this is off by up to ~5 s; on the flight WASP-39 x1dints it
      reproduces INT_TIMES int_mid_BJD_TDB to 0.86 s and int_start_MJD_UTC to < 0.01 s.
      The header's BSTRTIME is not used: on that flight file it differs from INT_TIMES by -472 s.
      Without TARG_RA/TARG_DEC (absent, non-finite, or the (0, 0) placeholder of simulated
      products) only the UTC->TDB scale change is applied (error up to ~500 s).

    Parameters
    ----------
    meta : dict
        Header keywords (EXPSTART, NGROUPS, TGROUP or TFRAME, NRESETS, INTSTART, TARG_RA, TARG_DEC).
    nints : int
        Integrations to date.
    path : str or pathlib.Path, optional
        File name used in the warning and in errors.
    warn : bool
        Emit :class:`IntTimesReconstructedWarning` (default True).

    Returns
    -------
    IntTimes
        With ``reconstructed=True``.

    Raises
    ------
    ProductError
        EXPSTART or NGROUPS/TGROUP are missing.
    """
    from astropy import units as u
    from astropy.coordinates import EarthLocation, SkyCoord
    from astropy.time import Time

    where = path if path is not None else "<product>"
    try:
        expstart = float(meta["EXPSTART"])
        ngroups = int(meta["NGROUPS"])
        tframe = float(meta.get("TFRAME", meta.get("TGROUP")))
        tgroup = float(meta.get("TGROUP", tframe))
    except (KeyError, TypeError, ValueError) as exc:
        raise ProductError(where, "INT_TIMES is empty and the header lacks EXPSTART/NGROUPS/TGROUP "
                           f"needed to rebuild integration times ({exc!r})") from exc
    nresets = int(meta.get("NRESETS", 1) or 0)
    intstart = int(meta.get("INTSTART", 1) or 1)
    num = np.arange(intstart, intstart + nints)
    dur = ngroups * tgroup
    cycle = dur + nresets * tframe
    start = expstart + (num - 1) * cycle / 86400.0
    utc = {"start": start, "mid": start + 0.5 * dur / 86400.0, "end": start + dur / 86400.0}
    ra, dec = meta.get("TARG_RA"), meta.get("TARG_DEC")
    try:
        ra, dec = float(ra), float(dec)
        # (0, 0) is the placeholder of simulated products (MIRISim), not a target direction
        have_target = bool(np.isfinite(ra) and np.isfinite(dec) and (ra, dec) != (0.0, 0.0))
    except (TypeError, ValueError):
        have_target = False
    bjd = {}
    for k, v in utc.items():
        t = Time(v, format="mjd", scale="utc")
        tdb = t.tdb
        if have_target:
            geocentre = EarthLocation.from_geocentric(0.0, 0.0, 0.0, unit=u.m)
            tdb = tdb + t.light_travel_time(SkyCoord(ra * u.deg, dec * u.deg),
                                            kind="barycentric", location=geocentre)
        bjd[k] = tdb.mjd
    how = (f"integration n starts at EXPSTART + (n-1)*(NGROUPS*TGROUP + NRESETS*TFRAME) = {expstart:.8f} "
           f"+ (n-1)*{cycle:.5f} s (UTC), BJD_TDB via astropy "
           + ("with the geocentric barycentric correction for TARG_RA/TARG_DEC "
              f"({ra:.5f}, {dec:.5f} deg; ~5 s accuracy)" if have_target else
              "WITHOUT barycentric correction (no usable TARG_RA/TARG_DEC: absent, non-finite or the "
              "(0, 0) placeholder; error up to ~500 s)"))
    if warn:
        warnings.warn(f"{where}: INT_TIMES is empty; integration times {intstart}-{num[-1]} were "
                      f"reconstructed from header keywords: {how}", IntTimesReconstructedWarning,
                      stacklevel=3)
    log.info("%s: reconstructed integration times: %s", where, how)
    return IntTimes(num, bjd["start"], bjd["mid"], bjd["end"], utc["start"], utc["mid"], utc["end"],
                    reconstructed=True)


def read_int_times(path, hdul, nints: int, meta: dict) -> IntTimes | None:
    """The integration times of an open product: its INT_TIMES table, else rebuilt from the header.

    Parameters
    ----------
    path : str or pathlib.Path
        The file, for messages.
    hdul : astropy.io.fits.HDUList
        The open file.
    nints : int
        Integrations in the product (rows are selected by INTSTART when the table is the whole
        exposure's).
    meta : dict
        Its header keywords.

    Returns
    -------
    IntTimes or None
        None when the product was written without times, or they cannot be rebuilt (warned with
        :class:`IntTimesMissingWarning`).
    """
    if "INT_TIMES" in hdul and hdul["INT_TIMES"].header.get("TIMENONE", False):
        return None  # written by us from a product that had no times: nothing to rebuild
    t = _from_table(path, hdul, nints, meta)
    if t is None:
        try:
            t = reconstruct_int_times(meta, nints, path=path)
        except ProductError as exc:
            warnings.warn(f"{exc}; int_times set to None", IntTimesMissingWarning, stacklevel=3)
    return t


def int_times_hdu(t: IntTimes | None) -> fits.BinTableHDU:
    """The INT_TIMES extension of a product, with exactly JWST's columns.

    Parameters
    ----------
    t : IntTimes or None
        The times; None writes an empty table marked TIMENONE (the product had none).

    Returns
    -------
    astropy.io.fits.BinTableHDU
        EXTNAME INT_TIMES; TIMERECO = True when the times were reconstructed.
    """
    if t is None:
        cols = [fits.Column(name=c, format="J" if c == "integration_number" else "D", array=np.zeros(0))
                for c in INT_TIMES_COLUMNS]
    else:
        cols = [fits.Column(name=c, format="J" if c == "integration_number" else "D",
                            array=getattr(t, f)) for c, f in zip(INT_TIMES_COLUMNS, _INT_TIMES_FIELDS)]
    hdu = fits.BinTableHDU.from_columns(cols, name="INT_TIMES")
    if t is None:
        hdu.header["TIMENONE"] = (True, "product had no int. times (tsoreduce)")
    elif t.reconstructed:
        hdu.header["TIMERECO"] = (True, "times rebuilt from keywords (tsoreduce)")
    return hdu


def int_times_from_columns(table) -> IntTimes | None:
    """IntTimes from the INT_NUM / MJD-* / TDB-* columns of a one-table x1dints.

    Parameters
    ----------
    table : astropy.io.fits.FITS_rec
        The EXTRACT1D table (jwst ``tso_spectable`` layout).

    Returns
    -------
    IntTimes or None
        None if a column is absent or a TDB-MID is not finite.
    """
    names = table.columns.names
    need = ("INT_NUM", "MJD-BEG", "MJD-AVG", "MJD-END", "TDB-BEG", "TDB-MID", "TDB-END")
    if not all(n in names for n in need):
        return None
    c = {n: np.asarray(table[n], np.float64) for n in need[1:]}
    if not np.isfinite(c["TDB-MID"]).all():
        return None
    return IntTimes(np.asarray(table["INT_NUM"], np.int64), c["TDB-BEG"], c["TDB-MID"], c["TDB-END"],
                    c["MJD-BEG"], c["MJD-AVG"], c["MJD-END"])
