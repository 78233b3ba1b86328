"""Fitting one light curve: vectorised log-posterior, least squares, emcee, summaries.

Procedure (Eureka! S5 'lsq start then emcee', Bell et al. 2022; SPARTA): scipy ``least_squares``
(trust-region reflective, bounds from the priors, normal priors as extra residuals) with the noise
parameter held at its start value; covariance from the Jacobian scaled by the reduced chi^2; optional
sigma-clipping of outlying integrations on the best-fit residuals and a re-fit; then emcee with the
log-posterior vectorised over walkers (``vectorize=True``), walkers started in a small ball around the
least-squares solution.  Convergence: integrated autocorrelation time (emcee ``autocorr.integrated_time``,
Goodman & Weare 2010; Foreman-Mackey et al. 2013).  Summaries are posterior medians and the distances
to the 16th / 84th percentiles.
"""

from __future__ import annotations

import logging
import time as _time
from dataclasses import dataclass, field

import numpy as np
from scipy import optimize
from threadpoolctl import threadpool_limits

from .._util import robust_std
from ..errors import ConfigError
from ..noise import residual_noise
from .models import LightCurveModel
from .parameters import ParameterSet
from .sampling import chain_tau, emcee_moves, run_emcee, sample_until_converged  # noqa: F401 (re-exported)

__all__ = ["LogPosterior", "log_posterior", "FitResult", "fit_lsq", "run_emcee", "fit_lightcurve", "NOISE_PARAMS",
           "bound_flags", "BOUND_TOL", "chain_tau", "sample_until_converged", "emcee_moves",
           "scaled_jacobian"]

log = logging.getLogger(__name__)

NOISE_PARAMS = ("err_mult", "jitter_ppm")
_LOG2PI = np.log(2.0 * np.pi)


def log_posterior(params: ParameterSet, theta, loglike) -> np.ndarray:
    """Vectorised log-posterior of free vectors ``theta`` ``(nw, nfree)`` -> ``(nw,)``.

    ``loglike(P)`` is evaluated only on the full parameter matrix of walkers inside the prior support;
    the rest, and any non-finite sum, are -inf.  Shared by :class:`LogPosterior` and the joint fit.

    Parameters
    ----------
    params : ParameterSet
        Priors and the free -> full mapping.
    theta : array_like, shape (nw, nfree)
        Free parameter vectors, one row per walker.
    loglike : callable
        ``loglike(P)`` with ``P`` ``(nw_inside, nparams)`` -> ``(nw_inside,)``.

    Returns
    -------
    numpy.ndarray, shape (nw,)
        Log prior + log likelihood; -inf outside the prior support or where non-finite.
    """
    theta = np.atleast_2d(np.asarray(theta, float))
    lp = params.log_prior(theta)
    out = np.full(theta.shape[0], -np.inf)
    ok = np.isfinite(lp)
    if ok.any():
        out[ok] = lp[ok] + loglike(params.expand(theta[ok]))
    out[~np.isfinite(out)] = -np.inf
    return out


class LogPosterior:
    """log p(theta | data) for free vectors ``theta`` ``(nw, nfree)`` -> ``(nw,)`` (emcee ``vectorize=True``).

    Gaussian likelihood with per-point sigma from :meth:`LightCurveModel.sigma` (error multiplier or
    jitter added in quadrature).  ``single(theta)`` is the naive one-walker path, kept as the
    benchmark baseline.

    Parameters
    ----------
    model : LightCurveModel
        Model on the fitted times ``(nt,)``.
    params : ParameterSet
        Priors of every model parameter (model order).
    flux, err : array_like, shape (nt,)
        Fitted flux and its 1-sigma errors (flux units).
    """

    def __init__(self, model: LightCurveModel, params: ParameterSet, flux, err):
        self.model, self.params = model, params
        self.flux = np.asarray(flux, float)
        self.err = np.asarray(err, float)
        self.n = self.flux.size
        self.ncalls = 0

    def __call__(self, theta) -> np.ndarray:
        theta = np.atleast_2d(np.asarray(theta, float))
        self.ncalls += theta.shape[0]
        return log_posterior(self.params, theta, lambda P: self.model.loglike(P, self.flux, self.err))

    def single(self, theta) -> float:
        """Non-vectorised log-posterior of one free vector ``(nfree,)`` (benchmark baseline)."""
        theta = np.asarray(theta, float)
        lp = float(self.params.log_prior(theta[None, :])[0])
        if not np.isfinite(lp):
            return -np.inf
        P = self.params.expand(theta)
        m = self.model.evaluate(P)
        sig = self.model.sigma(P, self.err)
        r = (self.flux - m) / sig
        val = lp - 0.5 * float(r @ r) - float(np.log(sig).sum()) - 0.5 * self.n * _LOG2PI
        return val if np.isfinite(val) else -np.inf


class MarginalLogPosterior(LogPosterior):
    """Log-posterior of the nonlinear parameters with the linear baseline (and error multiplier)
    integrated out analytically (:class:`~tsoreduce.lightcurve.linear.LinearBaseline`).

    Parameters
    ----------
    model : LightCurveModel
        Model on the fitted times ``(nt,)``.
    params : ParameterSet
        The sampled set: the marginalised parameters are fixed in it (their columns are not read).
    flux, err : array_like, shape (nt,)
        Fitted flux and 1-sigma errors (flux units).
    baseline : LinearBaseline
        The marginalisation (its flat priors are part of its log-likelihood).
    """

    def __init__(self, model, params, flux, err, baseline):
        super().__init__(model, params, flux, err)
        self.baseline = baseline

    def __call__(self, theta) -> np.ndarray:
        theta = np.atleast_2d(np.asarray(theta, float))
        self.ncalls += theta.shape[0]
        return log_posterior(self.params, theta, self.baseline.loglike)


@dataclass
class FitResult:
    """Outcome of fitting one light curve.

    Parameters
    ----------
    label : str
        'white' or 'channel_NN'.
    names : list of str
        All parameter names (model order).
    free : list of str
        The free parameters (every one has a posterior).
    median, err_lower, err_upper : dict
        Name -> posterior median and distances to the 16th / 84th percentiles (0 for fixed parameters).
    fixed : dict
        Name -> bool.
    lsq_values, lsq_errors : dict
        Least-squares solution and covariance errors of the free parameters.
    chain : numpy.ndarray or None
        emcee chain ``(nsteps, nwalkers, nsampled)`` of the sampled parameters (None for method 'lsq').
    log_prob : numpy.ndarray or None
        ``(nsteps, nwalkers)`` log-posterior of the chain.
    samples : numpy.ndarray or None
        Flat post-burn-in posterior samples ``(nsamples, nfree)`` of every free parameter; with
        marginalisation the marginalised parameters are conditional draws on the chain thinned to ~2
        samples per autocorrelation time.
    burn_in : int
        Steps discarded.
    tau : numpy.ndarray or None
        Integrated autocorrelation time (steps) per sampled parameter.
    acceptance : float
        Mean acceptance fraction.
    time, flux, err : numpy.ndarray
        The fitted points ``(nt,)`` (BMJD_TDB d; flux units).
    model, systematics, astro, sigma : numpy.ndarray
        Best-fit (median) curves ``(nt,)`` and the inflated per-point sigma.
    chi2_red : float
        Reduced chi^2 at the median.
    n_logprob : int
        Log-posterior evaluations.
    runtime_s : float
        Wall time of the fit (s).
    method : str
        'lsq' or 'emcee'.
    n_clipped : int
        Integrations rejected by sigma-clipping.
    wavelength, wavelength_lower, wavelength_upper : float
        Band centre and edges (um; NaN when unknown).
    bounds : dict
        Name -> (lower, upper, log-uniform?) prior support of each free parameter (+-inf when open).
    flags : dict
        Name -> '' or ';'-joined 'at_lower_bound' / 'at_upper_bound' / 'err_exceeds_prior' (:func:`bound_flags`).
    noise : dict
        Expected / achieved scatter, their ratios and beta (:func:`tsoreduce.noise.residual_noise`; ``*_ppm``
        keys relative to the fitted f0).
    ess : float
        Effective samples: nwalkers x kept steps / max tau.
    sampled : list of str or None
        The parameters emcee sampled (None: all free ones).
    marginalised : list of str
        Parameters integrated out analytically (:mod:`tsoreduce.lightcurve.linear`).
    """

    label: str
    names: list
    free: list
    median: dict
    err_lower: dict
    err_upper: dict
    fixed: dict
    lsq_values: dict = field(default_factory=dict)
    lsq_errors: dict = field(default_factory=dict)
    chain: np.ndarray | None = None
    log_prob: np.ndarray | None = None
    samples: np.ndarray | None = None
    burn_in: int = 0
    tau: np.ndarray | None = None
    acceptance: float = float("nan")
    time: np.ndarray | None = None
    flux: np.ndarray | None = None
    err: np.ndarray | None = None
    model: np.ndarray | None = None
    systematics: np.ndarray | None = None
    astro: np.ndarray | None = None
    sigma: np.ndarray | None = None
    chi2_red: float = float("nan")
    n_logprob: int = 0
    runtime_s: float = 0.0
    method: str = "emcee"
    n_clipped: int = 0
    wavelength: float = float("nan")
    wavelength_lower: float = float("nan")
    wavelength_upper: float = float("nan")
    bounds: dict = field(default_factory=dict)
    flags: dict = field(default_factory=dict)
    noise: dict = field(default_factory=dict)
    ess: float = float("nan")
    sampled: list | None = None
    marginalised: list = field(default_factory=list)

    def derived_samples(self, name) -> np.ndarray | None:
        """Posterior samples of a free parameter (None when fixed or for an lsq-only fit)."""
        if self.samples is None or name not in self.free:
            return None
        return self.samples[:, self.free.index(name)]

    def table(self):
        """astropy Table: name, median, err_lower, err_upper, fixed (one row per parameter)."""
        from astropy.table import Table

        t = Table()
        t["name"] = list(self.names)
        t["median"] = [self.median[n] for n in self.names]
        t["err_lower"] = [self.err_lower[n] for n in self.names]
        t["err_upper"] = [self.err_upper[n] for n in self.names]
        t["fixed"] = [bool(self.fixed[n]) for n in self.names]
        t["flag"] = [self.flags.get(n, "") for n in self.names]
        t.meta.update({"label": self.label, "method": self.method, "chi2_red": float(self.chi2_red),
                       "acceptance": float(self.acceptance), "burn_in": int(self.burn_in),
                       "n_points": int(0 if self.time is None else self.time.size),
                       "n_clipped": int(self.n_clipped)})
        if self.noise:
            t.meta["noise"] = dict(self.noise)
        t.meta["flag_definitions"] = _FLAG_DOC
        if self.tau is not None:
            t.meta["autocorr_time"] = {n: float(x) for n, x in zip(self.sampled or self.free, self.tau)}
        if self.marginalised:
            t.meta["marginalised"] = list(self.marginalised)
        return t


# ---------------------------------------------------------------------------------- least squares
def scaled_jacobian(fun, lower, upper, h=1e-4):
    """Forward-difference Jacobian of ``fun(u)`` for trf in scaled offsets u = (x - x_start) / scale.

    A fixed step ``h`` in u (1e-6 of a prior's width): scipy's relative steps (``diff_step`` x |u|)
    vanish near u = 0, and its default (~1e-8 max(1, |x|)) is below the float resolution of t0 ~ 6e4 d
    when taken in x.  The step is reversed where it would leave the bounds.

    Parameters
    ----------
    fun : callable
        Residual function ``u (n,) -> (m,)``.
    lower, upper : numpy.ndarray, shape (n,)
        Bounds of u.
    h : float
        Step in u.

    Returns
    -------
    callable
        ``jac(u) -> (m, n)`` for ``scipy.optimize.least_squares``.
    """
    def jac(u, *args):
        r0 = fun(u)
        J = np.empty((r0.size, u.size))
        for j in range(u.size):
            step = h if u[j] + h <= upper[j] else -h
            uj = u.copy()
            uj[j] += step
            J[:, j] = (fun(uj) - r0) / step
        return J

    return jac


def fit_lsq(post: LogPosterior, *, max_nfev=2000, return_cov=False):
    """Least-squares fit of the non-noise free parameters.

    scipy ``least_squares`` (trust-region reflective, Branch et al. 1999) in scaled offsets, normal priors as
    extra residuals; the noise parameter (err_mult / jitter_ppm) is held at its start value and then set so
    that the reduced chi^2 is 1; the covariance (J^T J)^-1 is scaled by the reduced chi^2 accordingly.

    Parameters
    ----------
    post : LogPosterior
        Model, priors and data.
    max_nfev : int
        Evaluation cap of the solver.
    return_cov : bool
        Also return the covariance.

    Returns
    -------
    x : numpy.ndarray, shape (nfree,)
        Best free vector.
    err : numpy.ndarray, shape (nfree,)
        1-sigma errors.
    chi2_red : float
        Reduced chi^2 before the noise parameter is set.
    noise_value : float or None
        The fitted noise parameter.
    cov : numpy.ndarray, shape (nfree, nfree)
        Only with ``return_cov``: covariance (the noise parameter's variance on the diagonal, 0 elsewhere).
    """
    ps, model = post.params, post.model
    x0 = ps.start()
    lo, hi = ps.bounds()
    free = ps.free_names
    fit_idx = np.array([i for i, n in enumerate(free) if n not in NOISE_PARAMS], int)
    noise_idx = [i for i, n in enumerate(free) if n in NOISE_PARAMS]
    specs = [ps[free[i]] for i in fit_idx]
    nor = [(k, s.mean, s.sigma) for k, s in enumerate(specs) if s.prior == "normal"]
    P0 = ps.expand(x0)
    sig0 = model.sigma(P0, post.err)

    xs = x0[fit_idx]
    l, h = lo[fit_idx], hi[fit_idx]
    # typical sizes of each parameter, so that trf steps are well conditioned
    scale = np.where(np.isfinite(h - l), 0.01 * (h - l), np.maximum(np.abs(xs) * 0.01, 1e-6))

    # solved in u = (x - xs) / scale: trf's xtol compares a step with |x|, and with t0 ~ 6e4 d in x it
    # stopped after a few evaluations at (or near) the starting values; its difference steps (~1e-8 |x|)
    # were ~1e-3 d in t0
    def resid(u):
        x = xs + u * scale
        th = x0.copy()
        th[fit_idx] = x
        r = (post.flux - model.evaluate(ps.expand(th))) / sig0
        if nor:
            r = np.concatenate([r, [(x[k] - mu) / sd for k, mu, sd in nor]])
        return r

    ul, uh = (l - xs) / scale, (h - xs) / scale
    sol = optimize.least_squares(resid, np.zeros(xs.size), bounds=(ul, uh), method="trf", max_nfev=max_nfev,
                                 jac=scaled_jacobian(resid, ul, uh))
    sol.x = xs + sol.x * scale
    r = sol.fun[:post.n]
    dof = max(post.n - fit_idx.size, 1)
    chi2_red = float(r @ r / dof)
    J = sol.jac / scale[None, :]
    try:
        cov = np.linalg.inv(J.T @ J)
    except np.linalg.LinAlgError:
        cov = np.linalg.pinv(J.T @ J)
    x = x0.copy()
    x[fit_idx] = sol.x
    err = np.full(x.size, np.nan)
    noise_value = None
    if noise_idx:
        cov = cov * chi2_red
        k = noise_idx[0]
        name = free[k]
        if name == "err_mult":
            noise_value = float(x0[k] * np.sqrt(chi2_red))
        else:
            noise_value = _solve_jitter(post, ps.expand(x), dof)
        x[k] = np.clip(noise_value, lo[k] + 1e-9 * abs(lo[k]) if np.isfinite(lo[k]) else -np.inf,
                       hi[k] - 1e-9 * abs(hi[k]) if np.isfinite(hi[k]) else np.inf)
        err[k] = abs(x[k]) / np.sqrt(2.0 * dof)
    err[fit_idx] = np.sqrt(np.clip(np.diag(cov), 0, None))
    if not sol.success:
        log.warning("least-squares did not converge: %s", sol.message)
    if not return_cov:
        return x, err, chi2_red, noise_value
    full = np.diag(np.where(np.isfinite(err), err, 0.0) ** 2)
    full[np.ix_(fit_idx, fit_idx)] = cov
    return x, err, chi2_red, noise_value, full


def _solve_jitter(post, P, dof):
    """Jitter (ppm) making the reduced chi^2 equal to 1 (0 if the errors already suffice)."""
    m = post.model.evaluate(P)
    r2 = (post.flux - m) ** 2
    f0 = P[post.model.index["f0"]]

    def g(j_ppm):
        return float(np.sum(r2 / (post.err ** 2 + (1e-6 * j_ppm * f0) ** 2)) / dof - 1.0)

    if g(0.0) <= 0:
        return 1e-3
    hi = 1e6
    if g(hi) > 0:
        return hi
    return float(optimize.brentq(g, 0.0, hi, xtol=1e-3))


# ---------------------------------------------------------------------------------- emcee
# ---------------------------------------------------------------------------------- one light curve
def fit_lightcurve(model, params, flux, err, **kwargs) -> FitResult:
    """Fit one light curve: least squares, optional sigma-clipping, then emcee to convergence.

    Procedure (Eureka! S5, Bell et al. 2022): :func:`fit_lsq`, clipping and a re-fit, then emcee
    (:func:`run_emcee`) over the nonlinear parameters with f0, the polynomial and the error multiplier
    marginalised analytically (:mod:`tsoreduce.lightcurve.linear`) unless ``marginalise=False`` or their
    priors do not allow it.  BLAS is limited to one thread (the matrices are small and multi-threaded BLAS
    only contends with the channel processes).

    Parameters
    ----------
    model : LightCurveModel
        Model on the ``(nt,)`` fitted integrations.
    params : ParameterSet
        Priors covering exactly ``model.names``.
    flux, err : array_like, shape (nt,)
        Flux and 1-sigma errors.
    **kwargs
        label, method ('lsq' | 'emcee'), nwalkers (default max(16, 2 nsampled + 2)), nsteps (2000, the
        cap), burn_in (500), seed (42), clip_sigma (5.0; None: no clipping), progress, wavelength
        ((centre, lower, upper) um), n_tau (50: the stopping rule; None runs nsteps), moves ('de' or
        'stretch'), marginalise (True) -- the defaults of ``stage4`` in
        :data:`tsoreduce.lightcurve.CONFIG_SCHEMA` (``tests/test_defaults.py`` keeps them equal).

    Returns
    -------
    FitResult

    Raises
    ------
    ConfigError
        Parameters not matching the model, or invalid chain settings.
    """
    with threadpool_limits(limits=1, user_api="blas"):
        return _fit_lightcurve(model, params, flux, err, **kwargs)


def _fit_lightcurve(model: LightCurveModel, params: ParameterSet, flux, err, *, label="white", method="emcee",
                   nwalkers=None, nsteps=2000, burn_in=500, seed=42, clip_sigma=5.0, progress=False,
                   wavelength=(np.nan, np.nan, np.nan), n_tau=50.0, moves="de",
                   marginalise=True) -> FitResult:
    t_begin = _time.perf_counter()
    missing = [n for n in model.names if n not in params]
    extra = [n for n in params.names if n not in model.index]
    if missing or extra:
        raise ConfigError(f"{label}: parameters do not match the model; missing {missing}, unknown {extra}")
    params = ParameterSet({n: params[n] for n in model.names})  # model order
    flux = np.asarray(flux, float)
    err = np.asarray(err, float)
    post = LogPosterior(model, params, flux, err)
    x, xerr, chi2, _, xcov = fit_lsq(post, return_cov=True)
    n_clipped = 0
    if clip_sigma is not None:
        P = params.expand(x)
        keep = clip_mask((flux - model.evaluate(P)) / model.sigma(P, err), clip_sigma)
        n_clipped = int((~keep).sum())
        if n_clipped:
            log.info("%s: clipped %d of %d integrations beyond %.1f sigma; re-fitting", label, n_clipped,
                     flux.size, clip_sigma)
            model = model.subset(keep)
            flux, err = flux[keep], err[keep]
            params = _restart(params, x)
            post = LogPosterior(model, params, flux, err)
            x, xerr, chi2, _, xcov = fit_lsq(post, return_cov=True)
    free = params.free_names
    lsq_values = dict(zip(free, x))
    lsq_errors = dict(zip(free, xerr))
    result = dict(label=label, names=list(params.names), free=list(free), fixed={n: not params[n].free
                                                                                  for n in params.names},
                  lsq_values=lsq_values, lsq_errors=lsq_errors, n_clipped=n_clipped, method=method,
                  wavelength=wavelength[0], wavelength_lower=wavelength[1], wavelength_upper=wavelength[2])
    if method == "lsq":
        med, lo, hi = lsq_summary(params, lsq_values, lsq_errors)
        fr = FitResult(median=med, err_lower=lo, err_upper=hi, **result)
    elif method == "emcee":
        if burn_in >= nsteps:
            raise ConfigError(f"stage4.fitter.burn_in ({burn_in}) must be smaller than nsteps ({nsteps})")
        fr = _emcee_fit(model, params, post, flux, err, x, xcov, label=label, nwalkers=nwalkers, nsteps=nsteps,
                        burn_in=burn_in, seed=seed, progress=progress, n_tau=n_tau, moves=moves,
                        marginalise=marginalise, result=result)
    else:
        raise ConfigError(f"stage4.fitter.method: {method!r} is not 'lsq' or 'emcee'")
    P = np.array([fr.median[n] for n in params.names])
    fr.time, fr.flux, fr.err = model.time, flux, err
    fr.model = model.evaluate(P)
    fr.systematics = model.systematics_model(P)
    fr.astro = model.astro(P)
    fr.sigma = model.sigma(P, err)
    r = (flux - fr.model) / fr.sigma
    fr.chi2_red = float(r @ r / max(flux.size - len(free), 1))
    lo_b, hi_b = params.bounds()
    fr.bounds = {n: (float(a), float(b), params[n].prior == "loguniform") for n, a, b in zip(free, lo_b, hi_b)}
    fr.flags = bound_flags(fr)
    for n, f in fr.flags.items():
        if f:
            log.warning("%s: %s = %.6g +%.3g/-%.3g with prior [%g, %g]: %s", label, n, fr.median[n],
                        fr.err_upper[n], fr.err_lower[n], *fr.bounds[n][:2], f.replace(";", ", "))
    fr.noise = _noise(flux, fr.model, err, len(free), fr.median.get("f0", np.nan))
    fr.n_logprob = post.ncalls
    fr.runtime_s = _time.perf_counter() - t_begin
    return fr


def _emcee_fit(model, params, post, flux, err, x, xcov, *, label, nwalkers, nsteps, burn_in, seed, progress,
               n_tau, moves, marginalise, result) -> FitResult:
    """emcee stage of :func:`fit_lightcurve`: over every free parameter, or (``marginalise``) over the
    nonlinear ones with the linear baseline and error multiplier integrated out and drawn afterwards."""
    from .linear import LinearBaseline, marginal_plan

    free = params.free_names
    lin, noise, why = marginal_plan(model, params.specs) if marginalise else ([], False, "")
    if marginalise and not lin:
        log.info("%s: the baseline is sampled, not marginalised: %s", label, why)
    elif lin:
        log.debug("%s: marginalised analytically: %s%s", label, ", ".join(lin + (["err_mult"] if noise else [])),
                  f" ({why})" if why else "")
    marg = lin + (["err_mult"] if noise else [])
    if marg:
        baseline = LinearBaseline(model, params.specs, flux, err, lin, noise)
        baseline.set_reference(dict(zip(params.names, params.expand(x))))
        sampled_ps = ParameterSet({n: (params[n].fixed_at(params[n].value) if n in marg else params[n])
                                   for n in params.names})
        mpost = MarginalLogPosterior(model, sampled_ps, flux, err, baseline)
    else:
        sampled_ps, mpost = params, post
    sampled = sampled_ps.free_names
    si = [free.index(n) for n in sampled]
    nd = len(sampled)
    # the stopping rule counts autocorrelation times, not samples: walkers beyond ~2 per sampled
    # dimension add samples but not convergence speed
    nw = nwalkers or max(16, 2 * nd + 2)
    nw += nw % 2
    x_s, cov_s = x[si], xcov[np.ix_(si, si)]
    sampler = run_emcee(mpost, x_s, walker_scale(sampled_ps, x_s, np.sqrt(np.clip(np.diag(cov_s), 0, None))),
                        nwalkers=nw, nsteps=nsteps, seed=seed, progress=progress, n_tau=n_tau, burn_in=burn_in,
                        moves=moves, label=label, cov=cov_s)
    if mpost is not post:
        post.ncalls += mpost.ncalls
    chain = sampler.get_chain()
    nsteps = chain.shape[0]  # fewer than the cap when the convergence rule stopped the chain
    lp = sampler.get_log_prob()
    tau = chain_tau(chain, burn_in)  # as the stopping rule measured it; no second emcee length warning
    flat = chain[burn_in:].reshape(-1, nd)
    if marg:
        # conditional draws of the marginalised parameters, on the chain thinned to ~2 samples per tau
        thin = max(1, int(np.nanmin(tau) // 2)) if np.all(np.isfinite(tau)) else 1
        sub = chain[burn_in::thin].reshape(-1, nd)
        Pm = baseline.draw(sampled_ps.expand(sub), np.random.default_rng(seed + 7919))
        flat = Pm[:, params.free_index]
        n_out = {n: int(np.sum((Pm[:, model.index[n]] <= params[n].lower()) |
                               (Pm[:, model.index[n]] >= params[n].upper()))) for n in marg}
        for n, c in n_out.items():
            if c:
                log.warning("%s: %d of %d conditional draws of the marginalised %s fall outside its prior bounds "
                            "(the analytic marginal assumes them far away); widen the prior", label, c, sub.shape[0], n)
    med, lo, hi = posterior_summary(params, flat)
    acc = float(np.mean(sampler.acceptance_fraction))
    n_eff = (nsteps - burn_in) / np.nanmax(tau) if np.all(np.isfinite(tau)) else np.nan
    ess = nw * n_eff if np.isfinite(n_eff) else np.nan
    log.info("%s: emcee %d walkers x %d steps (burn-in %d) over %d parameters%s: acceptance %.2f, max autocorr "
             "time %.1f steps (chain = %.1f tau)", label, nw, nsteps, burn_in, nd,
             f" ({', '.join(marg)} marginalised)" if marg else "", acc, np.nanmax(tau), n_eff)
    if np.isfinite(n_eff) and n_eff < (n_tau or 50):
        log.warning("%s: chain shorter than 50 autocorrelation times (%.1f); posteriors may be unconverged",
                    label, n_eff)
    return FitResult(median=med, err_lower=lo, err_upper=hi, chain=chain, log_prob=lp, samples=flat,
                     burn_in=burn_in, tau=tau, acceptance=acc, ess=float(ess), sampled=list(sampled),
                     marginalised=list(marg), **result)


#: relative tolerance (fraction of the prior width) within which a median counts as "at" a bound
BOUND_TOL = 0.01
_FLAG_DOC = ("flag: at_lower_bound / at_upper_bound = posterior median within 1 % of the prior width of "
             "that bound, or (emcee) its 16th / 84th percentile within 0.1 %; err_exceeds_prior = an error "
             "larger than the prior width")


def bound_flags(res: FitResult) -> dict:
    """Free parameters pinned at a prior bound or with an error larger than the prior range.

    Median within :data:`BOUND_TOL` of the prior width from a bound, or a 16th/84th percentile within a
    tenth of that (the posterior is truncated by the bound): ``at_lower_bound`` / ``at_upper_bound``;
    err_lower or err_upper larger than the prior width: ``err_exceeds_prior``.  For a log-uniform prior the
    distances and the width are taken in log space.

    Parameters
    ----------
    res : FitResult
        A fit with ``bounds``, medians and errors set.

    Returns
    -------
    dict
        Name -> '' or a ';'-joined subset of the flags.
    """
    out = {}
    for n, b in res.bounds.items():
        lo, hi = b[0], b[1]
        is_log = len(b) > 2 and b[2] and lo > 0
        f = []
        m, el, eu = res.median[n], res.err_lower[n], res.err_upper[n]
        width = hi - lo
        if np.isfinite(width) and width > 0:
            # distances measured in the prior's own variable: log for a log-uniform prior
            tr = (lambda x: np.log(x) if x > 0 else -np.inf) if is_log else (lambda x: x)
            tm, tlo, thi = tr(m), tr(lo), tr(hi)
            tw = thi - tlo
            if tm - tlo < BOUND_TOL * tw or (res.samples is not None and tr(m - el) - tlo < 0.1 * BOUND_TOL * tw):
                f.append("at_lower_bound")
            if thi - tm < BOUND_TOL * tw or (res.samples is not None and thi - tr(m + eu) < 0.1 * BOUND_TOL * tw):
                f.append("at_upper_bound")
            if not (max(el, eu) <= width):
                f.append("err_exceeds_prior")
        out[n] = ";".join(f)
    return out


def _noise(flux, model, err, nfree, f0) -> dict:
    """:func:`tsoreduce.noise.residual_noise` of the fit, plus the scatters in ppm of ``f0``."""
    d = residual_noise(flux, model, err, nfree=nfree)
    if np.isfinite(f0) and f0 != 0:
        for k in ("expected", "achieved_p2p", "achieved_resid"):
            d[f"{k}_ppm"] = 1e6 * d[k] / abs(f0)
    return {k: float(f"{v:.6g}") for k, v in d.items()}


def clip_mask(r, clip_sigma) -> np.ndarray:
    """Points to keep: normalised residuals within ``clip_sigma`` robust sigma (astropy ``mad_std``) of their median.

    Non-finite residuals are dropped; when the robust scatter is zero or undefined nothing else is
    clipped (WARNING), rather than every point.

    Parameters
    ----------
    r : numpy.ndarray, shape (nt,)
        Normalised residuals.
    clip_sigma : float
        Threshold in robust sigma.

    Returns
    -------
    numpy.ndarray of bool, shape (nt,)
    """
    finite = np.isfinite(r)
    if not finite.any():
        return finite
    med = np.median(r[finite])
    sigma = robust_std(r[finite])
    if not sigma > 0:  # no scatter to clip against (e.g. half the residuals identical): keep them all
        log.warning("clip: robust scatter of the residuals is %s; no point clipped", sigma)
        return finite
    return finite & (np.abs(r - med) < clip_sigma * sigma)


def walker_scale(params: ParameterSet, x, xerr) -> np.ndarray:
    """Largest starting spread of the walkers per free parameter.

    Half the least-squares error (a tiny fraction of the value when the error is unknown), at most 1 % of
    the prior width.

    Parameters
    ----------
    params : ParameterSet
        Priors (bounds).
    x, xerr : numpy.ndarray, shape (nfree,)
        Least-squares values and errors.

    Returns
    -------
    numpy.ndarray, shape (nfree,)
    """
    lo_b, hi_b = params.bounds()
    width = np.where(np.isfinite(hi_b - lo_b), hi_b - lo_b, np.inf)
    scale = np.where(np.isfinite(xerr) & (xerr > 0), 0.5 * xerr, 1e-6 * np.maximum(np.abs(x), 1e-3))
    return np.minimum(scale, 0.01 * width)


def lsq_summary(params: ParameterSet, values: dict, errors: dict):
    """(median, err_lower, err_upper) dicts over all parameters from a least-squares solution.

    Parameters
    ----------
    params : ParameterSet
        All parameters (fixed ones keep their value, error 0).
    values, errors : dict
        Free name -> least-squares value / error.

    Returns
    -------
    tuple of dict
    """
    med = params.as_dict()
    med.update(values)
    lo = {n: 0.0 for n in params.names}
    lo.update({n: float(e) for n, e in errors.items()})
    return med, lo, dict(lo)


def posterior_summary(params: ParameterSet, samples):
    """(median, err_lower, err_upper) dicts over all parameters from flat samples.

    The median and the distances to the 16th / 84th percentiles (0 for fixed parameters).

    Parameters
    ----------
    params : ParameterSet
        All parameters.
    samples : numpy.ndarray, shape (n, nfree)
        Posterior samples of the free parameters.

    Returns
    -------
    tuple of dict
    """
    free = params.free_names
    q = np.percentile(samples, [16, 50, 84], axis=0)
    med = params.as_dict()
    med.update(dict(zip(free, q[1])))
    lo = {n: 0.0 for n in params.names}
    hi = dict(lo)
    lo.update(dict(zip(free, q[1] - q[0])))
    hi.update(dict(zip(free, q[2] - q[1])))
    return med, lo, hi


def _restart(params: ParameterSet, x) -> ParameterSet:
    """Parameter set whose free starting values are ``x``."""
    return ParameterSet({n: (params[n].with_value(v) if params[n].free else params[n])
                         for n, v in zip(params.names, params.expand(x))})
