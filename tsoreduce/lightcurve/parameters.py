"""Fit parameters: declaration, prior validation and the vectorised log-prior.

A parameter is declared in the ``stage4.parameters`` mapping of a YAML run as::

    rp_rs: {value: 0.145, prior: uniform, bounds: [0.05, 0.3]}
    t0:    {value: 59963.97, prior: normal, sigma: 0.01}          # mean defaults to value
    a_rs:  {value: 18.0, prior: uniform, bounds: [10, 30], shared: true}
    per:   {value: 5.72148926, prior: fixed}
    rp_rs: {value: 0.145, prior: uniform, bounds: [0.05, 0.3], scope: per_band}   # joint fits
    jitter_ppm: {value: 100, prior: loguniform, bounds: [1, 1.0e4]}

Prior types (the vocabulary of exoUPRF / Eureka! S5, Bell et al. 2022): ``fixed``, ``uniform``
(bounds required), ``loguniform`` (alias ``log-uniform``; 0 < lower < upper), ``normal`` (``sigma`` > 0, ``mean`` defaults to
``value``, optional ``bounds`` truncate it).  ``shared: true`` means: fitted on the white light curve,
then held fixed at its white-light posterior median in every spectroscopic channel (Eureka!
``white_fixed``); the orbit (t0, per, a_rs, inc, ecc, w) is shared by default.  ``scope:`` applies
to joint fits of several visits (:mod:`.joint`): ``shared`` (one value), ``per_visit`` or ``per_band``.

Any malformed declaration raises :class:`~tsoreduce.errors.ConfigError` naming the parameter.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import numpy as np

from ..errors import ConfigError

__all__ = ["PRIOR_TYPES", "ParamSpec", "ParameterSet", "parse_parameter", "ORBIT_PARAMS"]

PRIOR_TYPES = ("fixed", "uniform", "loguniform", "normal")
ORBIT_PARAMS = ("t0", "per", "a_rs", "inc", "ecc", "w")
_ALLOWED_KEYS = {"value", "prior", "bounds", "sigma", "mean", "shared", "scope"}
#: joint fits over several visits: one value for all, one per visit, one per wavelength band
SCOPES = ("shared", "per_visit", "per_band")


@dataclass
class ParamSpec:
    """One parameter: starting value, prior and whether it is shared across channels.

    Parameters
    ----------
    name : str
        Parameter name.
    value : float
        Starting (or fixed) value.
    prior : str
        'fixed', 'uniform', 'loguniform' or 'normal'.
    bounds : tuple of float or None
        (lower, upper) support.
    sigma, mean : float or None
        Normal prior width and mean.
    shared : bool
        Fitted on the white light curve and fixed in the channels.
    scope : str or None
        Joint fits: 'shared', 'per_visit' or 'per_band' (None: the parameter's default).
    """

    name: str
    value: float
    prior: str = "fixed"
    bounds: tuple | None = None
    sigma: float | None = None
    mean: float | None = None
    shared: bool = False
    scope: str | None = None  # joint fits only (None: the default scope of the parameter)

    @property
    def free(self) -> bool:
        return self.prior != "fixed"

    def lower(self) -> float:
        if self.bounds is not None:
            return float(self.bounds[0])
        return -np.inf

    def upper(self) -> float:
        if self.bounds is not None:
            return float(self.bounds[1])
        return np.inf

    def fixed_at(self, value: float) -> "ParamSpec":
        """A copy held fixed at ``value`` (used for shared parameters in channel fits)."""
        return ParamSpec(self.name, float(value), "fixed", self.bounds, None, None, self.shared, self.scope)

    def with_value(self, value: float) -> "ParamSpec":
        """A copy whose starting value is ``value`` (clipped into the prior bounds)."""
        new = copy.copy(self)
        v = float(value)
        if self.bounds is not None:
            lo, hi = self.bounds
            if not (lo < v < hi):
                v = float(np.clip(v, lo + 1e-9 * (hi - lo), hi - 1e-9 * (hi - lo)))
        new.value = v
        return new


def parse_parameter(name: str, decl, *, default_shared: bool = False) -> ParamSpec:
    """Validate one YAML parameter declaration and return a :class:`ParamSpec`.

    Parameters
    ----------
    name : str
        Parameter name.
    decl : float or dict
        A number (shorthand for ``{value: x, prior: fixed}``) or a mapping with keys value, prior, bounds,
        sigma, mean, shared, scope.
    default_shared : bool
        ``shared`` when not declared.

    Returns
    -------
    ParamSpec

    Raises
    ------
    ConfigError
        Unknown key, unknown prior type or scope, missing/invalid bounds or sigma, value outside bounds.
    """
    where = f"stage4.parameters.{name}"
    if isinstance(decl, bool):
        raise ConfigError(f"{where}: expected a number or a mapping, got a boolean")
    if isinstance(decl, (int, float)):
        decl = {"value": float(decl), "prior": "fixed"}
    if not isinstance(decl, dict):
        raise ConfigError(f"{where}: expected a number or a mapping with keys "
                          f"{sorted(_ALLOWED_KEYS)}, got {type(decl).__name__}")
    unknown = set(decl) - _ALLOWED_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(_ALLOWED_KEYS)}")
    if "value" not in decl:
        raise ConfigError(f"{where}: 'value' (the starting value) is required")
    value = _number(where + ".value", decl["value"])
    prior = decl.get("prior", "fixed")
    prior = {"log-uniform": "loguniform", "log_uniform": "loguniform"}.get(prior, prior)
    if prior not in PRIOR_TYPES:
        raise ConfigError(f"{where}.prior: unknown prior type {prior!r}; allowed: {', '.join(PRIOR_TYPES)}")
    shared = decl.get("shared", default_shared)
    if not isinstance(shared, bool):
        raise ConfigError(f"{where}.shared: expected true/false, got {shared!r}")
    scope = decl.get("scope")
    if scope is not None and scope not in SCOPES:
        raise ConfigError(f"{where}.scope: {scope!r} is not one of {', '.join(SCOPES)}")
    bounds = decl.get("bounds")
    if bounds is not None:
        if not isinstance(bounds, (list, tuple)) or len(bounds) != 2:
            raise ConfigError(f"{where}.bounds: expected [lower, upper], got {bounds!r}")
        lo = _number(where + ".bounds[0]", bounds[0])
        hi = _number(where + ".bounds[1]", bounds[1])
        if not lo < hi:
            raise ConfigError(f"{where}.bounds: lower {lo} must be below upper {hi}")
        bounds = (lo, hi)
    sigma = decl.get("sigma")
    mean = decl.get("mean")
    if prior in ("uniform", "loguniform"):
        if bounds is None:
            raise ConfigError(f"{where}: prior {prior!r} needs bounds: [lower, upper]")
        if not (math.isfinite(bounds[0]) and math.isfinite(bounds[1])):
            raise ConfigError(f"{where}.bounds: a {prior} prior needs finite bounds, got {bounds}")
        if prior == "loguniform" and bounds[0] <= 0:
            raise ConfigError(f"{where}.bounds: a loguniform prior needs 0 < lower, got {bounds}")
        if sigma is not None or mean is not None:
            raise ConfigError(f"{where}: sigma/mean only apply to a normal prior, not {prior!r}")
    elif prior == "normal":
        if sigma is None:
            raise ConfigError(f"{where}: prior 'normal' needs sigma")
        sigma = _number(where + ".sigma", sigma)
        if not sigma > 0:
            raise ConfigError(f"{where}.sigma: must be > 0, got {sigma}")
        mean = value if mean is None else _number(where + ".mean", mean)
    else:  # fixed
        if sigma is not None or mean is not None:
            raise ConfigError(f"{where}: a fixed parameter takes no sigma/mean")
    if prior != "fixed" and bounds is not None and not (bounds[0] <= value <= bounds[1]):
        raise ConfigError(f"{where}.value: {value} is outside bounds {list(bounds)}")
    if prior != "fixed" and bounds is not None and value in bounds:
        # emcee walkers need a start strictly inside the support
        value = float(np.clip(value, bounds[0] + 1e-6 * (bounds[1] - bounds[0]),
                              bounds[1] - 1e-6 * (bounds[1] - bounds[0])))
    return ParamSpec(name, value, prior, bounds, sigma, mean, shared, scope)


def _number(where, v) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        # YAML reads 1e-3 (no dot) as a string: accept numeric strings explicitly
        if isinstance(v, str):
            try:
                return float(v)
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected a number, got {v!r}")
    v = float(v)
    if math.isnan(v):
        raise ConfigError(f"{where}: NaN is not allowed")
    return v


@dataclass
class ParameterSet:
    """An ordered set of :class:`ParamSpec` with the free/fixed bookkeeping of a fit.

    ``names`` is the full ordered list (the model's parameter vector), ``free_names`` the subset
    sampled.  :meth:`expand` maps free vectors ``(nw, nfree)`` to full vectors ``(nw, nparams)``;
    :meth:`log_prior` is vectorised over walkers.

    Parameters
    ----------
    specs : dict
        Name -> ParamSpec, in model order.
    """

    specs: dict = field(default_factory=dict)

    def __post_init__(self):
        self._index()

    def _index(self):
        self.names = list(self.specs)
        self.free_names = [n for n in self.names if self.specs[n].free]
        self.free_index = np.array([self.names.index(n) for n in self.free_names], dtype=int)
        self.base = np.array([self.specs[n].value for n in self.names], float)
        fs = [self.specs[n] for n in self.free_names]
        self._lo = np.array([s.lower() for s in fs], float)
        self._hi = np.array([s.upper() for s in fs], float)
        self._kind = [s.prior for s in fs]
        self._uni = np.array([k == "uniform" for k in self._kind], bool)
        self._log = np.array([k == "loguniform" for k in self._kind], bool)
        self._nor = np.array([k == "normal" for k in self._kind], bool)
        self._mu = np.array([s.mean if s.mean is not None else 0.0 for s in fs], float)
        self._sig = np.array([s.sigma if s.sigma is not None else 1.0 for s in fs], float)
        const = 0.0
        for s in fs:
            if s.prior == "uniform":
                const -= math.log(s.upper() - s.lower())
            elif s.prior == "loguniform":
                const -= math.log(math.log(s.upper() / s.lower()))
            elif s.prior == "normal":
                const -= math.log(s.sigma * math.sqrt(2 * math.pi))
        self._const = const

    @property
    def nfree(self) -> int:
        return len(self.free_names)

    def __contains__(self, name):
        return name in self.specs

    def __getitem__(self, name) -> ParamSpec:
        return self.specs[name]

    def value(self, name) -> float:
        return self.specs[name].value

    def start(self) -> np.ndarray:
        """Starting free vector ``(nfree,)``."""
        return self.base[self.free_index].copy()

    def bounds(self):
        """(lower, upper) arrays ``(nfree,)``, +-inf where unbounded."""
        return self._lo.copy(), self._hi.copy()

    def expand(self, theta) -> np.ndarray:
        """Free vector(s) ``(nfree,)`` or ``(nw, nfree)`` -> full vector(s) ``(nparams,)`` / ``(nw, nparams)``."""
        theta = np.asarray(theta, float)
        if theta.ndim == 1:
            full = self.base.copy()
            full[self.free_index] = theta
            return full
        full = np.repeat(self.base[None, :], theta.shape[0], axis=0)
        full[:, self.free_index] = theta
        return full

    def log_prior(self, theta) -> np.ndarray:
        """Log prior of free vectors ``(nw, nfree)`` -> ``(nw,)``; -inf outside the support."""
        theta = np.atleast_2d(np.asarray(theta, float))
        inside = np.all((theta > self._lo) & (theta < self._hi), axis=1)
        lp = np.full(theta.shape[0], self._const)
        if self._log.any():
            with np.errstate(divide="ignore", invalid="ignore"):
                lp -= np.sum(np.log(np.where(self._log, np.abs(theta), 1.0)), axis=1)
        if self._nor.any():
            z = (theta - self._mu) / self._sig
            lp -= 0.5 * np.sum(np.where(self._nor, z * z, 0.0), axis=1)
        return np.where(inside, lp, -np.inf)

    def replace(self, **specs) -> "ParameterSet":
        new = dict(self.specs)
        new.update(specs)
        return ParameterSet(new)

    def as_dict(self) -> dict:
        """The starting values of every parameter, name -> value."""
        return {n: self.specs[n].value for n in self.names}
