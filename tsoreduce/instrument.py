"""MIRI LRS slitless instrument constants: subarray geometry, readout clocking, detector defaults.

Only numbers (and the two small functions that follow from the clocking) live here; reference files
(bundled wavelength tables, CRDS loaders) are in :mod:`tsoreduce.reference`.  Sources are listed in
``docs/sources.md``.

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
  (:func:`tsoreduce.reference.load_gain`) when one is available.
* ``READ_NOISE_DN = 6.0`` -- read noise in DN; JDox "MIRI Detector Performance" Table 1 ("Read noise
  (DN) ~6", flight measurement).  A default used only when no readnoise reference file is given.
* ``SATURATION_DN = 60000`` -- approximate MIRI hard saturation: JDox "MIRI Detector Performance" gives
  a full well of ~210 000 e-, i.e. ~52 000-68 000 DN for a gain of 4-3.1 e-/DN; exoTEDRF flags at 80 % of
  a 56 600 DN full well (exoTEDRF's MIRI saturation step).  The per-pixel CRDS saturation
  reference (:func:`tsoreduce.reference.load_saturation`) should be preferred; this default is used
  only without one.
* ``EMI_FREQUENCIES`` -- the MIRI EMI frequencies in Hz, with the names of the jwst ``emicorr``
  reference file (stdatamodels ``EmiModel``: Hz390, Hz218a, Hz218b, Hz218c, Hz164, Hz10) and the values
  of the jwst emicorr documentation ("The known frequencies to correct for are [Hz]: 390.625, 218.52055,
  218.520470, 218.520665, 164.9305, 10.039216").  ``Hz390`` = 390.625 Hz is exactly one period per 256
  pixel-clock ticks of 10 us; its amplitude is ~ +-4 DN (same page).
"""

from __future__ import annotations

import numpy as np

__all__ = ["SUBARRAY_NAME", "SUBARRAY_SHAPE", "SUBSTRT1", "SUBSTRT2", "SUBSIZE1", "SUBSIZE2",
           "N_REFERENCE_COLUMNS", "FULL_FRAME_ROWS", "FULL_FRAME_SHAPE", "PIXEL_CLOCK", "ROW_CLOCKS",
           "FRAME_CLOCKS", "TFRAME", "NSAMPLES_FAST", "GAIN", "READ_NOISE_DN", "SATURATION_DN",
           "EMI_FREQUENCIES", "EMI_390_HARMONICS", "frame_ticks", "pixel_read_time_offsets"]

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
    """Pixel-clock ticks per frame of a FAST subarray.

    Rows of the region of interest cost ``ROW_CLOCKS`` ticks, the other rows of the 1024-row frame 7
    (the clocking of the jwst ``emicorr`` step).

    Parameters
    ----------
    nrows : int
        Rows read in the subarray (416 for SLITLESSPRISM).

    Returns
    -------
    int
        Ticks of :data:`PIXEL_CLOCK` per frame; 15904 for SLITLESSPRISM.
    """
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
    nints : int
        Number of integrations.
    ngroups : int
        Groups per integration.
    int_offset : int
        Index of the first integration in the exposure (INTSTART - 1 for a segment).
    shape : tuple of int
        ``(nrows, ncols)`` of the subarray.
    reset_frames : int
        Frames spent resetting between integrations (1 for FASTR1).

    Returns
    -------
    t_int : numpy.ndarray
        ``(nints,)`` s, start of each integration.
    t_group : numpy.ndarray
        ``(ngroups,)`` s, offset of each group within an integration.
    t_pixel : numpy.ndarray
        ``(nrows, ncols)`` s, offset of each pixel's read within a frame.
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
