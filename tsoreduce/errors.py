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


class BackendUnavailableError(ConfigError):
    """The configured execution backend cannot be used here (e.g. ``execution.backend: dask`` without
    dask.distributed installed: ``pip install 'tsoreduce[dask]'``)."""


class WorkUnitError(TsoreduceError):
    """A work unit (a Stage 1 segment, a channel fit, an exposure) could not be completed by the execution
    backend, e.g. its worker process kept dying.  ``unit`` names the unit, ``reason`` says why."""

    def __init__(self, unit: str, reason: str):
        self.unit = str(unit)
        self.reason = reason
        super().__init__(f"work unit {self.unit}: {reason}")
