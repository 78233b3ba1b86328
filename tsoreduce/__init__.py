"""tsoreduce: JWST MIRI time-series observations from raw ramps to a planetary spectrum.

Stages (one module each): ``detector`` (uncal -> rateints), ``spectroscopic`` (rateints -> calints),
``extraction`` (calints -> x1dints + light curves), ``lightcurve`` (light curves -> spectrum), and the
``mrs`` cube branch.  Containers live in :mod:`tsoreduce.datamodel`, file I/O in :mod:`tsoreduce.io`.
"""

__version__ = "0.1.0"

from .datamodel import DQ, IntTimes, LightCurves, RampData, RateData, SpectraData  # noqa: E402,F401
from . import errors  # noqa: E402,F401
