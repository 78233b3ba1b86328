"""Reading and writing JWST-format products and light-curve tables.

``tsoreduce.io.read(path)`` opens any supported product (uncal, rateints, calints, x1dints) and returns
the matching container; writers are named after the product (``write_uncal``, ``write_rateints``,
``write_calints``, ``write_x1dints``).  Light-curve tables: ``read_lightcurves`` / ``write_lightcurves``.
"""

from .fits_products import *  # noqa: F401,F403
from .fits_products import __all__ as _fits_all
from .lightcurves import *  # noqa: F401,F403
from .lightcurves import __all__ as _lc_all

__all__ = list(_fits_all) + list(_lc_all)
