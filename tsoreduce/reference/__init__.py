"""Reference data of a MIRI LRS reduction: the bundled wavelength solutions and CRDS calibration files.

* :mod:`tsoreduce.reference.specwcs` -- the bundled SLITLESSPRISM wavelength tables
  (:func:`specwcs_table`, :func:`wavelength_of_row`, :func:`default_wavelength_map`,
  :func:`trace_x_center`, :func:`wavelength_map_label`).
* :mod:`tsoreduce.reference.crds` -- CRDS-format reference files, found in the local cache or given by
  path, never required (:func:`find_reference`, :func:`load_linearity`, :func:`load_dark`,
  :func:`load_flat`, :func:`load_gain`, :func:`load_readnoise`, :func:`load_saturation`).

The instrument constants (``SUBARRAY_SHAPE``, ``GAIN``, ``TFRAME``, ...) live in
:mod:`tsoreduce.instrument`.
"""

from .crds import *  # noqa: F401,F403
from .crds import __all__ as _crds_all
from .specwcs import *  # noqa: F401,F403
from .specwcs import __all__ as _specwcs_all

__all__ = list(_specwcs_all) + list(_crds_all)
