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
    """A product file cannot be used.  ``path`` names the file, ``reason`` says why.

    Parameters
    ----------
    path : str or pathlib.Path
        The file.
    reason : str
        What is wrong with it, in words a user can act on.
    """

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


_PRODUCT_ERROR_PARAMETERS = """

    Parameters
    ----------
    path : str or pathlib.Path
        The file.
    reason : str
        What is wrong with it.
    """
for _cls in (WrongInstrumentError, WrongSubarrayError, MissingExtensionError, TruncatedFileError,
             MalformedCubeError, EmptyDataError):
    _cls.__doc__ = _cls.__doc__.rstrip() + _PRODUCT_ERROR_PARAMETERS
del _cls


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


class FitError(TsoreduceError, RuntimeError):
    """A light-curve fit cannot proceed as specified, e.g. emcee walkers cannot be started inside the
    prior support (the posterior is non-finite around the least-squares solution)."""


class VisitOverlapError(ConfigError):
    """Two visits of a joint Stage 4 fit overlap in time (or fall on the same orbital epoch)."""


class NoTransitInWindowError(ConfigError):
    """A visit's time window does not contain the transit (or eclipse) the starting ephemeris predicts."""


class ScopeError(ConfigError):
    """A joint-fit parameter scope cannot be applied (e.g. ``per_band`` while a visit has no band)."""


class OutputWriteError(TsoreduceError, OSError):
    """A product or run file cannot be written: the output directory is read-only, the disk is full,
    ...  ``path`` names the file, ``errno`` the system error (e.g. 28 = ENOSPC, 13 = EACCES).

    Parameters
    ----------
    path : str or pathlib.Path
        The file that could not be written.
    errno : int or None
        The system error number (``errno`` module), None when unknown.
    reason : str
        The system's words for it (``os.strerror``).
    """

    def __init__(self, path, errno: int | None, reason: str):
        import errno as _errno
        self.path = str(path)
        name = _errno.errorcode.get(errno, "") if errno is not None else ""
        text = (f"cannot write {self.path}: {reason}"
                + (f" (errno {errno} {name})" if errno is not None else ""))
        # OSError's own attributes (errno, strerror, filename) stay usable by callers
        OSError.__init__(self, errno, text)
        self.errno, self.strerror, self.filename = errno, reason, self.path
        self.message = text

    def __str__(self) -> str:
        return self.message


class OutputLockedError(TsoreduceError):
    """Another run, alive, holds the lock of the output directory (``output_dir/.tsoreduce.lock``)."""


class SegmentMismatchError(TsoreduceError, ValueError):
    """The uncal segments of one exposure disagree (NGROUPS, subarray, readout pattern, ...) or do not
    continue each other (INTSTART/INTEND/NINTS), named by the two files involved."""


class DuplicateSegmentError(SegmentMismatchError):
    """The same uncal segment is given twice (the same file, or two files with the same INTSTART)."""


#: Exit status of the ``tsoreduce`` command for each error class (most specific first); anything
#: not listed -- a bug -- exits 1 with a traceback.  README "What can go wrong" is checked against it.
EXIT_STATUS = {
    "success": 0,
    TsoreduceError: 1,
    ConfigError: 2,
    SegmentMismatchError: 2,
    OverwriteError: 3,
    OutputWriteError: 4,
    OutputLockedError: 5,
    KeyboardInterrupt: 130,
}


def exit_status(exc) -> int:
    """The command-line exit status for an exception or exception class.

    Parameters
    ----------
    exc : BaseException or type
        An exception or an exception class.

    Returns
    -------
    int
        The most specific entry of :data:`EXIT_STATUS` along the class's MRO; 1 when none matches.
    """
    for cls in (exc if isinstance(exc, type) else type(exc)).__mro__:
        if cls in EXIT_STATUS:
            return EXIT_STATUS[cls]
    return 1


def render_failure_table() -> str:
    """Markdown of README's "What can go wrong": every exit status and every named error (its class
    docstring's first paragraph).  Generated here so the README cannot go stale (a test compares).
    Print it with ``python -m tsoreduce.errors``.

    Returns
    -------
    str
        The Markdown text, ending with a newline.
    """
    import inspect
    import sys

    status_doc = {
        0: "the run finished (or `--dry-run` printed a plan without conflicts)",
        1: "another named error below (an unreadable or inconsistent product, a missing step)",
        2: "configuration or input error: every problem of the run file is listed at once, each with "
           "its key path, before any work; uncal segments that do not belong together",
        3: "a product would be overwritten without `--force` (also `--dry-run` when its plan marks a "
           "CONFLICT)",
        4: "an output cannot be written (read-only directory, disk full): the path and the errno; no "
           "partial product is left, and the same command resumes once there is room",
        5: "another run, alive, holds the output directory (`output_dir/.tsoreduce.lock` names its pid, "
           "host and start time); a lock left by a run that died is taken over with a WARNING",
        130: "interrupted (Ctrl-C); the same command resumes",
    }
    by_status: dict[int, list[str]] = {}
    for cls, code in EXIT_STATUS.items():
        if isinstance(cls, type) and issubclass(cls, TsoreduceError):
            by_status.setdefault(code, []).append(cls.__name__)
    lines = ["Every error is one line on stderr, `tsoreduce: error: <ErrorName>: <what and where>`,",
             "and the command exits with one of these statuses (`tsoreduce.errors.EXIT_STATUS`):", "",
             "| exit status | meaning |", "|---|---|"]
    for code in sorted(status_doc):
        assert code in EXIT_STATUS.values(), code
        lines.append(f"| {code} | {status_doc[code]} |")
    lines += ["", "The named errors (`tsoreduce.errors`), each a subclass of `TsoreduceError`:", "",
              "| error | exit status | raised when |", "|---|---|---|"]
    module = sys.modules[__name__]
    for name, cls in inspect.getmembers(module, inspect.isclass):
        if not issubclass(cls, TsoreduceError) or cls.__module__ != __name__:
            continue
        doc = " ".join((inspect.getdoc(cls) or "").split("\n\n")[0].split())
        lines.append(f"| `{name}` | {exit_status(cls)} | {doc} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # pragma: no cover
    print(render_failure_table(), end="")
class BackendUnavailableError(ConfigError):
    """The configured execution backend cannot be used here (e.g. ``execution.backend: dask`` without
    dask.distributed installed: ``pip install 'tsoreduce[dask]'``)."""


class WorkUnitError(TsoreduceError):
    """A work unit (a Stage 1 segment, a channel fit, an exposure) could not be completed by the execution
    backend, e.g. its worker process kept dying.  ``unit`` names the unit, ``reason`` says why.

    Parameters
    ----------
    unit : str
        The work unit's name.
    reason : str
        Why it failed.
    """

    def __init__(self, unit: str, reason: str):
        self.unit = str(unit)
        self.reason = reason
        super().__init__(f"work unit {self.unit}: {reason}")
