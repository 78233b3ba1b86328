"""Multiplicative instrument systematics for MIRI light curves, vectorised over walkers.

S(t) = f0 * R(t) * P(t) * D(t) with, each switchable:

* R, exponential settling ramp anchored at the start of the exposure (MIRI detector settling;
  Eureka! ExpRamp, Bell et al. 2022 / SPARTA):  R = 1 + A1 exp(-(t - t_start)/tau1) [+ A2 exp(-(t - t_start)/tau2)]
  (``ramp: single`` or ``double``; tau in days).
* P, polynomial in time about the mean time of the fitted points:  P = 1 + sum_k c_k (t - t_ref)^k
  (parameters ``poly1`` ... ``polyN`` in relative flux per day^k).
* D, linear decorrelation against standardised regressors (trace position / width from Stage 3):
  D = 1 + sum_j d_j (r_j - mean r_j) / std r_j  (parameters ``decorr_<regressor>``).

Parameter vectors may be ``(nparams,)`` or ``(nw, nparams)``; results are ``(nt,)`` or ``(nw, nt)``.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError, ShapeError

__all__ = ["Systematics", "RAMP_KINDS"]

RAMP_KINDS = ("none", "single", "double")


class Systematics:
    """Systematics model for a fixed set of times.

    Parameters
    ----------
    time : float64 ``(nt,)`` BMJD_TDB of the fitted points (days).
    ramp : 'none' | 'single' | 'double'.
    poly_order : int >= 0, order of the polynomial in time (0: none beyond f0).
    regressors : dict name -> float64 ``(nt,)`` (standardised here; a constant regressor raises).
    t_start : float, the ramp's time origin (start of the exposure; default ``time[0]``).
    t_ref : float, the polynomial's time origin (default mean of ``time``).
    """

    def __init__(self, time, *, ramp="single", poly_order=1, regressors=None, t_start=None, t_ref=None):
        self.time = np.asarray(time, float)
        if ramp not in RAMP_KINDS:
            raise ConfigError(f"stage4.systematics.ramp: {ramp!r} is not one of {RAMP_KINDS}")
        self.ramp = ramp
        self.poly_order = int(poly_order)
        self.t_start = float(self.time[0] if t_start is None else t_start)
        self.t_ref = float(self.time.mean() if t_ref is None else t_ref)
        self.dt_start = self.time - self.t_start
        self.dt_ref = self.time - self.t_ref
        self._sorted = bool(np.all(np.diff(self.dt_start) >= 0))
        self._ramp_grid()
        # (poly_order, nt) even at order 0, so subset() can index the time axis
        self._powers = np.array([self.dt_ref ** k for k in range(1, self.poly_order + 1)]).reshape(
            self.poly_order, self.time.size)
        self.regressor_names = []
        zs = []
        for name, r in (regressors or {}).items():
            r = np.asarray(r, float)
            if r.shape != self.time.shape:
                raise ShapeError(f"regressor {name!r} has shape {r.shape}, expected {self.time.shape}")
            sd = np.std(r)
            if not np.isfinite(sd) or sd == 0:
                raise ShapeError(f"regressor {name!r} is constant or non-finite over the fitted points")
            zs.append((r - r.mean()) / sd)
            self.regressor_names.append(name)
        self._z = np.array(zs) if zs else np.zeros((0, self.time.size))

    def _ramp_grid(self):
        """Integer cadence index k and offset eps with dt = k step + eps (for the fused kernel's ramp)."""
        d = np.diff(self.dt_start)
        d = d[d > 0]
        step = float(np.median(d)) if d.size else 0.0
        if step > 0:
            k = np.round(self.dt_start / step)
            eps = self.dt_start - k * step
            # the Taylor term needs |eps/tau| small for every allowed tau (>= ~1e-4 d)
            if np.max(np.abs(eps)) < 1e-6 and np.all(np.diff(k) >= 0):
                self._rk, self._reps, self._rstep = k.astype(np.int64), eps, step
                return
        self._rk, self._reps, self._rstep = np.zeros(self.time.size, np.int64), np.zeros(self.time.size), -1.0

    @property
    def names(self) -> list:
        out = ["f0"]
        if self.ramp in ("single", "double"):
            out += ["ramp_amp1", "ramp_tau1"]
        if self.ramp == "double":
            out += ["ramp_amp2", "ramp_tau2"]
        out += [f"poly{k}" for k in range(1, self.poly_order + 1)]
        out += [f"decorr_{n}" for n in self.regressor_names]
        return out

    def subset(self, keep) -> "Systematics":
        """The same model restricted to points ``keep`` (bool ``(nt,)``), same time origins."""
        new = object.__new__(Systematics)
        new.__dict__.update(self.__dict__)
        new.time = self.time[keep]
        new.dt_start = self.dt_start[keep]
        new.dt_ref = self.dt_ref[keep]
        new._sorted = bool(np.all(np.diff(new.dt_start) >= 0))
        new._ramp_grid()
        new._powers = self._powers[:, keep]
        new._z = self._z[:, keep]
        return new

    def evaluate(self, P, index) -> np.ndarray:
        """S(t) for parameter vector(s) ``P`` (``(nparams,)`` or ``(nw, nparams)``); ``index``: name -> column."""
        P = np.asarray(P, float)
        one = P.ndim == 1
        P2 = P[None, :] if one else P

        def col(name):
            return P2[:, index[name]][:, None]

        s = np.broadcast_to(col("f0"), (P2.shape[0], self.time.size))
        if self.ramp in ("single", "double"):
            r = 1.0 + self._ramp_term(col("ramp_amp1"), col("ramp_tau1"))
            if self.ramp == "double":
                r += self._ramp_term(col("ramp_amp2"), col("ramp_tau2"))
            s = s * r
        if self.poly_order > 0:
            c = np.stack([P2[:, index[f"poly{k}"]] for k in range(1, self.poly_order + 1)], axis=1)
            s = s * (1.0 + c @ self._powers)
        if self.regressor_names:
            d = np.stack([P2[:, index[f"decorr_{n}"]] for n in self.regressor_names], axis=1)
            s = s * (1.0 + d @ self._z)
        s = np.array(s) if not s.flags.writeable else s
        return s[0] if one else s

    def _ramp_term(self, amp, tau):
        """A exp(-(t - t_start)/tau) ``(nw, nt)``, computed only where it exceeds e^-30 (exact to 1e-13)."""
        out = np.zeros((amp.shape[0], self.time.size))
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            tmax = float(np.max(tau)) if np.all(tau > 0) else np.inf
            n = self.time.size if (not self._sorted or not np.isfinite(tmax)) else \
                int(np.searchsorted(self.dt_start, 30.0 * tmax, side="right"))
            x = np.maximum(self.dt_start[None, :n] * (-1.0 / tau), -50.0)
            out[:, :n] = amp * np.exp(x)
        return out
