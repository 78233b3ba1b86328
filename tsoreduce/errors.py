"""Named exceptions raised by tsoreduce.

Every error says *what* is wrong and *where* (file, extension, key or array name), so a user can fix
the input without reading the traceback.  All derive from :class:`TsoreduceError`.
"""

from __future__ import annotations


class TsoreduceError(Exception):
    """Base class of every error raised deliberately by tsoreduce."""


class ShapeError(TsoreduceError, ValueError):
    """An array has the wrong number of dimensions or a shape inconsistent with its partners."""


class ProductError(TsoreduceError):
    """A product file cannot be used.  ``path`` names the file, ``reason`` says why."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class WrongInstrumentError(ProductError):
    """The file is not from the instrument / exposure type / mode the step supports."""


class WrongSubarrayError(ProductError):
    """The file's subarray or data shape is not the one the step supports (e.g. not 416 x 72)."""


class MissingExtensionError(ProductError):
    """A required FITS extension (SCI, DQ, INT_TIMES, ...) is absent."""


class TruncatedFileError(ProductError):
    """The FITS file ends before the data its headers announce (an interrupted download or copy)."""


class MalformedCubeError(ProductError):
    """A spectral cube (s3d) is inconsistent: wrong dimensionality, SCI/ERR/DQ shapes that disagree, no
    usable wavelength axis, a missing or non-positive PIXAR_SR, wrong units, or grids that differ between
    the integrations of one time series."""


class EmptyDataError(ProductError):
    """The data are NaN (or non-finite) everywhere, so nothing can be measured from them."""


class OverwriteError(TsoreduceError, FileExistsError):
    """Writing would overwrite an input file or an existing product without ``overwrite=True``."""


class ReferenceFileError(TsoreduceError):
    """A calibration reference file is missing, malformed, or of the wrong type."""


class ConfigError(TsoreduceError, ValueError):
    """A YAML run or config section has an unknown key, a wrong type or an out-of-range value."""


class NotImplementedStepError(TsoreduceError, NotImplementedError):
    """A requested step or option exists in the config vocabulary but is not implemented.

    Raised instead of passing data through silently.
    """


class VisitOverlapError(ConfigError):
    """Two visits of a joint Stage 4 fit overlap in time (or fall on the same orbital epoch)."""


class NoTransitInWindowError(ConfigError):
    """A visit's time window does not contain the transit (or eclipse) the starting ephemeris predicts."""


class ScopeError(ConfigError):
    """A joint-fit parameter scope cannot be applied (e.g. ``per_band`` while a visit has no band)."""
