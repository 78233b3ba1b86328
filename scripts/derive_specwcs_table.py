#!/usr/bin/env python
"""Regenerate ``tsoreduce/data/slitlessprism_specwcs.ecsv`` from the CRDS specwcs reference file.

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

Without ``-o`` the bundled table is rewritten (``--force`` is required to replace an existing file).
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

BUNDLED = Path(__file__).resolve().parents[1] / "tsoreduce" / "data" / "slitlessprism_specwcs.ecsv"


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
    p.add_argument("specwcs", help="path to jwst_miri_specwcs_0006.fits")
    p.add_argument("-o", "--output", type=Path, default=BUNDLED, help=f"output ECSV (default {BUNDLED})")
    p.add_argument("--force", action="store_true", help="replace an existing output file")
    args = p.parse_args(argv)
    table = derive(args.specwcs)
    write_atomic(table, args.output, args.force)
    print(f"wrote {len(table)} rows (rows {table['row'][0]}-{table['row'][-1]}) to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
