"""The bundled MIRI LRS SLITLESSPRISM wavelength solutions (``tsoreduce/data``) and their readers.

* :func:`specwcs_table` / :func:`default_wavelength_map` / :func:`wavelength_of_row`: by default the
  current CRDS ``jwst_miri_specwcs_0009.fits`` (``specwcs_0009``); the 2022 commissioning
  ``jwst_miri_specwcs_0006.fits`` stays selectable by name (``specwcs_0006``).
* :func:`trace_x_center`: the nominal trace of specwcs_0006.

Derivations of the tables: ``tsoreduce/data/README.md``; sources: ``docs/sources.md`` (jwst
``assign_wcs`` and the SPECWCS reference file for MIRI LRS).
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

from ..errors import ReferenceFileError
from ..instrument import SUBARRAY_SHAPE

__all__ = ["WAVELENGTH_MAPS", "DEFAULT_WAVELENGTH_MAP", "WAVELENGTH_MAP_CRDS", "specwcs_table",
           "wavelength_map_label", "wavelength_of_row", "trace_x_center", "default_wavelength_map"]

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

    ``specwcs_0009``: the WAVELENGTH extension that jwst 2.0.1 wrote with CRDS
    ``jwst_miri_specwcs_0009.fits`` (context jwst_1535; the 2024 slitless wavelength recalibration of
    CRDS jwst_1293), sampled at the trace; ``specwcs_0006``: the 2022 commissioning file's WAVETABLE,
    ``row = IMYSLTL + Y_CENTER - 1 - 528`` and ``x_center = IMXSLTL + X_CENTER - 1`` with
    IMYSLTL = 829.0 and IMXSLTL = 38.5.  Both use the 0006 trace centre (the WAVELENGTH extension
    carries none).  Derivations: ``tsoreduce/data/README.md``.

    Parameters
    ----------
    name : str, optional
        ``"specwcs_0009"`` (default, :data:`DEFAULT_WAVELENGTH_MAP`), ``"specwcs_0006"``, or the path of
        an ECSV file with the same columns.

    Returns
    -------
    astropy.table.Table
        Columns ``row`` (0-based subarray row, 7-394), ``x_center`` (0-based subarray column of the
        trace centre, pix), ``wavelength`` (um, decreasing with row).

    Raises
    ------
    ReferenceFileError
        Unknown name, unreadable file or missing columns.
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
    """The name written into products (R_SPCWCS) for a bundled map or a table file.

    Parameters
    ----------
    name : str, optional
        A bundled map name (default :data:`DEFAULT_WAVELENGTH_MAP`) or the path of an ECSV table.

    Returns
    -------
    str
        The CRDS file a bundled map reproduces (``jwst_miri_specwcs_0009.fits``), else the table's
        file name.
    """
    name = _map_name(name)
    return WAVELENGTH_MAP_CRDS.get(name, Path(name).name)


def wavelength_of_row(rows, name: str | None = None) -> np.ndarray:
    """Wavelength at (fractional, 0-based) subarray rows, linear between the table's rows.

    Parameters
    ----------
    rows : float or array_like
        0-based subarray rows (any shape).
    name : str, optional
        The map (default :data:`DEFAULT_WAVELENGTH_MAP`), as for :func:`specwcs_table`.

    Returns
    -------
    numpy.ndarray
        Wavelength in um, shape of ``rows``; NaN outside the table (rows 7-394), never the edge value
        repeated.
    """
    t = specwcs_table(_map_name(name))
    r = np.asarray(t["row"], float)
    w = np.asarray(t["wavelength"], float)
    rows = np.asarray(rows, float)
    out = np.interp(rows, r, w)
    out = np.where((rows < r[0]) | (rows > r[-1]), np.nan, out)
    return out


def trace_x_center(rows) -> np.ndarray:
    """Nominal trace-centre column at ``rows`` from specwcs_0006 (the only bundled trace position).

    Parameters
    ----------
    rows : float or array_like
        0-based subarray rows (any shape).

    Returns
    -------
    numpy.ndarray
        Trace-centre column, 0-based subarray pixels, shape of ``rows``; rows outside 7-394 are
        extrapolated linearly from the nearest end.
    """
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
    """Wavelength map of SLITLESSPRISM from a bundled map, constant along each row.

    Constant along rows as the jwst pipeline's WAVELENGTH extension (jwst ``assign_wcs``).

    Parameters
    ----------
    shape : tuple of int
        ``(nrows, ncols)`` of the map, default ``(416, 72)``.
    name : str, optional
        The map (default :data:`DEFAULT_WAVELENGTH_MAP`), as for :func:`specwcs_table`.

    Returns
    -------
    numpy.ndarray
        float32 ``(nrows, ncols)`` in um, NaN in rows without a solution.
    """
    nrows, ncols = shape
    w = wavelength_of_row(np.arange(nrows), name)
    return np.repeat(w[:, None], ncols, axis=1).astype(np.float32)
