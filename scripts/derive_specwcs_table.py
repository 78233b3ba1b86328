#!/usr/bin/env python
"""Regenerate the bundled SLITLESSPRISM wavelength tables ``tsoreduce/data/slitlessprism_specwcs_*.ecsv``.

Two sources, two tables:

* ``slitlessprism_specwcs_0006.ecsv`` from the CRDS specwcs reference file itself (below);
* ``slitlessprism_specwcs_0009.ecsv`` (``--from-calints``, the current default) from the WAVELENGTH
  extension of a jwst calints whose primary header records ``R_SPCWCS = jwst_miri_specwcs_0009.fits``
  (the 2024 slitless wavelength recalibration, CRDS jwst_1293.pmap and later): the map is sampled at
  the trace centre of each row (linear interpolation along the row at ``x_center`` of the 0006 table;
  the map is constant along rows, which is checked), rows where it is finite and > 0 are kept.  The
  WAVELENGTH extension carries no trace position, so ``x_center`` is copied from specwcs_0006.

specwcs_0006
------------

Source: ``jwst_miri_specwcs_0006.fits`` (CRDS, REFTYPE SPECWCS, EXP_TYPE MIR_LRS-SLITLESS, SUBARRAY
SLITLESSPRISM, PEDIGREE INFLIGHT 2022-05-26 2022-05-31: the commissioning wavelength solution), a copy
of which is in ``../shared/data/miri_lrs_reference/`` (from STScI-MIRI/miricoord, BSD-3).

Derivation
----------
The WAVETABLE extension holds 388 rows of (X_CENTER, Y_CENTER, WAVELENGTH, X0..Y3): the trace centre
relative to the slit reference point (IMXSLTL, IMYSLTL) of the primary header, in pixels, with 1-based
full-frame reference coordinates.  For SLITLESSPRISM (SUBSTRT1 = 1, SUBSTRT2 = 529) the 0-based subarray
coordinates are::

    row      = IMYSLTL + Y_CENTER - 1 - (SUBSTRT2 - 1)   = 829.0 + Y_CENTER - 529
    x_center = IMXSLTL + X_CENTER - 1 - (SUBSTRT1 - 1)   = 38.5  + X_CENTER - 1

Y_CENTER runs over whole pixels (94 ... -293), so ``row`` is 7 ... 394 exactly.  The table is written
sorted by row (wavelength decreasing: 13.99 um at row 7, 3.7 um at row 394), x_center rounded to 1e-6 px,
wavelength as stored in the file (um).  The two last rows (4.2 and 3.7 um at rows 393-394) are the
file's coarse blue-end values; the later specwcs_0009 (used by jwst 2.0.1 for the MIRISim calints in
../shared/data) gives 4.06 um at row 394, 0.36 um away.

Usage::

    python scripts/derive_specwcs_table.py /path/to/jwst_miri_specwcs_0006.fits [-o OUTPUT] [--force]
    python scripts/derive_specwcs_table.py --from-calints /path/to/..._calints.fits [-o OUTPUT] [--force]

Without ``-o`` the corresponding bundled table is rewritten (``--force`` is required to replace an existing file).
The write is atomic (temporary file in the same folder, then ``os.replace``).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table

DATA = Path(__file__).resolve().parents[1] / "tsoreduce" / "data"
BUNDLED = DATA / "slitlessprism_specwcs_0006.ecsv"
BUNDLED_0009 = DATA / "slitlessprism_specwcs_0009.ecsv"


def derive(specwcs_path) -> Table:
    """The bundled-table contents (columns row, x_center [pix], wavelength [um]) from a specwcs file.

    Raises ValueError when the file is not a MIR_LRS-SLITLESS specwcs reference with a WAVETABLE.
    """
    with fits.open(specwcs_path) as h:
        ph = h[0].header
        if str(ph.get("REFTYPE", "")).upper() != "SPECWCS" or "WAVETABLE" not in h:
            raise ValueError(f"{specwcs_path}: not a specwcs reference file with a WAVETABLE extension")
        substrt1 = int(ph.get("SUBSTRT1", 1))
        substrt2 = int(ph.get("SUBSTRT2", 529))
        imx, imy = float(ph["IMXSLTL"]), float(ph["IMYSLTL"])
        wt = h["WAVETABLE"].data
        row = imy + np.asarray(wt["Y_CENTER"], float) - 1 - (substrt2 - 1)
        xc = imx + np.asarray(wt["X_CENTER"], float) - 1 - (substrt1 - 1)
        wave = np.asarray(wt["WAVELENGTH"], float)
        pedigree = ph.get("PEDIGREE", "")
    if not np.allclose(row, np.round(row)):
        raise ValueError(f"{specwcs_path}: Y_CENTER values are not whole pixels")
    order = np.argsort(row)
    t = Table()
    t["row"] = np.round(row[order]).astype(np.int64)
    t["row"].description = "SLITLESSPRISM subarray row, 0-based"
    t["x_center"] = np.round(xc[order], 6)
    t["x_center"].unit = "pix"
    t["x_center"].description = "trace centre column, 0-based subarray pixels"
    t["wavelength"] = wave[order]
    t["wavelength"].unit = "um"
    ped = str(pedigree).split()  # e.g. "INFLIGHT 2022-05-26 2022-05-31" -> "INFLIGHT 2022-05"
    ped = f"{ped[0]} {ped[1][:7]}" if len(ped) > 1 else " ".join(ped)
    t.meta["source"] = f"CRDS {Path(specwcs_path).name} (MIR_LRS-SLITLESS, PEDIGREE {ped}), WAVETABLE"
    t.meta["derivation"] = (f"row = IMYSLTL + Y_CENTER - 1 - {substrt2 - 1} (SUBSTRT2 = {substrt2}); "
                            f"x_center = IMXSLTL + X_CENTER - 1; IMYSLTL = {imy}, IMXSLTL = {imx} "
                            "from the primary header")
    return t


def derive_from_calints(calints_path, trace_table: Table | None = None) -> Table:
    """The bundled-table contents from the WAVELENGTH extension (um, ``(416, 72)``) of a jwst calints.

    The wavelength of row ``y`` is the map linearly interpolated along the row at the trace centre
    ``x_center(y)`` of ``trace_table`` (default: the bundled specwcs_0006 table); rows where it is not
    finite or <= 0 are dropped.  Raises ValueError without a usable WAVELENGTH extension, when the map
    varies along a row by more than 1e-4 um (the sampling column would then matter), or when the
    wavelengths do not decrease monotonically with row.
    """
    if trace_table is None:
        trace_table = Table.read(BUNDLED, format="ascii.ecsv")
    with fits.open(calints_path) as h:
        ph = h[0].header
        if "WAVELENGTH" not in h or h["WAVELENGTH"].data is None:
            raise ValueError(f"{calints_path}: no WAVELENGTH extension")
        wmap = np.asarray(h["WAVELENGTH"].data, float)
        rspc = str(ph.get("R_SPCWCS", "unknown")).replace("crds://", "")
        ctx = str(ph.get("CRDS_CTX", "unknown"))
        calver = str(ph.get("CAL_VER", "unknown"))
        substrt2 = int(ph.get("SUBSTRT2", 529))
    if wmap.ndim != 2 or substrt2 != 529:
        raise ValueError(f"{calints_path}: WAVELENGTH {wmap.shape} is not a SLITLESSPRISM (SUBSTRT2 529) map")
    wmap = np.where(np.isfinite(wmap) & (wmap > 0), wmap, np.nan)
    rows_def = np.isfinite(wmap).any(axis=1)
    spread = np.zeros(wmap.shape[0])
    spread[rows_def] = np.nanmax(wmap[rows_def], axis=1) - np.nanmin(wmap[rows_def], axis=1)
    if np.nanmax(spread) > 1e-4:
        raise ValueError(f"{calints_path}: WAVELENGTH varies along a row by up to {np.nanmax(spread):.2g} um")
    rows_t = np.asarray(trace_table["row"], float)
    xc_t = np.asarray(trace_table["x_center"], float)
    rows = np.arange(wmap.shape[0])
    xc = np.interp(rows, rows_t, xc_t)
    j = np.clip(np.floor(xc).astype(int), 0, wmap.shape[1] - 2)
    fr = xc - j
    wave = (1 - fr) * wmap[rows, j] + fr * wmap[rows, j + 1]
    keep = np.isfinite(wave) & (rows >= rows_t[0]) & (rows <= rows_t[-1])
    if not np.all(np.diff(wave[keep]) < 0):
        raise ValueError(f"{calints_path}: WAVELENGTH does not decrease monotonically with row")
    t = Table()
    t["row"] = rows[keep].astype(np.int64)
    t["row"].description = "SLITLESSPRISM subarray row, 0-based"
    t["x_center"] = np.round(xc[keep], 6)
    t["x_center"].unit = "pix"
    t["x_center"].description = "trace centre column, 0-based subarray pixels (from specwcs_0006)"
    t["wavelength"] = np.round(wave[keep], 6)
    t["wavelength"].unit = "um"
    t.meta["source"] = (f"CRDS {rspc} as applied by jwst {calver} (CRDS context {ctx}): WAVELENGTH "
                        f"extension of {Path(calints_path).name}")
    t.meta["derivation"] = ("wavelength = the WAVELENGTH map linearly interpolated along each row at "
                            "x_center; x_center copied from specwcs_0006 (the map carries no trace "
                            "position); rows where the map is finite and > 0")
    return t


def write_atomic(table: Table, output: Path, force: bool) -> None:
    if output.exists() and not force:
        raise SystemExit(f"{output} exists; pass --force to replace it")
    fd, tmp = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent)
    os.close(fd)
    try:
        table.write(tmp, format="ascii.ecsv", overwrite=True)
        os.replace(tmp, output)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("specwcs", nargs="?", help="path to jwst_miri_specwcs_0006.fits")
    p.add_argument("--from-calints", type=Path, default=None,
                   help="derive the specwcs_0009 table from this calints' WAVELENGTH extension instead")
    p.add_argument("-o", "--output", type=Path, default=None,
                   help=f"output ECSV (default {BUNDLED.name}, or {BUNDLED_0009.name} with --from-calints)")
    p.add_argument("--force", action="store_true", help="replace an existing output file")
    args = p.parse_args(argv)
    if (args.specwcs is None) == (args.from_calints is None):
        p.error("give either a specwcs file or --from-calints CALINTS")
    if args.from_calints is not None:
        table = derive_from_calints(args.from_calints)
        output = args.output or BUNDLED_0009
    else:
        table = derive(args.specwcs)
        output = args.output or BUNDLED
    write_atomic(table, output, args.force)
    print(f"wrote {len(table)} rows (rows {table['row'][0]}-{table['row'][-1]}) to {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
