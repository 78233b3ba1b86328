"""Realistic synthetic MIRI time series with known truth, for tests, the demo and tutorials.

* :mod:`tsoreduce.simulate.lrs` -- LRS SLITLESSPRISM uncal ramps (and a fast rate-level shortcut).
* :mod:`tsoreduce.simulate.mrs` -- MRS s3d spectral cubes per integration.
"""

from .lrs import *  # noqa: F401,F403
from .lrs import __all__ as _lrs_all
from .mrs import *  # noqa: F401,F403
from .mrs import __all__ as _mrs_all

__all__ = list(_lrs_all) + list(_mrs_all)
