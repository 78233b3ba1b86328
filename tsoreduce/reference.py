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
* ``GAIN = 3.1`` e-/DN -- in-flight MIRI gain as adopted by the TSO community (Bell et al. 2023, Nature
  623, 709; Eureka! documentation), instead of the pre-flight 5.5 e-/DN in early CRDS files.
* ``READ_NOISE_DN`` -- single-read noise in DN (of order the CRDS MIRI readnoise reference, ~ 6 DN per
  CDS pair / sqrt(2)); an approximate default used only when no readnoise reference file is given.
* ``SATURATION_DN`` -- approximate MIRI hard saturation for a FAST ramp (CRDS MIRI saturation reference
  files are ~ 55 000-65 000 DN); a default used only when no saturation reference is given.
* ``EMI_FREQUENCIES`` -- named MIRI EMI frequencies in Hz, as named by the jwst ``emicorr`` step's
  reference file (``Hz390`` = 390.625 Hz is exactly one period per 256 pixel-clock ticks).

Reference data
--------------
* :func:`specwcs_table` / :func:`default_wavelength_map` / :func:`trace_x_center`: the bundled
  SLITLESSPRISM wavelength solution, derived from the CRDS file ``jwst_miri_specwcs_0006.fits``
  (see ``tsoreduce/data/slitlessprism_specwcs.ecsv``).
* :func:`pixel_read_time_offsets`: the read time of every pixel of every group and integration.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

import numpy as np

SUBARRAY_NAME = "SLITLESSPRISM"
SUBARRAY_SHAPE = (416, 72)
SUBSTRT1 = 1
SUBSTRT2 = 529
N_REFERENCE_COLUMNS = 4
FULL_FRAME_ROWS = 1024

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
    "Hz10": 10.039216,
    "Hz164": 164.5,
    "Hz218": 218.52055,
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


@lru_cache(maxsize=1)
def specwcs_table():
    """The bundled SLITLESSPRISM wavelength solution as an astropy Table.

    Columns: ``row`` (0-based subarray row, 7-394), ``x_center`` (0-based subarray column of the trace
    centre, pix), ``wavelength`` (um).  Derived from CRDS ``jwst_miri_specwcs_0006.fits`` (MIR_LRS-SLITLESS,
    PEDIGREE INFLIGHT 2022-05): ``row = IMYSLTL + Y_CENTER - 1 - 528`` and
    ``x_center = IMXSLTL + X_CENTER - 1`` with IMYSLTL = 829.0 and IMXSLTL = 38.5.
    """
    from astropy.table import Table

    path = resources.files("tsoreduce") / "data" / "slitlessprism_specwcs.ecsv"
    with resources.as_file(path) as p:
        return Table.read(p, format="ascii.ecsv")


def wavelength_of_row(rows) -> np.ndarray:
    """Wavelength (um) at (fractional, 0-based) subarray ``rows``; NaN outside the solution (rows 7-394)."""
    t = specwcs_table()
    r = np.asarray(t["row"], float)
    w = np.asarray(t["wavelength"], float)
    rows = np.asarray(rows, float)
    out = np.interp(rows, r, w)
    out = np.where((rows < r[0]) | (rows > r[-1]), np.nan, out)
    return out


def trace_x_center(rows) -> np.ndarray:
    """Nominal trace-centre column (0-based subarray pixels) at ``rows`` from the bundled specwcs;
    rows outside 7-394 are extrapolated linearly from the nearest end."""
    t = specwcs_table()
    r = np.asarray(t["row"], float)
    x = np.asarray(t["x_center"], float)
    rows = np.asarray(rows, float)
    # the trace is curved: extrapolate each end with a line through its own last 20 rows
    lo, hi = np.polyfit(r[:20], x[:20], 1), np.polyfit(r[-20:], x[-20:], 1)
    out = np.interp(rows, r, x)
    out = np.where(rows < r[0], np.polyval(lo, rows), out)
    return np.where(rows > r[-1], np.polyval(hi, rows), out)


def default_wavelength_map(shape: tuple[int, int] = SUBARRAY_SHAPE) -> np.ndarray:
    """Wavelength map of SLITLESSPRISM, float32 ``(416, 72)`` in um, constant along each row (as the jwst
    pipeline's WAVELENGTH extension), NaN in rows without a solution."""
    nrows, ncols = shape
    w = wavelength_of_row(np.arange(nrows))
    return np.repeat(w[:, None], ncols, axis=1).astype(np.float32)
