"""MIRI MRS branch: time series of 1-D spectra from per-integration spectral cubes (s3d).

Read cubes (:func:`read_cubes`, :func:`read_cube_bands`), extract point-source photometry per
wavelength plane with a fixed centre and a time-fixed bad-spaxel mask
(:func:`extract_cube_photometry`), and build the same products as Stage 3 -- a
:class:`~tsoreduce.datamodel.SpectraData` (Jy) and :class:`~tsoreduce.datamodel.LightCurves` with band
labels -- so Stage 4 fits MRS light curves unchanged (:func:`extract_cube_timeseries`, and :func:`run`, the
stage contract's runner).
Each function names its source (JWST pipeline ``cube_build`` and ``extract_1d`` documentation, Law et
al. 2023); full references in docs/sources.md.
"""

from .apertures import *  # noqa: F401,F403
from .apertures import __all__ as _ap_all
from .bands import *  # noqa: F401,F403
from .bands import __all__ as _bd_all
from .cubes import *  # noqa: F401,F403
from .cubes import __all__ as _cu_all
from .photometry import *  # noqa: F401,F403
from .photometry import __all__ as _ph_all
from .products import *  # noqa: F401,F403
from .products import __all__ as _pr_all
from .stage import *  # noqa: F401,F403
from .stage import __all__ as _st_all

__all__ = list(_ap_all) + list(_bd_all) + list(_cu_all) + list(_ph_all) + list(_pr_all) + list(_st_all)
