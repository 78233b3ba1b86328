"""In-memory containers for the product levels of a MIRI time-series reduction, and the DQ flags.

Axis order is JWST's (row-major, slowest first):

* :class:`RampData`    ``(integration, group, row, column)``  -- uncal / ramp level, DN
* :class:`RateData`    ``(integration, row, column)``         -- rateints / calints level, DN/s (or MJy/sr)
* :class:`SpectraData` ``(integration, wavelength)``          -- x1dints level, DN/s or Jy

Each container holds ``data``, ``err``, ``dq`` (uint32, JWST bit values, see :class:`DQ`), the
per-integration times (:class:`IntTimes`, BJD_TDB as in the JWST ``INT_TIMES`` table), the wavelength
where known (um) and ``meta``: a plain ``dict`` of FITS header keywords (INSTRUME, EXP_TYPE, SUBARRAY,
NGROUPS, NINTS, TFRAME, TGROUP, INTSTART, INTEND, ...).  Shapes are validated on construction and a
:class:`~tsoreduce.errors.ShapeError` names the offending array.

Containers are light dataclasses: steps return new containers (``replace``) and never mutate their
input's arrays.

Source of the DQ bit values: JWST pipeline documentation, "Data Quality Flags"
(jwst-pipeline.readthedocs.io, ``stdatamodels.jwst.datamodels.dqflags``).
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
from dataclasses import dataclass, field

import numpy as np

from .errors import ShapeError

__all__ = ["DQ", "IntTimes", "RampData", "RateData", "SpectraData", "LightCurves", "dq_has", "concatenate"]


class DQ(enum.IntFlag):
    """JWST data-quality bit values (PIXELDQ / GROUPDQ / DQ arrays).

    ``GOOD`` is 0.  Group-level flags (GROUPDQ) use only the low byte: DO_NOT_USE, SATURATED,
    JUMP_DET, DROPOUT, OUTLIER, PERSISTENCE, AD_FLOOR, CHARGELOSS.  This is the one definition of the
    bit values in tsoreduce; numba kernels use ``np.uint32(DQ.X)`` copies of it.

    Parameters
    ----------
    value : int
        A DQ value (``DQ(6)`` is ``DQ.SATURATED | DQ.JUMP_DET``).
    """

    GOOD = 0
    DO_NOT_USE = 1
    SATURATED = 2
    JUMP_DET = 4
    DROPOUT = 8
    OUTLIER = 16
    PERSISTENCE = 32
    AD_FLOOR = 64
    CHARGELOSS = 128
    UNRELIABLE_ERROR = 256
    NON_SCIENCE = 512
    DEAD = 1024
    HOT = 2048
    WARM = 4096
    LOW_QE = 8192
    RC = 16384
    TELEGRAPH = 32768
    NONLINEAR = 65536
    BAD_REF_PIXEL = 131072
    NO_FLAT_FIELD = 262144
    NO_GAIN_VALUE = 524288
    NO_LIN_CORR = 1048576
    NO_SAT_CHECK = 2097152
    UNRELIABLE_BIAS = 4194304
    UNRELIABLE_DARK = 8388608
    UNRELIABLE_SLOPE = 16777216
    UNRELIABLE_FLAT = 33554432
    OPEN = 67108864
    ADJ_OPEN = 134217728
    FLUX_ESTIMATED = 268435456
    MSA_FAILED_OPEN = 536870912
    OTHER_BAD_PIXEL = 1073741824
    REFERENCE_PIXEL = 2147483648


DQ.__signature__ = inspect.Signature([inspect.Parameter("value", inspect.Parameter.POSITIONAL_ONLY)])


def dq_has(dq: np.ndarray, flags: int | DQ) -> np.ndarray:
    """Where any of ``flags`` is set in ``dq``.

    Parameters
    ----------
    dq : numpy.ndarray
        DQ array, any shape, any unsigned integer type.
    flags : int or DQ
        One flag or several OR-ed together.

    Returns
    -------
    numpy.ndarray
        bool, the shape of ``dq``.
    """
    return (np.asarray(dq) & np.uint32(int(flags))) != 0


def _as_array(name: str, value, dtype) -> np.ndarray:
    arr = np.asarray(value)
    if dtype is not None and arr.dtype != dtype:
        arr = arr.astype(dtype)
    if not arr.flags.c_contiguous:
        arr = np.ascontiguousarray(arr)
    return arr


def _check_shape(cls: str, name: str, arr: np.ndarray, shape: tuple[int, ...]) -> None:
    if arr.shape != tuple(shape):
        raise ShapeError(f"{cls}.{name} has shape {arr.shape}, expected {tuple(shape)}")


def _check_ndim(cls: str, name: str, arr: np.ndarray, ndim: int, axes: str) -> None:
    if arr.ndim != ndim:
        raise ShapeError(f"{cls}.{name} must be {ndim}-D {axes}, got shape {arr.shape}")


@dataclass
class IntTimes:
    """Per-integration times, as in the JWST ``INT_TIMES`` table.

    All arrays have shape ``(nints,)``.  Times are in days:

    * ``*_bjd_tdb``: barycentric dynamical time, stored as MJD (BJD_TDB - 2400000.5), exactly as the
      ``int_*_BJD_TDB`` columns of JWST's INT_TIMES extension.
    * ``*_mjd_utc``: optional UTC MJD columns (``int_*_MJD_UTC``); NaN when unknown.

    ``integration_number`` is 1-based within the exposure (INTSTART..INTEND for a segment).
    ``reconstructed`` is True when the times were rebuilt from header keywords instead of read from a
    populated INT_TIMES table (see :func:`tsoreduce.io.reconstruct_int_times`).

    Parameters
    ----------
    integration_number : int64 ``(nints,)``
        1-based integration numbers within the exposure.
    start_bjd_tdb, mid_bjd_tdb, end_bjd_tdb : float64 ``(nints,)``
        Start, middle and end of each integration, BMJD_TDB (days).
    start_mjd_utc, mid_mjd_utc, end_mjd_utc : float64 ``(nints,)`` or None
        The same in UTC MJD (days); None -> NaN.
    reconstructed : bool
        Whether the times were rebuilt from header keywords.

    Raises
    ------
    ShapeError
        When the arrays are not 1-D of one length.
    """

    integration_number: np.ndarray
    start_bjd_tdb: np.ndarray
    mid_bjd_tdb: np.ndarray
    end_bjd_tdb: np.ndarray
    start_mjd_utc: np.ndarray | None = None
    mid_mjd_utc: np.ndarray | None = None
    end_mjd_utc: np.ndarray | None = None
    reconstructed: bool = False

    def __post_init__(self):
        self.integration_number = _as_array("integration_number", self.integration_number, np.int64)
        n = self.integration_number.shape
        if len(n) != 1:
            raise ShapeError(f"IntTimes.integration_number must be 1-D, got shape {n}")
        for name in ("start_bjd_tdb", "mid_bjd_tdb", "end_bjd_tdb",
                     "start_mjd_utc", "mid_mjd_utc", "end_mjd_utc"):
            value = getattr(self, name)
            if value is None:
                value = np.full(n, np.nan)
            arr = _as_array(name, value, np.float64)
            _check_shape("IntTimes", name, arr, n)
            setattr(self, name, arr)

    def __len__(self) -> int:
        return self.integration_number.size

    @property
    def bjd_tdb(self) -> np.ndarray:
        """Mid-integration time as full BJD_TDB (days, JD-like: MJD + 2400000.5), shape ``(nints,)``."""
        return self.mid_bjd_tdb + 2400000.5

    def select(self, index) -> "IntTimes":
        """A new IntTimes restricted to ``index`` (slice, integer array or boolean mask)."""
        return IntTimes(
            self.integration_number[index], self.start_bjd_tdb[index], self.mid_bjd_tdb[index],
            self.end_bjd_tdb[index], self.start_mjd_utc[index], self.mid_mjd_utc[index],
            self.end_mjd_utc[index], self.reconstructed)

    @classmethod
    def concatenate(cls, parts: list["IntTimes"]) -> "IntTimes":
        """Join several IntTimes in the given order."""
        cat = lambda name: np.concatenate([getattr(p, name) for p in parts])  # noqa: E731
        return cls(cat("integration_number"), cat("start_bjd_tdb"), cat("mid_bjd_tdb"),
                   cat("end_bjd_tdb"), cat("start_mjd_utc"), cat("mid_mjd_utc"), cat("end_mjd_utc"),
                   any(p.reconstructed for p in parts))


class _Product:
    """Shared behaviour of the three containers."""

    #: names of the optional per-integration arrays validated against ``nints``
    def _check_times(self):
        if self.int_times is not None and len(self.int_times) != self.nints:
            raise ShapeError(f"{type(self).__name__}.int_times has {len(self.int_times)} rows, "
                             f"expected nints = {self.nints}")

    @property
    def nints(self) -> int:
        return self.data.shape[0]

    def replace(self, **changes):
        """A new container with the given fields replaced (validated again); arrays not named are shared."""
        return dataclasses.replace(self, **changes)

    def copy(self):
        """A deep copy: every array copied, ``meta`` copied."""
        kwargs = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, np.ndarray):
                v = v.copy()
            elif isinstance(v, dict):
                v = {k: (a.copy() if isinstance(a, np.ndarray) else a) for k, a in v.items()}
            elif isinstance(v, IntTimes):
                v = v.select(slice(None))
            kwargs[f.name] = v
        return type(self)(**kwargs)

    def select_integrations(self, index):
        """A new container holding only the integrations in ``index`` (slice, int array or bool mask)."""
        kwargs = {}
        n = self.nints
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, np.ndarray) and v.ndim >= 1 and v.shape[0] == n and f.name in self._per_int:
                v = v[index]
            elif isinstance(v, IntTimes):
                v = v.select(index)
            elif isinstance(v, dict) and f.name == "aux":
                v = {k: np.asarray(a)[index] for k, a in v.items()}
            kwargs[f.name] = v
        return type(self)(**kwargs)


@dataclass
class RampData(_Product):
    """Group-level ramps (uncal, or after Stage 1 steps), DN.

    Parameters
    ----------
    data : float32 ``(nints, ngroups, nrows, ncols)``, DN.
    groupdq : uint32 ``(nints, ngroups, nrows, ncols)``, JWST group flags (written as uint8 GROUPDQ).
    pixeldq : uint32 ``(nrows, ncols)``, JWST pixel flags.
    err : float32, same shape as ``data``, or None (uncal files carry no ERR).
    int_times : :class:`IntTimes` or None.
    meta : dict of header keywords (NGROUPS, NINTS, TFRAME, TGROUP, INTSTART, ...).

    Raises
    ------
    ShapeError
        When the arrays disagree in dimensionality or shape.
    """

    data: np.ndarray
    groupdq: np.ndarray | None = None
    pixeldq: np.ndarray | None = None
    err: np.ndarray | None = None
    int_times: IntTimes | None = None
    meta: dict = field(default_factory=dict)

    _per_int = ("data", "groupdq", "err")

    def __post_init__(self):
        self.data = _as_array("data", self.data, np.float32)
        _check_ndim("RampData", "data", self.data, 4, "(integration, group, row, column)")
        shape = self.data.shape
        if self.groupdq is None:
            self.groupdq = np.zeros(shape, np.uint32)
        self.groupdq = _as_array("groupdq", self.groupdq, np.uint32)
        _check_shape("RampData", "groupdq", self.groupdq, shape)
        if self.pixeldq is None:
            self.pixeldq = np.zeros(shape[2:], np.uint32)
        self.pixeldq = _as_array("pixeldq", self.pixeldq, np.uint32)
        _check_shape("RampData", "pixeldq", self.pixeldq, shape[2:])
        if self.err is not None:
            self.err = _as_array("err", self.err, np.float32)
            _check_shape("RampData", "err", self.err, shape)
        self.meta = dict(self.meta)
        self._check_times()

    @property
    def dq(self) -> np.ndarray:
        """The group DQ array (alias of ``groupdq``), uint32 ``(nints, ngroups, nrows, ncols)``."""
        return self.groupdq

    @property
    def ngroups(self) -> int:
        return self.data.shape[1]


@dataclass
class RateData(_Product):
    """Per-integration count-rate images (rateints, calints).

    Parameters
    ----------
    data : float32 ``(nints, nrows, ncols)``; units in ``units`` (``"DN/s"`` for rateints,
        ``"MJy/sr"`` or ``"DN/s"`` for calints).
    err : float32, same shape (1-sigma).
    dq : uint32, same shape, JWST flags.
    var_poisson, var_rnoise : float32, same shape, or None.
    wavelength : float32 ``(nrows, ncols)`` in um, or None (NaN where undefined).
    int_times : :class:`IntTimes` or None.
    meta : dict of header keywords.
    units : str.

    Raises
    ------
    ShapeError
        When the arrays disagree in dimensionality or shape.
    """

    data: np.ndarray
    err: np.ndarray | None = None
    dq: np.ndarray | None = None
    var_poisson: np.ndarray | None = None
    var_rnoise: np.ndarray | None = None
    wavelength: np.ndarray | None = None
    int_times: IntTimes | None = None
    meta: dict = field(default_factory=dict)
    units: str = "DN/s"

    _per_int = ("data", "err", "dq", "var_poisson", "var_rnoise")

    def __post_init__(self):
        self.data = _as_array("data", self.data, np.float32)
        _check_ndim("RateData", "data", self.data, 3, "(integration, row, column)")
        shape = self.data.shape
        if self.err is None:
            self.err = np.zeros(shape, np.float32)
        if self.dq is None:
            self.dq = np.zeros(shape, np.uint32)
        for name, dtype in (("err", np.float32), ("dq", np.uint32),
                            ("var_poisson", np.float32), ("var_rnoise", np.float32)):
            v = getattr(self, name)
            if v is None:
                continue
            v = _as_array(name, v, dtype)
            _check_shape("RateData", name, v, shape)
            setattr(self, name, v)
        if self.wavelength is not None:
            self.wavelength = _as_array("wavelength", self.wavelength, np.float32)
            _check_shape("RateData", "wavelength", self.wavelength, shape[1:])
        self.meta = dict(self.meta)
        self._check_times()


@dataclass
class SpectraData(_Product):
    """A time series of 1-D spectra (x1dints level).

    Parameters
    ----------
    data : float64 ``(nints, nwave)``, flux in ``units`` (``"DN/s"`` or ``"Jy"``).
    err : float64, same shape (1-sigma).
    dq : uint32, same shape.
    wavelength : float64 ``(nwave,)`` in um (common to all integrations) or ``(nints, nwave)``.
    int_times : :class:`IntTimes` or None.
    aux : dict of per-integration regressors, each ``(nints,)`` (e.g. ``trace_x``, ``trace_width``).
    meta : dict of header keywords.
    units : str.

    Raises
    ------
    ShapeError
        When the arrays disagree in dimensionality or shape.
    """

    data: np.ndarray
    err: np.ndarray | None = None
    dq: np.ndarray | None = None
    wavelength: np.ndarray | None = None
    int_times: IntTimes | None = None
    aux: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)
    units: str = "DN/s"

    _per_int = ("data", "err", "dq")

    def __post_init__(self):
        self.data = _as_array("data", self.data, np.float64)
        _check_ndim("SpectraData", "data", self.data, 2, "(integration, wavelength)")
        shape = self.data.shape
        if self.err is None:
            self.err = np.zeros(shape)
        if self.dq is None:
            self.dq = np.zeros(shape, np.uint32)
        self.err = _as_array("err", self.err, np.float64)
        _check_shape("SpectraData", "err", self.err, shape)
        self.dq = _as_array("dq", self.dq, np.uint32)
        _check_shape("SpectraData", "dq", self.dq, shape)
        if self.wavelength is not None:
            self.wavelength = _as_array("wavelength", self.wavelength, np.float64)
            if self.wavelength.shape not in ((shape[1],), shape):
                raise ShapeError(f"SpectraData.wavelength has shape {self.wavelength.shape}, expected "
                                 f"({shape[1]},) or {shape}")
        aux = {}
        for k, v in dict(self.aux).items():
            v = np.asarray(v, dtype=np.float64)
            _check_shape("SpectraData", f"aux[{k!r}]", v, (shape[0],))
            aux[k] = v
        self.aux = aux
        self.meta = dict(self.meta)
        self._check_times()

    def select_integrations(self, index):
        new = super().select_integrations(index)
        if self.wavelength is not None and self.wavelength.ndim == 2:
            new = dataclasses.replace(new, wavelength=self.wavelength[index])
        return new

    @property
    def nwave(self) -> int:
        return self.data.shape[1]


def concatenate(parts: list, *, release: bool = False):
    """Join containers of one type along the integration axis, in the order given.

    Per-integration arrays and ``int_times`` are concatenated; ``meta`` is taken from the first part
    with INTSTART/INTEND/NINTS updated; other fields (pixeldq, wavelength maps) from the first part.
    ``release=True`` drops each part's reference to a per-integration array as soon as that field is
    joined, so the extra memory is one field of the output rather than all of it (the parts must not
    be used afterwards).

    Parameters
    ----------
    parts : list of RampData, RateData or SpectraData
        Containers of one type with equal per-integration shapes, in time order.
    release : bool
        Free each part's per-integration arrays as they are joined (the parts are unusable afterwards).

    Returns
    -------
    RampData, RateData or SpectraData
        One container (the type of the parts) holding every integration.

    Raises
    ------
    ShapeError
        No parts, or parts that differ in type or in per-integration shape.
    """
    if not parts:
        raise ShapeError("concatenate() needs at least one product")
    cls = type(parts[0])
    if any(type(p) is not cls for p in parts):
        raise ShapeError("concatenate() got products of different types: "
                         + ", ".join(type(p).__name__ for p in parts))
    first = parts[0]
    for p in parts[1:]:
        if p.data.shape[1:] != first.data.shape[1:]:
            raise ShapeError(f"cannot concatenate {cls.__name__} with per-integration shapes "
                             f"{first.data.shape[1:]} and {p.data.shape[1:]}")
    nints = sum(p.nints for p in parts)
    kwargs = {}
    for f in dataclasses.fields(first):
        v = getattr(first, f.name)
        if f.name in cls._per_int and v is not None:
            vals = [getattr(p, f.name) for p in parts]
            v = None if any(x is None for x in vals) else np.concatenate(vals)
            if release:
                del vals
                for p in parts:
                    setattr(p, f.name, None)
        elif isinstance(v, IntTimes):
            ts = [p.int_times for p in parts]
            v = None if any(t is None for t in ts) else IntTimes.concatenate(ts)
        elif f.name == "aux":
            keys = set.intersection(*(set(p.aux) for p in parts)) if parts else set()
            v = {k: np.concatenate([p.aux[k] for p in parts]) for k in sorted(keys)}
        elif f.name == "wavelength" and v is not None and v.ndim == 2 and cls is SpectraData:
            v = np.concatenate([p.wavelength for p in parts])
        kwargs[f.name] = v
    meta = dict(first.meta)
    # NINTS is the whole exposure's count (segments carry it unchanged), never less than what we hold
    meta["NINTS"] = max(int(first.meta.get("NINTS", 0)), nints)
    if "INTSTART" in first.meta:
        meta["INTSTART"] = min(p.meta.get("INTSTART", first.meta["INTSTART"]) for p in parts)
        meta["INTEND"] = meta["INTSTART"] + nints - 1
    kwargs["meta"] = meta
    return cls(**kwargs)


@dataclass
class LightCurves:
    """White-light and spectroscopic light curves (Stage 3 output, Stage 4 input).

    Parameters
    ----------
    time : float64 ``(nints,)``, mid-integration BMJD_TDB (days, BJD_TDB - 2400000.5).
    flux : float64 ``(nchan, nints)``, spectroscopic light curves (any consistent unit; usually
        normalised to the out-of-transit median).
    err : float64 ``(nchan, nints)``, 1-sigma.
    wavelength, wavelength_lower, wavelength_upper : float64 ``(nchan,)``, channel centres and edges (um).
    white_flux, white_err : float64 ``(nints,)``, the white light curve (None if absent).
    mask : bool ``(nints,)``, True where an integration is to be excluded from fits.
    regressors : dict name -> float64 ``(nints,)`` (e.g. ``trace_x``, ``trace_width``).
    meta : dict (target, source, band labels, provenance ...).

    Raises
    ------
    ShapeError
        When the arrays disagree in dimensionality or shape.
    """

    time: np.ndarray
    flux: np.ndarray | None = None
    err: np.ndarray | None = None
    wavelength: np.ndarray | None = None
    wavelength_lower: np.ndarray | None = None
    wavelength_upper: np.ndarray | None = None
    white_flux: np.ndarray | None = None
    white_err: np.ndarray | None = None
    mask: np.ndarray | None = None
    regressors: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.time = _as_array("time", self.time, np.float64)
        _check_ndim("LightCurves", "time", self.time, 1, "(integration,)")
        n = self.time.size
        if self.flux is None:
            self.flux = np.zeros((0, n))
        self.flux = _as_array("flux", self.flux, np.float64)
        _check_ndim("LightCurves", "flux", self.flux, 2, "(channel, integration)")
        if self.flux.shape[1] != n:
            raise ShapeError(f"LightCurves.flux has shape {self.flux.shape}, expected (nchan, {n})")
        nchan = self.flux.shape[0]
        if self.err is None:
            self.err = np.full(self.flux.shape, np.nan)
        self.err = _as_array("err", self.err, np.float64)
        _check_shape("LightCurves", "err", self.err, self.flux.shape)
        for name in ("wavelength", "wavelength_lower", "wavelength_upper"):
            v = getattr(self, name)
            v = np.full(nchan, np.nan) if v is None else _as_array(name, v, np.float64)
            _check_shape("LightCurves", name, v, (nchan,))
            setattr(self, name, v)
        for name in ("white_flux", "white_err"):
            v = getattr(self, name)
            if v is not None:
                v = _as_array(name, v, np.float64)
                _check_shape("LightCurves", name, v, (n,))
                setattr(self, name, v)
        self.mask = np.zeros(n, bool) if self.mask is None else np.asarray(self.mask, bool)
        _check_shape("LightCurves", "mask", self.mask, (n,))
        regs = {}
        for k, v in dict(self.regressors).items():
            v = np.asarray(v, np.float64)
            _check_shape("LightCurves", f"regressors[{k!r}]", v, (n,))
            regs[k] = v
        self.regressors = regs
        self.meta = dict(self.meta)

    @property
    def nints(self) -> int:
        return self.time.size

    @property
    def nchan(self) -> int:
        return self.flux.shape[0]

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)
