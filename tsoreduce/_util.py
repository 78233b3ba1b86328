"""Small internal utilities in one place: atomic file writes, robust scatter, warning filters,
documented dataclass fields.

Atomic, umask-honouring file writes: the one implementation every product writer uses.

A product is written to a temporary file in its destination directory, flushed to disk (fsync),
given the permissions any file the user creates would get (``0o666 & ~umask``; ``mkstemp`` alone
leaves ``0600``) and only then moved onto its name with ``os.replace``, which is atomic on POSIX.
A reader (or a resumed run) therefore sees either the previous file or the complete new one,
never a partial one, and a failed write (disk full, read-only directory, an exception in the
writer, Ctrl-C) leaves no temporary file behind.

An ``OSError`` raised while writing (``ENOSPC``, ``EACCES``, ``EROFS``, ...) is re-raised as
:class:`~tsoreduce.errors.OutputWriteError` naming the destination and the errno, so the command
line can report it in one line.

Robust scatter: :func:`robust_std` (``astropy.stats.mad_std``); numba kernels, which cannot call
astropy, scale a median absolute deviation by :data:`MAD_TO_SIGMA`.  Warning filters:
:func:`quiet_nan_warnings` silences numpy's "All-NaN slice" / "Mean of empty slice" RuntimeWarnings
where the caller handles the NaN results itself.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno as _errno
import inspect
import json
import os
import tempfile
import warnings
from pathlib import Path

from .errors import OutputWriteError, TsoreduceError

__all__ = ["atomic_path", "atomic_write", "atomic_write_text", "atomic_write_json", "current_umask",
           "output_write_error", "MAD_TO_SIGMA", "robust_std", "quiet_nan_warnings", "field_doc",
           "document_fields"]

#: standard deviation of a normal distribution per unit median absolute deviation, 1 / Phi^-1(3/4)
#: (the factor of ``astropy.stats.mad_std``); for numba kernels that cannot call astropy
MAD_TO_SIGMA = 1.482602218505602


def current_umask() -> int:
    """The process umask: read from /proc on Linux (setting it, the only portable way to read it,
    would briefly change it for every thread of the process), else set and restored."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0)
    os.umask(mask)
    return mask


def output_write_error(path, exc: OSError) -> OutputWriteError:
    """An :class:`OutputWriteError` for ``exc`` raised while writing ``path``.

    astropy checks the free space itself and raises an OSError without ``errno`` ("Not enough space
    on disk"), h5py may too; the errno is then taken from the exception chain or recognised from
    the text, and the reason given as the system's own words for it."""
    code, e = exc.errno, exc
    while code is None and e is not None:
        e = e.__cause__ or e.__context__
        code = getattr(e, "errno", None)
    text = str(exc)
    if code is None and ("No space left" in text or "Not enough space" in text):
        code = _errno.ENOSPC
    reason = os.strerror(code) if code is not None else (exc.strerror or text)
    return OutputWriteError(path, code, reason)


def _fsync_file(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(directory) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on a directory; the data are synced already
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path, suffix: str = ""):
    """Context manager yielding a temporary path (str) beside ``path``; on a clean exit the file
    written there is fsync'ed, chmod'ed to ``0o666 & ~umask`` and renamed onto ``path``.

    On any exception (including KeyboardInterrupt) the temporary file is removed and the exception
    re-raised; an ``OSError`` becomes :class:`~tsoreduce.errors.OutputWriteError`.
    ``suffix`` ends the temporary name (some writers choose the format from it, e.g. ``.ecsv``).

    Raises
    ------
    OutputWriteError
        the destination directory is not writable, the disk is full, ... (``path``, ``errno``).
    """
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + suffix, dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise output_write_error(path, exc) from exc
    try:
        yield tmp
        _fsync_file(tmp)
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
        _fsync_dir(path.parent)  # the rename itself survives a crash
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and not isinstance(exc, TsoreduceError):
            raise output_write_error(path, exc) from exc
        raise


def atomic_write(path, write_fn, suffix: str = "") -> Path:
    """Call ``write_fn(tmp_path)`` and move the result atomically onto ``path`` (see
    :func:`atomic_path`).  Returns ``Path(path)``."""
    with atomic_path(path, suffix) as tmp:
        write_fn(tmp)
    return Path(path)


def atomic_write_text(path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def atomic_write_json(path, obj) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=1, default=str))


# ------------------------------------------------------------------------------------ dataclass docs
def field_doc(default, doc: str, **metadata):
    """A dataclass field whose description lives in ``metadata["doc"]``.

    The one place a configuration dataclass documents a field: :func:`document_fields` writes it into
    the class docstring and :func:`tsoreduce.config.dataclass_schema` into the run-config schema
    (and so into ``runs/template.yaml``).

    Parameters
    ----------
    default : object
        The field's default (immutable: a tuple rather than a list).
    doc : str
        One-line description with units.
    **metadata
        Further schema hints (``min``, ``max``, ``choices``, ``item_type``, ``nullable``).

    Returns
    -------
    dataclasses.Field
        The field specification.
    """
    return dataclasses.field(default=default, metadata={"doc": doc, **metadata})


def document_fields(cls):
    """Class decorator: append a numpydoc Parameters section built from the fields' ``metadata["doc"]``.

    Parameters
    ----------
    cls : type
        A dataclass whose fields were made with :func:`field_doc` (fields without a doc are listed
        with their default only).

    Returns
    -------
    type
        ``cls``, its ``__doc__`` extended (Parameters go before the first section, e.g. Raises).
    """
    lines = ["Parameters", "----------"]
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        ftype = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        default = f.default if f.default is not dataclasses.MISSING else "(factory)"
        shown = f"{default:.12g}" if isinstance(default, float) else repr(default)
        lines.append(f"{f.name} : {ftype}, default {shown}")
        lines.append(f"    {f.metadata.get('doc', '')}".rstrip())
    doc = inspect.cleandoc(cls.__doc__ or "").splitlines()
    # numpydoc order: Parameters right after the summary, before the first section (Raises, Notes...)
    at = next((i for i in range(len(doc) - 1) if doc[i].strip() and set(doc[i + 1].strip()) == {"-"}
               and len(doc[i + 1].strip()) == len(doc[i].strip())), len(doc))
    cls.__doc__ = "\n".join(doc[:at] + lines + [""] + doc[at:]) + "\n"
    return cls


# ----------------------------------------------------------------------------------- robust scatter
def robust_std(x, axis=None, *, ignore_nan: bool = True):
    """Standard deviation estimated from the median absolute deviation (``astropy.stats.mad_std``).

    ``1.4826 * median(|x - median(x)|)``: unbiased for normal data, insensitive to outliers.

    Parameters
    ----------
    x : array_like
        Data, any shape.
    axis : int or tuple of int, optional
        Axes along which to compute it (default: all).
    ignore_nan : bool
        Skip NaN values (default True); a slice of NaNs only gives NaN.

    Returns
    -------
    float or numpy.ndarray
        The robust standard deviation, in the units of ``x``; ``x``'s shape without ``axis``.
    """
    from astropy.stats import mad_std

    with quiet_nan_warnings():
        return mad_std(x, axis=axis, ignore_nan=ignore_nan)


# ---------------------------------------------------------------------------------- warning filters
@contextlib.contextmanager
def quiet_nan_warnings():
    """Context manager silencing RuntimeWarnings (All-NaN slice, empty mean, invalid division).

    For code that handles NaN results itself; the filter is restored on exit (``warnings.catch_warnings``).

    Yields
    ------
    None
        Inside the block, RuntimeWarnings are ignored.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield
