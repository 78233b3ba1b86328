"""Stage 2 (spectroscopic): integration-level steps for MIRI LRS slitless, rateints -> calints.

Steps, in the order :func:`run` applies them (one function per step):

==================  ==============================================  ===================================
step                function                                        module
==================  ==============================================  ===================================
wavelength map      :func:`assign_wavelength`                       ``spectroscopic/wavelength.py``
flat field          :func:`flat_field`                              ``spectroscopic/flat.py``
bad integrations    :func:`find_bad_integrations`                   ``spectroscopic/bad_integrations.py``
background          :func:`subtract_background`                     ``spectroscopic/background.py``
bad pixels          :func:`clean_bad_pixels`                        ``spectroscopic/badpix.py``
PCA                 :func:`pca_reconstruct`                         ``spectroscopic/pca.py``
deep frame          :func:`make_deep_frame`                         ``spectroscopic/common.py``
==================  ==============================================  ===================================

:func:`run` (also known as :func:`run_stage2`) follows the stage contract of
:mod:`tsoreduce.contract`: ``run(rates, config=None, *, plot_dir=None, references=None)`` returns a
:class:`~tsoreduce.contract.StageResult` and never modifies ``rates``.  The diagnostics file
(:func:`write_stage2_diagnostics`) is written by :func:`tsoreduce.pipeline.run_stage2_files`.

Units: rateints are DN/s; calints from the STScI pipeline may be MJy/sr -- every step is linear or
rank-based, so the units of the input are kept (and logged), never converted.  Detector geometry:
SLITLESSPRISM is 416 rows x 72 columns, dispersion along rows, trace near column 36-38; columns 0-3
are reference pixels and are never used for background or PCA.
"""

from .background import (estimate_trace_column, format_columns, parse_columns,
                         subtract_background)
from .bad_integrations import find_bad_integrations
from .badpix import clean_bad_pixels, local_median_rows
from .common import BAD_PIXEL_FLAGS, baseline_index, make_deep_frame, nanmedian
from .diagnostics import write_stage2_diagnostics
from .flat import flat_field
from .pca import PCAResult, pca_reconstruct
from .stage import CONFIG_SCHEMA, run, run_stage2
from .wavelength import assign_wavelength, read_specwcs_wavelength_map

__all__ = ["CONFIG_SCHEMA", "run", "run_stage2", "find_bad_integrations", "assign_wavelength",
           "read_specwcs_wavelength_map", "flat_field", "estimate_trace_column", "subtract_background",
           "clean_bad_pixels", "pca_reconstruct", "make_deep_frame", "PCAResult", "baseline_index",
           "write_stage2_diagnostics", "nanmedian", "BAD_PIXEL_FLAGS", "local_median_rows",
           "format_columns", "parse_columns"]
