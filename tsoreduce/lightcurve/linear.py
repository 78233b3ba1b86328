"""Analytic marginalisation of the linear baseline and the error multiplier of one light curve.

The full model is ``F(t) = g(t; theta) * f0 * (1 + sum_k c_k (t - t_ref)^k)`` with ``g`` = astrophysics x
settling ramp x decorrelation (:mod:`.models`, :mod:`.systematics`).  Given the nonlinear parameters
``theta`` it is exactly linear in ``beta = f0 (1, c_1, ..., c_N)`` (basis ``g``, ``g (t - t_ref)^k``),
and the per-point sigma is ``s * err`` with the error multiplier ``s``.  With flat priors on f0 and
the free ``c_k`` (their declared uniform priors; the bounds are assumed many sigma away) and on ``s``,
both integrals are Gaussian / Gamma integrals (the standard linear-marginalisation result:
Bretthorst 1988, "Bayesian Spectrum Analysis and Parameter Estimation", ch. 3, amplitudes and the
noise scale integrated out; Gregory 2005, "Bayesian Logical Data Analysis for the Physical Sciences",
ch. 10, linear model fitting with Gaussian errors; Sivia & Skilling 2006, "Data Analysis: A Bayesian
Tutorial", ch. 3, nuisance parameters):

    ln L(theta) = -sum ln err - n/2 ln 2pi + m/2 ln 2pi - 1/2 ln|B^T W B|
                  + ln[ Gamma(k) / 2 ] - k ln(chi2_min / 2) - ln(s_hi - s_lo)      (s marginalised, k = (n-m-1)/2)
                  or  -chi2_min / (2 s^2) - (n - m) ln s - ...                      (s sampled or fixed)
                  - ln W_f0 - sum_k ln W_ck - N ln|beta_0|                          (the flat priors in (f0, c))

with ``B`` the ``(nt, m)`` design matrix, ``W = diag(1/err^2)``, ``chi2_min`` the weighted chi^2 of
the best ``beta``, ``W_x`` the prior widths; the last term is the Jacobian of (f0, c) -> beta
evaluated at the best beta_0 (exact to the relative width of f0, ~1e-4).  The sampler then explores
only ``theta``; per posterior sample ``s`` and ``beta`` are drawn from their conditionals
(``1/s^2 ~ Gamma(k, rate chi2_min/2)``, ``beta ~ N(beta_hat, s^2 (B^T W B)^-1)``) so that every
parameter keeps a posterior.
"""

from __future__ import annotations

import logging
import math

import numpy as np
from scipy.special import gammaln

from ..errors import ConfigError

__all__ = ["LinearBaseline", "marginal_plan"]

log = logging.getLogger(__name__)

_HALF_LOG2PI = 0.5 * math.log(2.0 * math.pi)


def marginal_plan(model, specs: dict):
    """Which parameters of one light curve can be marginalised analytically, and why not otherwise.

    Parameters
    ----------
    model : LightCurveModel
        The light curve's model (parameter names in ``model.names``).
    specs : dict
        Model parameter name -> :class:`~tsoreduce.lightcurve.parameters.ParamSpec`.

    Returns
    -------
    linear : list of str
        ``f0`` and the free polynomial coefficients (empty when the baseline cannot be marginalised).
    noise : bool
        Whether ``err_mult`` is marginalised too (free, uniform prior).
    reason : str
        Why nothing (or not the noise) is marginalised ('' when everything applies).
    """
    f0 = specs.get("f0")
    if model.noise == "jitter":
        return [], False, "jitter noise depends on f0 (not a linear model); use noise: err_mult"
    if f0 is None or f0.prior != "uniform":
        return [], False, "f0 needs a uniform prior to be marginalised"
    polys = [n for n in model.names if n.startswith("poly")]
    bad = [n for n in polys if specs[n].prior not in ("uniform", "fixed")]
    if bad:
        return [], False, f"{', '.join(bad)}: only uniform or fixed polynomial priors are marginalised"
    linear = ["f0"] + [n for n in polys if specs[n].prior == "uniform"]
    noise = model.noise == "err_mult" and specs["err_mult"].prior == "uniform"
    reason = "" if noise or model.noise == "none" else "err_mult is sampled (prior not uniform)"
    return linear, noise, reason


class LinearBaseline:
    """Marginal log-likelihood over the linear baseline (and error multiplier) of one light curve.

    Parameters
    ----------
    model : LightCurveModel
        Model on the fitted times ``(nt,)``.
    specs : dict
        Model parameter name -> ParamSpec (priors and fixed values).
    flux, err : array_like, shape (nt,)
        Fitted flux and 1-sigma errors (flux units).
    linear : list of str
        Marginalised baseline parameters (``f0`` first, then free ``polyK``), from :func:`marginal_plan`.
    noise : bool
        Marginalise ``err_mult`` as well.

    Raises
    ------
    ConfigError
        ``linear`` does not start with ``f0``.

    Notes
    -----
    Method and formulas: module docstring (Bretthorst 1988 ch. 3; Gregory 2005 ch. 10).
    """

    def __init__(self, model, specs: dict, flux, err, linear, noise):
        if not linear or linear[0] != "f0":
            raise ConfigError("stage4.fitter.marginalise: the linear baseline must start with f0")
        self.model = model
        self.flux = np.asarray(flux, float)
        self.err = np.asarray(err, float)
        self.ivar = 1.0 / self.err ** 2
        self.linear, self.noise = list(linear), bool(noise)
        ix = model.index
        self.lin_cols = [ix[n] for n in self.linear]
        self.noise_col = ix["err_mult"] if model.noise == "err_mult" else None
        powers = model.systematics._powers
        polys = [n for n in model.names if n.startswith("poly")]
        # fixed polynomial terms belong to the f0 basis function: f0 (1 + sum_fixed c t^k) + sum_free beta_k t^k
        p0 = np.ones(model.time.size)
        for n in polys:
            if n not in self.linear:
                p0 = p0 + specs[n].value * powers[int(n[4:]) - 1]
        self.basis = np.vstack([p0] + [powers[int(n[4:]) - 1] for n in self.linear[1:]])
        self.n, self.m = self.flux.size, len(self.linear)
        self.npoly = self.m - 1
        self.k = 0.5 * (self.n - self.m - 1)
        const = -float(np.log(self.err).sum()) - (self.n - self.m) * _HALF_LOG2PI
        for n in self.linear:
            const -= math.log(specs[n].upper() - specs[n].lower())
        if self.noise:
            s = specs["err_mult"]
            const += gammaln(self.k) - math.log(2.0) - math.log(s.upper() - s.lower())
        self.const = const
        self.set_reference({n: specs[n].value for n in self.linear})

    def set_reference(self, values: dict):
        """Reference baseline (the least-squares f0 and polynomial, name -> value) about which the
        normal equations are summed (precision only: the result does not depend on it)."""
        f0 = float(values["f0"])
        self.beta_ref = np.array([f0] + [f0 * float(values[n]) for n in self.linear[1:]])

    def solve(self, P):
        """Best baseline per row of ``P`` ``(nw, nparams)``: ``(chi2_min (nw,), beta (nw, m), chol (nw, m, m))``."""
        return self.model.linear_solve(P, self.flux, self.ivar, self.basis, self.beta_ref)

    def loglike(self, P) -> np.ndarray:
        """Marginal log-likelihood ``(nw,)`` of parameter matrix ``P`` ``(nw, nparams)``.

        The columns of the marginalised parameters are not read.  Includes the flat priors of the
        marginalised parameters (normalised over their bounds); -inf where the normal matrix is singular.
        """
        P = np.atleast_2d(np.asarray(P, float))
        chi2, beta, chol = self.solve(P)
        with np.errstate(divide="ignore", invalid="ignore"):
            logdet = 2.0 * np.sum(np.log(np.diagonal(chol, axis1=1, axis2=2)), axis=1)
            out = self.const - 0.5 * logdet - self.npoly * np.log(np.abs(beta[:, 0]))
            if self.noise:
                out = out - self.k * np.log(0.5 * chi2)
            else:
                s = P[:, self.noise_col] if self.noise_col is not None else np.ones(P.shape[0])
                out = out - 0.5 * chi2 / s ** 2 - (self.n - self.m) * np.log(s)
        out[~np.isfinite(out)] = -np.inf
        return out

    def draw(self, P, rng, chunk=256) -> np.ndarray:
        """``P`` ``(ns, nparams)`` with the marginalised columns drawn from their conditional posterior.

        Per row: ``1/s^2 ~ Gamma(k, rate chi2_min / 2)`` (when the error multiplier is marginalised),
        then ``beta ~ N(beta_hat, s^2 (B^T W B)^-1)``, f0 = beta_0, c_k = beta_k / beta_0.
        Evaluated in chunks of ``chunk`` rows (the model's work arrays are ``(rows, nt)``).
        """
        P = np.array(P, float, copy=True, ndmin=2)
        for a in range(0, P.shape[0], chunk):
            Q = P[a:a + chunk]
            chi2, beta, chol = self.solve(Q)
            if self.noise:
                s = 1.0 / np.sqrt(rng.gamma(self.k, 2.0 / chi2))
                Q[:, self.noise_col] = s
            else:
                s = Q[:, self.noise_col] if self.noise_col is not None else np.ones(Q.shape[0])
            z = rng.standard_normal((Q.shape[0], self.m))
            # cov = s^2 (L L^T)^-1: x = L^-T z has covariance (L L^T)^-1
            x = np.linalg.solve(np.transpose(chol, (0, 2, 1)), z[:, :, None])[:, :, 0]
            b = beta + s[:, None] * x
            Q[:, self.lin_cols[0]] = b[:, 0]
            for j, c in enumerate(self.lin_cols[1:], start=1):
                Q[:, c] = b[:, j] / b[:, 0]
        return P

    @property
    def names(self) -> list:
        """The marginalised parameter names (model-local)."""
        return self.linear + (["err_mult"] if self.noise else [])
