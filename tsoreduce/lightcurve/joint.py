"""Joint Stage 4 fits of several visits: shared orbit, per-band planet radius, per-visit systematics.

N light curves (:class:`~tsoreduce.lightcurve.visits.Visit`), each with its own times, errors and
regressors, are fitted together.  Every visit keeps its own :class:`~tsoreduce.lightcurve.models.LightCurveModel`
(batman x systematics, the single-visit model, so one visit gives the single-visit fit); a global
parameter vector maps onto each visit's vector through an index array, one fancy-index slice per
visit and likelihood call.  Each parameter has a scope (YAML ``scope:``):

* ``shared``: one value for all visits (default for the orbit: t0, per, a_rs, inc, ecc, w);
* ``per_visit``: one value per visit (default for everything else: Rp/Rs, fp, limb darkening,
  systematics, error multiplier), named ``<name>@<visit>``;
* ``per_band``: one value per wavelength band, shared by the visits observing it, ``<name>@<band>``.

Orbit modes (``stage4.joint.orbit``):

* ``ephemeris``: the mid-time of visit k is T0 + E_k P with T0 (``t0``, at epoch 0 = the epoch of the
  starting ``t0``) and P (``per``) fitted; epochs E_k are assigned from the times
  (:func:`~tsoreduce.lightcurve.visits.assign_epochs`);
* ``timing``: a free mid-time per visit (``t0@<visit>``, prior = the ``t0`` prior moved to the predicted
  time), ``per`` fixed (it then only sets the transit shape); a linear ephemeris is fitted to the
  mid-times by weighted least squares and the O-C table reports the residuals (Agol & Fabrycky 2018).

Procedure as for one light curve (:mod:`.fitting`): least squares with the error multipliers held,
then each visit's multiplier set so that its reduced chi^2 is 1 and a second least-squares pass
(covariance from the Jacobian), optional sigma-clipping per visit, then emcee over the joint posterior
with convergence as the stopping rule (``stage4.fitter.n_tau``).  The red-noise factor beta is the
time-averaging statistic of Winn et al. (2008, ApJ 683, 1076) over 10-30 min bins.
"""

from __future__ import annotations

import copy
import logging
import multiprocessing
import time as _time
from dataclasses import dataclass, field

import numpy as np
from scipy import optimize
from threadpoolctl import threadpool_limits

from ..config import validate
from ..errors import ConfigError, NotImplementedStepError, ScopeError
from .fitting import (NOISE_PARAMS, FitResult, _restart, chain_tau, clip_mask, fit_lightcurve, log_posterior,
                      lsq_summary, posterior_summary, run_emcee, scaled_jacobian, walker_scale)
from .parameters import ORBIT_PARAMS, ParameterSet, ParamSpec
from .visits import Visit, assign_epochs, check_per_band, make_visits

__all__ = ["JointSetup", "JointPosterior", "JointResult", "fit_joint", "red_noise_beta", "linear_ephemeris"]

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------- setup
def _visit_cfg(cfg, label):
    """The stage4 section for one visit: systematics overrides from ``joint.systematics[label]``."""
    from .stage import CONFIG_SCHEMA

    over = (cfg["joint"]["systematics"] or {}).get(label)
    c = copy.deepcopy(cfg)
    if over is not None:
        merged = dict(cfg["systematics"])
        if not isinstance(over, dict):
            raise ConfigError(f"stage4.joint.systematics.{label}: expected a mapping of systematics keys")
        merged.update(over)
        c["systematics"] = validate(merged, CONFIG_SCHEMA["systematics"], f"stage4.joint.systematics.{label}")
    return c


def _shift(spec: ParamSpec, dt: float, name: str) -> ParamSpec:
    """A copy of a t0 prior moved by ``dt`` days (value, bounds and normal mean)."""
    s = copy.copy(spec)
    s.name = name
    s.value = spec.value + dt
    if spec.bounds is not None:
        s.bounds = (spec.bounds[0] + dt, spec.bounds[1] + dt)
    if spec.mean is not None:
        s.mean = spec.mean + dt
    return s


class JointSetup:
    """Models, global parameters and the visit maps of a joint fit.

    Parameters
    ----------
    visits : list of Visit
        The visits (epochs are assigned here, :func:`~tsoreduce.lightcurve.visits.assign_epochs`).
    cfg : dict
        Validated stage4 section (``joint``, ``parameters`` with ``scope``, ``systematics``).

    Attributes
    ----------
    visits : list of Visit
        With epochs assigned.
    models : list of LightCurveModel
        One per visit.
    params : ParameterSet
        Global parameters (``name``, ``name@visit`` or ``name@band``).
    scopes : dict
        Name -> 'shared' | 'per_visit' | 'per_band'.
    maps : list of numpy.ndarray
        Per visit, int ``(nparams_k,)`` global indices giving the visit's parameter vector.
    orbit : str
        'ephemeris' | 'timing'.
    visit_specs : list of ParameterSet
        Per visit, the single-visit set (t0 moved to the visit's predicted mid-time, per fixed) of the
        per-visit comparison fits.

    Raises
    ------
    ConfigError
        Unknown visit labels in ``joint.systematics``, regressors missing, unused parameters, a free period
        in timing mode.
    ScopeError
        t0/per not shared in ephemeris mode, t0 not per visit in timing mode, per_band without band.
    NotImplementedStepError
        Jitter noise.
    """

    def __init__(self, visits: list[Visit], cfg: dict):
        from .stage import build_model, build_parameters

        self.cfg = cfg
        self.orbit = cfg["joint"]["orbit"]
        if cfg["systematics"]["noise"] == "jitter":
            raise NotImplementedStepError("stage4.systematics.noise: 'jitter' is not implemented for joint fits; "
                                          "use err_mult or none")
        labels = [v.label for v in visits]
        unknown = [k for k in (cfg["joint"]["systematics"] or {}) if k not in labels]
        if unknown:
            raise ConfigError(f"stage4.joint.systematics: {unknown} are not visit labels ({labels})")
        decl = cfg["parameters"]
        from .parameters import parse_parameter

        user = {n: parse_parameter(n, d, default_shared=n in ORBIT_PARAMS) for n, d in decl.items()}
        self.scopes = {}
        for n, s in user.items():
            self.scopes[n] = s.scope or ("shared" if n in ORBIT_PARAMS else "per_visit")
        t0s, per = user["t0"], user["per"]
        if self.orbit == "ephemeris":
            bad = [n for n in ("t0", "per") if self.scopes.get(n) != "shared"]
            if bad:
                raise ScopeError(f"stage4.parameters.{bad[0]}.scope: the linear ephemeris shares t0 and per; for a "
                                 "free mid-time per visit use stage4.joint.orbit: timing")
        else:
            if user["t0"].scope not in (None, "per_visit"):
                raise ScopeError("stage4.parameters.t0.scope: in timing mode every visit has its own mid-time "
                                 "(per_visit)")
            if per.free:
                raise ConfigError("stage4.parameters.per: in timing mode the period only sets the transit shape; "
                                  "declare it fixed (the ephemeris is fitted to the mid-times afterwards)")
            self.scopes["t0"] = "per_visit"
        # every visit must contain its predicted transit; epochs from the starting t0, per
        assign_epochs(visits, t0s.value, per.value)
        self.visits = visits
        self.models, self.visit_specs, vspecs = [], [], []
        used = set()
        for v in visits:
            cv = _visit_cfg(cfg, v.label)
            regs = cv["systematics"]["decorrelate"]
            regs = sorted(v.regressors) if regs is None else regs
            missing = [n for n in regs if n not in v.regressors]
            if missing:
                raise ConfigError(f"stage4.systematics.decorrelate: {missing} not in visit {v.label}")
            m = build_model(v.time, cv, {n: v.regressors[n] for n in regs}, t_start=v.t_start)
            cv["parameters"] = {n: d for n, d in decl.items() if n in m.index}
            used |= set(cv["parameters"])
            ps = build_parameters(m, cv, v.flux)
            tc = t0s.value + v.epoch * per.value
            specs = dict(ps.specs)
            specs["t0"] = _shift(ps["t0"], tc - t0s.value, "t0")
            specs["per"] = ps["per"].fixed_at(per.value)
            self.models.append(m)
            self.visit_specs.append(ParameterSet(specs))
            vspecs.append(ps)
        unused = [n for n in decl if n not in used]
        if unused:
            raise ConfigError(f"stage4.parameters: {unused} are parameters of no visit's model")
        check_per_band(decl, visits, used=[set(m.index) for m in self.models])
        gspecs, self.maps = {}, []
        for k, (v, m, ps) in enumerate(zip(visits, self.models, vspecs)):
            idx = []
            for n in m.names:
                sc = self.scopes.get(n, "shared" if n in ORBIT_PARAMS else "per_visit")
                self.scopes.setdefault(n, sc)
                key = n if sc == "shared" else f"{n}@{v.label if sc == 'per_visit' else v.band}"
                if key not in gspecs:
                    if n == "t0" and sc == "per_visit":
                        spec = self.visit_specs[k]["t0"]
                    else:
                        spec = ps[n]
                    spec = copy.copy(spec)
                    spec.name = key
                    gspecs[key] = spec
                idx.append(list(gspecs).index(key))
            self.maps.append(np.array(idx, int))
        self.params = ParameterSet(gspecs)
        self.i_per = self.params.names.index("per")
        self.t0col = [m.index["t0"] for m in self.models]
        self.epochs = np.array([v.epoch for v in visits], int)

    def visit_matrix(self, G, k) -> np.ndarray:
        """Visit k's parameter matrix ``(nw, nparams_k)`` from global full vectors ``G`` ``(nw, nglobal)``."""
        P = G[:, self.maps[k]]
        if self.orbit == "ephemeris" and self.epochs[k] != 0:
            P[:, self.t0col[k]] += self.epochs[k] * G[:, self.i_per]
        return P

    def key(self, name, k) -> str:
        sc = self.scopes[name]
        v = self.visits[k]
        return name if sc == "shared" else f"{name}@{v.label if sc == 'per_visit' else v.band}"

    def subset(self, keeps) -> "JointSetup":
        """The same setup on the kept points of each visit (after clipping)."""
        new = copy.copy(self)
        new.models = [m.subset(kp) for m, kp in zip(self.models, keeps)]
        new.visits = [copy.copy(v) for v in self.visits]
        for v, kp in zip(new.visits, keeps):
            v.time, v.flux, v.err = v.time[kp], v.flux[kp], v.err[kp]
            v.regressors = {n: r[kp] for n, r in v.regressors.items()}
        return new

    def restart(self, x) -> "JointSetup":
        """A copy whose free starting values are ``x``."""
        new = copy.copy(self)
        new.params = _restart(self.params, x)
        return new


class JointPosterior:
    """Joint log-posterior of free vectors ``(nw, nfree)`` -> ``(nw,)`` (emcee ``vectorize=True``).

    The sum over visits of each visit's fused numba log-likelihood (:meth:`LightCurveModel.loglike`), every
    visit evaluated for all walkers at once.

    Parameters
    ----------
    setup : JointSetup
        Models, global parameters and visit maps.
    """

    def __init__(self, setup: JointSetup):
        self.setup = setup
        self.params = setup.params
        self.ncalls = 0

    def __call__(self, theta) -> np.ndarray:
        theta = np.atleast_2d(np.asarray(theta, float))
        self.ncalls += theta.shape[0]
        return log_posterior(self.params, theta, self._loglike)

    def _loglike(self, G) -> np.ndarray:
        s = self.setup
        return sum(m.loglike(s.visit_matrix(G, k), v.flux, v.err)
                   for k, (m, v) in enumerate(zip(s.models, s.visits)))


class JointMarginalPosterior(JointPosterior):
    """Joint log-posterior of the nonlinear parameters, every visit's linear baseline (f0, polynomial) and
    error multiplier integrated out analytically (:class:`~tsoreduce.lightcurve.linear.LinearBaseline`).

    Parameters
    ----------
    setup : JointSetup
        Models, global parameters and visit maps.
    bases : list of LinearBaseline
        One per visit (visit order).
    params : ParameterSet
        The global set with the marginalised parameters fixed (their columns are not read).
    marginalised : list of str
        Global names of the marginalised parameters.
    """

    def __init__(self, setup, bases, params, marginalised):
        self.setup, self.bases, self.params = setup, bases, params
        self.marginalised = list(marginalised)
        self.ncalls = 0

    @classmethod
    def build(cls, setup, x, enabled=True):
        """The marginalised posterior of ``setup`` about the least-squares solution ``x`` ``(nfree,)``,
        or None (logged) when disabled or when a visit's baseline is not marginalisable (a prior that is
        not uniform, jitter noise, or a baseline parameter shared between visits).

        Parameters
        ----------
        setup : JointSetup
            The joint fit.
        x : numpy.ndarray, shape (nfree,) or None
            Least-squares free vector (the reference baseline of each visit; None: the starting values).
        enabled : bool
            ``stage4.fitter.marginalise``.

        Returns
        -------
        JointMarginalPosterior or None
        """
        from .linear import LinearBaseline, marginal_plan

        if not enabled:
            return None
        ps = setup.params
        G = ps.expand(x if x is not None else ps.start())[None, :]
        owners = {}
        for k, mp in enumerate(setup.maps):
            for g in mp:
                owners.setdefault(int(g), set()).add(k)
        bases, marg = [], []
        for k, (m, v) in enumerate(zip(setup.models, setup.visits)):
            specs = {n: ps[setup.key(n, k)] for n in m.names}
            lin, noise, why = marginal_plan(m, specs)
            names = lin + (["err_mult"] if noise else [])
            shared = [n for n in names if len(owners[ps.names.index(setup.key(n, k))]) > 1]
            if not lin or shared:
                (log.info if x is not None else log.debug)("stage4 joint: baselines sampled, not marginalised: visit %s: %s", v.label,
                         why or f"{', '.join(shared)} shared between visits")
                return None
            b = LinearBaseline(m, specs, v.flux, v.err, lin, noise)
            b.set_reference(dict(zip(m.names, setup.visit_matrix(G.copy(), k)[0])))
            bases.append(b)
            marg += [setup.key(n, k) for n in names]
        sps = ParameterSet({n: (ps[n].fixed_at(ps[n].value) if n in marg else ps[n]) for n in ps.names})
        (log.info if x is not None else log.debug)(
            "stage4 joint: %d parameters marginalised analytically (%s); sampling %d", len(marg),
                 ", ".join(marg), sps.nfree)
        return cls(setup, bases, sps, marg)

    # __call__ (JointPosterior's): the log-posterior (nw,) of sampled free vectors (nw, nsampled)

    def _loglike(self, G) -> np.ndarray:
        s = self.setup
        return sum(b.loglike(s.visit_matrix(G, k)) for k, b in enumerate(self.bases))

    def draw(self, theta, rng) -> np.ndarray:
        """Full free vectors ``(ns, nfree)`` of the global set: ``theta`` ``(ns, nsampled)`` plus every
        marginalised parameter drawn from its conditional posterior (:meth:`LinearBaseline.draw`).

        Parameters
        ----------
        theta : numpy.ndarray, shape (ns, nsampled)
            Posterior samples of the sampled parameters.
        rng : numpy.random.Generator
            Random generator of the draws.

        Returns
        -------
        numpy.ndarray, shape (ns, nfree)
        """
        s = self.setup
        G = self.params.expand(np.atleast_2d(theta))
        full = s.params
        for k, b in enumerate(self.bases):
            Pk = b.draw(s.visit_matrix(G, k), rng)
            for n in b.names:
                G[:, full.names.index(s.key(n, k))] = Pk[:, s.models[k].index[n]]
        return G[:, full.free_index]


_POOL_POST = None  # the posterior a forked worker evaluates (inherited at fork time)


def _pool_eval(theta):
    return _POOL_POST(theta)


class PooledPosterior:
    """Evaluates a vectorised posterior with the walkers split over ``nproc`` forked processes.

    Each process holds its own copy of the batman models (forked after they are built), so one call
    costs one pickled ``(nw/nproc, nfree)`` block each way.  Use as a context manager.

    Parameters
    ----------
    post : callable
        Vectorised log-posterior ``(nw, nd) -> (nw,)``.
    nproc : int
        Worker processes.
    """

    def __init__(self, post, nproc: int):
        import multiprocessing

        global _POOL_POST
        self.post, self.nproc = post, nproc
        self.ncalls = 0
        _POOL_POST = post
        self.pool = multiprocessing.get_context("fork").Pool(nproc)

    def __call__(self, theta):
        theta = np.atleast_2d(theta)
        self.ncalls += theta.shape[0]
        parts = np.array_split(theta, self.nproc)
        return np.concatenate(self.pool.map(_pool_eval, parts))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.pool.close()
        self.pool.join()


# ---------------------------------------------------------------------------------- least squares
def _base(name):
    return name.split("@", 1)[0]


def _joint_lsq(setup: JointSetup, max_nfev=4000):
    """Two-pass least squares; returns (x_free, err_free, per-visit reduced chi^2 of pass 1).

    BLAS on one thread: trf's SVD of the (npoints x nfree) Jacobian is ~50x slower on two busy cores.
    """
    with threadpool_limits(limits=1, user_api="blas"):
        return _joint_lsq_impl(setup, max_nfev)


def _joint_lsq_impl(setup, max_nfev):
    ps = setup.params
    free = ps.free_names
    x0 = ps.start()
    lo, hi = ps.bounds()
    noise_idx = [i for i, n in enumerate(free) if _base(n) in NOISE_PARAMS]
    fit_idx = np.array([i for i, n in enumerate(free) if i not in noise_idx], int)
    nor = [(j, ps[free[i]].mean, ps[free[i]].sigma) for j, i in enumerate(fit_idx) if ps[free[i]].prior == "normal"]
    free_glob = set(ps.free_index[fit_idx].tolist())
    nfit = [len(free_glob & set(mp.tolist())) for mp in setup.maps]

    def sigmas(th):
        G = ps.expand(th)[None, :]
        return [m.sigma(setup.visit_matrix(G, k)[0], v.err) for k, (m, v) in enumerate(zip(setup.models,
                                                                                              setup.visits))]

    def solve(xstart, sig):
        xs = xstart[fit_idx]
        lo_, hi_ = lo[fit_idx], hi[fit_idx]
        scale = np.where(np.isfinite(hi_ - lo_), 0.01 * (hi_ - lo_), np.maximum(np.abs(xs) * 0.01, 1e-6))

        # solved in u = (x - xs) / scale: trf's xtol compares a step with |x|, and |t0| ~ 6e4 d would
        # otherwise stop it after a few evaluations when the period's leverage keeps the first steps small
        def resid(u):
            x = xs + u * scale
            th = xstart.copy()
            th[fit_idx] = x
            G = ps.expand(th)[None, :]
            r = [(v.flux - m.evaluate(setup.visit_matrix(G, k)[0])) / s
                 for k, (m, v, s) in enumerate(zip(setup.models, setup.visits, sig))]
            if nor:
                r.append(np.array([(x[j] - mu) / sd for j, mu, sd in nor]))
            return np.concatenate(r)

        ul, uh = (lo_ - xs) / scale, (hi_ - xs) / scale
        jac = _visit_jacobian(setup, ps, xstart, fit_idx, xs, scale, sig, nor, uh)
        sol = optimize.least_squares(resid, np.zeros(xs.size), bounds=(ul, uh), method="trf", max_nfev=max_nfev,
                                     jac=jac)
        if not sol.success:
            log.warning("joint least squares did not converge: %s", sol.message)
        th = xstart.copy()
        th[fit_idx] = xs + sol.x * scale
        sol.jac = sol.jac / scale[None, :]  # d resid / d x
        return th, sol

    th, sol = solve(x0, sigmas(x0))
    n = [v.flux.size for v in setup.visits]
    edges = np.cumsum([0] + n)
    chi2 = [float(sol.fun[a:b] @ sol.fun[a:b]) / max(nk - pk, 1)
            for a, b, nk, pk in zip(edges[:-1], edges[1:], n, nfit)]
    err = np.full(th.size, np.nan)
    if noise_idx:
        for i in noise_idx:
            name = free[i]
            k = [j for j, v in enumerate(setup.visits) if setup.key("err_mult", j) == name]
            c = float(np.mean([chi2[j] for j in k]))
            th[i] = np.clip(th[i] * np.sqrt(c), lo[i] * (1 + 1e-9), hi[i] * (1 - 1e-9))
            err[i] = th[i] / np.sqrt(2.0 * max(sum(n[j] - nfit[j] for j in k), 1))
        th, sol = solve(th, sigmas(th))  # weights now include each visit's error multiplier
    J = sol.jac
    try:
        cov = np.linalg.inv(J.T @ J)
    except np.linalg.LinAlgError:
        cov = np.linalg.pinv(J.T @ J)
    err[fit_idx] = np.sqrt(np.clip(np.diag(cov), 0, None))
    full = np.diag(np.where(np.isfinite(err), err, 0.0) ** 2)
    full[np.ix_(fit_idx, fit_idx)] = cov
    setup.lsq_cov = full  # the walkers' starting ball (fit_joint)
    return th, err, chi2


def _visit_jacobian(setup, ps, xstart, fit_idx, xs, scale, sig, nor, uh, h=1e-4):
    """Forward-difference Jacobian of the joint residuals in scaled offsets u (as :func:`scaled_jacobian`),
    visit by visit: a parameter's column is non-zero only in the rows of the visits whose model uses it
    (per-visit parameters touch one visit), so each visit is evaluated once for all its perturbed
    parameters (one vectorised model call) instead of every visit for every parameter."""
    gidx = ps.free_index[fit_idx]
    n = [v.flux.size for v in setup.visits]
    edges = np.cumsum([0] + n)
    users = [[j for j, g in enumerate(gidx) if g in set(mp.tolist())] for mp in setup.maps]

    def jac(u, *args):
        x = xs + u * scale
        th = xstart.copy()
        th[fit_idx] = x
        G = ps.expand(th)[None, :]
        J = np.zeros((edges[-1] + len(nor), u.size))
        step = np.where(u + h <= uh, h, -h)
        for k, (m, v, sk) in enumerate(zip(setup.models, setup.visits, sig)):
            js = users[k]
            Gs = np.repeat(G, len(js) + 1, axis=0)
            for r, j in enumerate(js, start=1):
                Gs[r, gidx[j]] += step[j] * scale[j]
            M = m.evaluate(setup.visit_matrix(Gs, k))
            J[edges[k]:edges[k + 1], js] = ((M[0] - M[1:]) / sk).T / step[js]
        for row, (j, _mu, sd) in enumerate(nor):
            J[edges[-1] + row, j] = scale[j] / sd
        return J

    return jac


# ---------------------------------------------------------------------------------- results
@dataclass
class JointResult:
    """Outcome of a joint fit.

    Parameters
    ----------
    setup : JointSetup
        The setup after clipping.
    names, free : list of str
        Global parameter names; the free ones.
    median, err_lower, err_upper, lsq_values, lsq_errors : dict
        Global name -> posterior median, 16th / 84th-percentile distances, least-squares value and error.
    method : str
        'lsq' or 'emcee'.
    visit_rows : list of dict
        One per visit, the rows of ``visits.ecsv``.
    curves : list of dict
        Per visit time, flux, model, systematics, astro (for the figures).
    timing : dict or None
        Timing mode: the ephemeris fit and the O-C rows.
    visit_fits : list of FitResult
        Each visit fitted alone, or [].
    samples : numpy.ndarray or None
        ``(nsamples, nfree)`` posterior samples of every free parameter (marginalised ones drawn from
        their conditionals on the thinned chain).
    chain : numpy.ndarray or None
        ``(nsteps, nwalkers, nsampled)``.
    log_prob : numpy.ndarray or None
        ``(nsteps, nwalkers)``.
    tau : numpy.ndarray or None
        Autocorrelation time (steps) per sampled parameter.
    ess : float
        nwalkers x kept steps / max tau.
    converged : bool
        Kept chain >= n_tau x max tau.
    nsteps, burn_in : int
        Steps run and discarded.
    acceptance : float
        Mean acceptance fraction.
    n_logprob : int
        Log-posterior evaluations.
    runtime_s : float
        Wall time (s).
    n_clipped : list of int
        Clipped integrations per visit.
    sampled : list of str or None
        Parameters emcee sampled (None: all free).
    marginalised : list of str
        Parameters integrated out analytically.
    mcmc_s : float
        Wall time of emcee and the conditional draws (s).
    """

    setup: JointSetup
    names: list
    free: list
    median: dict
    err_lower: dict
    err_upper: dict
    lsq_values: dict
    lsq_errors: dict
    method: str
    visit_rows: list = field(default_factory=list)
    curves: list = field(default_factory=list)
    timing: dict | None = None
    visit_fits: list = field(default_factory=list)
    samples: np.ndarray | None = None
    chain: np.ndarray | None = None
    log_prob: np.ndarray | None = None
    tau: np.ndarray | None = None
    ess: float = float("nan")
    converged: bool = False
    nsteps: int = 0
    burn_in: int = 0
    acceptance: float = float("nan")
    n_logprob: int = 0
    runtime_s: float = 0.0
    n_clipped: list = field(default_factory=list)
    sampled: list | None = None
    marginalised: list = field(default_factory=list)
    mcmc_s: float = 0.0

    def table(self):
        """Global parameters: name, scope, applies_to, median, err_lower, err_upper, fixed, lsq_value, lsq_error."""
        from astropy.table import Table

        s = self.setup
        t = Table()
        t["name"] = list(self.names)
        t["scope"] = [s.scopes[_base(n)] for n in self.names]
        applies = []
        for n in self.names:
            ks = [v.label for k, v in enumerate(s.visits) if _base(n) in s.models[k].index and s.key(_base(n), k) == n]
            applies.append(",".join(ks))
        t["applies_to"] = applies
        t["median"] = [self.median[n] for n in self.names]
        t["err_lower"] = [self.err_lower[n] for n in self.names]
        t["err_upper"] = [self.err_upper[n] for n in self.names]
        t["fixed"] = [n not in self.free for n in self.names]
        t["lsq_value"] = [self.lsq_values.get(n, np.nan) for n in self.names]
        t["lsq_error"] = [self.lsq_errors.get(n, np.nan) for n in self.names]
        t.meta.update({"label": "joint", "orbit": s.orbit, "method": self.method, "n_visits": len(s.visits),
                       "epochs": {v.label: int(v.epoch) for v in s.visits},
                       "n_steps": int(self.nsteps), "burn_in": int(self.burn_in), "converged": bool(self.converged),
                       "effective_samples": float(self.ess), "acceptance": float(self.acceptance),
                       "n_logprob": int(self.n_logprob), "runtime_s": float(self.runtime_s),
                       "n_clipped": {v.label: int(c) for v, c in zip(s.visits, self.n_clipped)}})
        if self.tau is not None:
            t.meta["autocorr_time"] = {n: float(x) for n, x in zip(self.sampled or self.free, self.tau)}
        if self.marginalised:
            t.meta["marginalised"] = list(self.marginalised)
        return t


def red_noise_beta(resid, time, *, bin_minutes=(10.0, 30.0)):
    """Time-averaging red-noise factor beta (Winn et al. 2008, ApJ 683, 1076, eq. 4).

    For bins of N consecutive points spanning ``bin_minutes`` (5 sizes), beta_N = sigma_N /
    (sigma_1 / sqrt(N) sqrt(M / (M - 1))), M the number of bins; beta is their mean.

    Parameters
    ----------
    resid : array_like, shape (nt,)
        Residuals in time order.
    time : array_like, shape (nt,)
        Times (d).
    bin_minutes : tuple of float
        Smallest and largest bin duration (min).

    Returns
    -------
    float
        beta (NaN when the light curve is too short for 3 bins of the smallest size).
    """
    resid = np.asarray(resid, float)
    cad = float(np.median(np.diff(time))) * 1440.0
    s1 = np.std(resid)
    betas = []
    for minutes in np.linspace(bin_minutes[0], bin_minutes[1], 5):
        nb = max(int(round(minutes / cad)), 1)
        m = resid.size // nb
        if m < 3:
            continue
        b = resid[: m * nb].reshape(m, nb).mean(axis=1)
        expect = s1 / np.sqrt(nb) * np.sqrt(m / (m - 1.0))
        betas.append(np.std(b) / expect)
    return float(np.mean(betas)) if betas else float("nan")


def linear_ephemeris(epochs, t0, sig):
    """Weighted least-squares linear ephemeris t0 = T0 + E P (Agol & Fabrycky 2018).

    Parameters
    ----------
    epochs : array_like of int, shape (n,)
        Orbital epochs.
    t0 : array_like, shape (n,)
        Mid-times (BMJD_TDB d).
    sig : array_like, shape (n,)
        Their 1-sigma errors (d).

    Returns
    -------
    dict
        T0, T0_err, P, P_err, cov ``(2, 2)``, chi2, dof, o_c ``(n,)`` (d) and o_c_err.

    Raises
    ------
    ConfigError
        Fewer than two distinct epochs.
    """
    E = np.asarray(epochs, float)
    t = np.asarray(t0, float)
    s = np.asarray(sig, float)
    if np.unique(E).size < 2:
        raise ConfigError("timing mode: a linear ephemeris needs at least two visits on different epochs")
    A = np.stack([np.ones_like(E), E], axis=1)
    W = 1.0 / s ** 2
    cov = np.linalg.inv(A.T @ (A * W[:, None]))
    beta = cov @ (A.T @ (W * t))
    oc = t - A @ beta
    chi2 = float(np.sum(W * oc ** 2))
    return {"T0": float(beta[0]), "T0_err": float(np.sqrt(cov[0, 0])), "P": float(beta[1]),
            "P_err": float(np.sqrt(cov[1, 1])), "cov": cov, "chi2": chi2, "dof": int(E.size - 2),
            "o_c": oc, "o_c_err": s}


# ---------------------------------------------------------------------------------- fitting
def fit_joint(visits, config: dict, *, progress: bool = False) -> JointResult:
    """Fit several visits jointly (the documented library entry point).

    Parameters
    ----------
    visits : list of :class:`Visit` (see :func:`~tsoreduce.lightcurve.visits.make_visits`), or of dicts
        ``{lc: LightCurves, visit: label, band: band}`` / ``{time, flux, err, regressors, visit, band}``.
    config : a stage4 section (validated here): ``joint.orbit``, ``parameters`` with ``scope:``,
        ``systematics`` (+ ``joint.systematics`` per-visit overrides), ``fitter`` (method lsq | emcee;
        emcee stops at ``n_tau`` autocorrelation times, ``nsteps`` the cap), ``clip_sigma``;
        ``n_processes`` > 1 splits the walkers of each emcee step over that many forked processes;
        ``fitter.marginalise`` (default true) integrates each visit's f0, polynomial and error multiplier
        out analytically (:class:`JointMarginalPosterior`).
    progress : bool
        Log each autocorrelation estimate of emcee at INFO.

    Returns
    -------
    JointResult.

    Raises
    ------
    ConfigError / ScopeError / VisitOverlapError / NoTransitInWindowError before any fitting;
    EmptyDataError for a visit with fewer than 10 usable points.
    """
    from .stage import validate_config

    cfg = validate_config(config)
    t_begin = _time.perf_counter()
    if visits and not isinstance(visits[0], Visit):
        visits = make_visits(visits, exclude_first=cfg["exclude_first"],
                             regressors=cfg["systematics"]["decorrelate"])
    setup = JointSetup(visits, cfg)
    nw_cfg, nfree = cfg["fitter"]["nwalkers"], setup.params.nfree
    if cfg["fitter"]["method"] == "emcee" and nw_cfg is not None:
        plan = JointMarginalPosterior.build(setup, None, cfg["fitter"]["marginalise"])
        nfree = plan.params.nfree if plan is not None else nfree  # the dimension emcee samples
    if cfg["fitter"]["method"] == "emcee" and nw_cfg is not None and nw_cfg < 2 * nfree:
        raise ConfigError(f"stage4.fitter.nwalkers: {nw_cfg} walkers for {nfree} free parameters of the joint fit; "
                          f"emcee needs >= 2 x ndim = {2 * nfree}")
    log.info("stage4 joint: %d visits (epochs %s), %d free parameters, orbit mode %s", len(visits),
             ", ".join(f"{v.label}:{v.epoch}" for v in visits), setup.params.nfree, setup.orbit)
    with threadpool_limits(limits=1, user_api="blas"):
        setup, x, xerr, n_clipped = _lsq_clip_refit(setup, cfg["clip_sigma"])
        ps = setup.params
        free = ps.free_names
        post = JointPosterior(setup)
        f = cfg["fitter"]
        res = dict(setup=setup, names=list(ps.names), free=list(free), lsq_values=dict(zip(free, x)),
                   lsq_errors=dict(zip(free, xerr)), method=f["method"], n_clipped=n_clipped)
        if f["method"] == "lsq":
            med, lo, hi = lsq_summary(ps, res["lsq_values"], res["lsq_errors"])
            jr = JointResult(median=med, err_lower=lo, err_upper=hi, **res)
        else:
            jr = _sample_joint(setup, post, x, xerr, f, cfg["n_processes"], progress, res)
        jr.n_logprob = post.ncalls
        _visit_products(jr, cfg)
        if cfg["joint"]["per_visit_fits"] != "none":
            jr.visit_fits = _per_visit_fits(setup, cfg)
    jr.runtime_s = _time.perf_counter() - t_begin
    return jr


def _lsq_clip_refit(setup: JointSetup, clip_sigma):
    """Joint least squares; with ``clip_sigma``, clip each visit's outliers and fit again.

    Returns ``(setup, x, xerr, n_clipped)``: the (subset) setup, the free values and errors, and the
    number of integrations clipped per visit.
    """
    x, xerr, _ = _joint_lsq(setup)
    n_clipped = [0] * len(setup.visits)
    if clip_sigma is None:
        return setup, x, xerr, n_clipped
    G = setup.params.expand(x)[None, :]
    keeps = []
    for k, (m, v) in enumerate(zip(setup.models, setup.visits)):
        P = setup.visit_matrix(G, k)[0]
        keep = clip_mask((v.flux - m.evaluate(P)) / m.sigma(P, v.err), clip_sigma)
        n_clipped[k] = int((~keep).sum())
        keeps.append(keep)
    if any(n_clipped):
        log.info("stage4 joint: clipped %s integrations beyond %.1f sigma; re-fitting",
                 ", ".join(f"{v.label}:{c}" for v, c in zip(setup.visits, n_clipped)), clip_sigma)
        setup = setup.subset(keeps).restart(x)
        x, xerr, _ = _joint_lsq(setup)
    return setup, x, xerr, n_clipped


def _sample_joint(setup: JointSetup, post, x, xerr, f: dict, n_processes: int, progress: bool, res: dict):
    """emcee over the joint posterior (the linear baselines marginalised when ``f["marginalise"]``) from
    the least-squares solution ``x`` to convergence; returns the :class:`JointResult`."""
    ps = setup.params
    free = ps.free_names
    mpost = JointMarginalPosterior.build(setup, x, f["marginalise"])
    sps = mpost.params if mpost is not None else ps
    sampled = sps.free_names
    si = [free.index(n) for n in sampled]
    nd = len(sampled)
    nw = f["nwalkers"] or max(16, 2 * nd + 2)
    nw += nw % 2
    scale = walker_scale(sps, x[si], xerr[si])
    cov_s = getattr(setup, "lsq_cov", None)
    cov_s = None if cov_s is None else cov_s[np.ix_(si, si)]
    t_mc = _time.perf_counter()
    nproc = max(1, min(n_processes, nw // 2))

    target = mpost if mpost is not None else post
    if nproc > 1 and "fork" in multiprocessing.get_all_start_methods():
        with PooledPosterior(target, nproc) as pooled:
            sampler = run_emcee(pooled, x[si], scale, nwalkers=nw, nsteps=f["nsteps"], seed=f["seed"],
                                progress=progress or f["progress"], n_tau=f["n_tau"],
                                burn_in=f["burn_in"], moves=f["moves"], label="joint", cov=cov_s)
        post.ncalls += pooled.ncalls
    else:
        sampler = run_emcee(target, x[si], scale, nwalkers=nw, nsteps=f["nsteps"], seed=f["seed"],
                            progress=progress or f["progress"], n_tau=f["n_tau"], burn_in=f["burn_in"],
                            moves=f["moves"], label="joint", cov=cov_s)
        if mpost is not None:
            post.ncalls += mpost.ncalls
    chain = sampler.get_chain()
    burn = f["burn_in"]
    tau = chain_tau(chain, burn)
    if mpost is not None:
        thin = max(1, int(np.nanmin(tau) // 2)) if np.all(np.isfinite(tau)) else 1
        samples = mpost.draw(chain[burn::thin].reshape(-1, nd), np.random.default_rng(f["seed"] + 7919))
    else:
        samples = chain[burn:].reshape(-1, nd)
    kept = chain.shape[0] - burn
    ess = float(nw * kept / np.max(tau)) if np.all(np.isfinite(tau)) else float("nan")
    converged = bool(f["n_tau"] and np.all(np.isfinite(tau)) and kept >= f["n_tau"] * np.max(tau))
    res["sampled"] = list(sampled)
    res["mcmc_s"] = _time.perf_counter() - t_mc
    res["marginalised"] = [] if mpost is None else list(mpost.marginalised)
    med, lo, hi = posterior_summary(ps, samples)
    acc = float(np.mean(sampler.acceptance_fraction))
    mc_s = _time.perf_counter() - t_mc
    log.info("stage4 joint: emcee %d walkers x %d steps (burn-in %d): acceptance %.2f, max tau %.1f steps, "
             "%.1f tau kept, %.0f effective samples in %.1f s (%.1f per s)", nw, chain.shape[0], burn, acc,
             np.max(tau), kept / np.max(tau), ess, mc_s, ess / mc_s)
    if not converged:
        log.warning("stage4 joint: chain stopped at the cap of %d steps, %.1f autocorrelation times after "
                    "burn-in (< n_tau %s); posteriors may be unconverged", chain.shape[0],
                    kept / np.max(tau), f["n_tau"])
    jr = JointResult(median=med, err_lower=lo, err_upper=hi, samples=samples, chain=chain,
                     log_prob=sampler.get_log_prob(), tau=tau, ess=ess, converged=converged,
                     nsteps=chain.shape[0], burn_in=burn, acceptance=acc, **res)
    return jr


def _global_samples(jr: JointResult):
    """Full global vectors: the posterior samples (thinned to <= 4000) or the lsq solution alone."""
    ps = jr.setup.params
    if jr.samples is None:
        return None
    step = max(1, jr.samples.shape[0] // 4000)
    return ps.expand(jr.samples[::step])


def _stat(x):
    q = np.percentile(x, [16, 50, 84])
    return float(q[1]), float(q[1] - q[0]), float(q[2] - q[1])


def _visit_products(jr: JointResult, cfg):
    """Per-visit rows (visits.ecsv), curves for the figures and, in timing mode, the O-C table."""
    s = jr.setup
    ps = s.params
    Gmed = np.array([jr.median[n] for n in ps.names])[None, :]
    Gs = _global_samples(jr)
    rows, curves = [], []
    for k, (m, v) in enumerate(zip(s.models, s.visits)):
        P = s.visit_matrix(Gmed, k)[0]
        model = m.evaluate(P)
        sysm = m.systematics_model(P)
        sig = m.sigma(P, v.err)
        r = v.flux - model
        nfree_k = len(set(ps.free_index.tolist()) & set(s.maps[k].tolist()))
        row = {"label": v.label, "epoch": int(v.epoch), "band": v.band or "", "source": v.source,
               "n_points": int(v.time.size), "n_clipped": int(jr.n_clipped[k])}
        if Gs is not None:
            Pk = s.visit_matrix(Gs, k)
        for n in m.names:
            key = s.key(n, k) if n in s.scopes else n
            if n == "t0" and s.orbit == "ephemeris":
                if Gs is not None:
                    val, el, eu = _stat(Pk[:, m.index["t0"]])
                else:
                    val = float(P[m.index["t0"]])
                    J = np.zeros(len(ps.free_names))
                    fi = ps.free_names
                    if "t0" in fi:
                        J[fi.index("t0")] = 1.0
                    if "per" in fi:
                        J[fi.index("per")] = v.epoch
                    e = [jr.lsq_errors.get(x, 0.0) for x in fi]
                    # lsq: errors of T0 and P combined without their covariance (conservative for E != 0)
                    el = eu = float(np.sqrt(np.sum((J * np.nan_to_num(e)) ** 2)))
            else:
                val, el, eu = float(P[m.index[n]]), jr.err_lower.get(key, 0.0), jr.err_upper.get(key, 0.0)
            row[n], row[n + "_err_lower"], row[n + "_err_upper"] = val, el, eu
        row["chi2_red"] = float(np.sum((r / sig) ** 2) / max(v.flux.size - nfree_k, 1))
        row["rms_ppm"] = float(np.std(r / sysm) * 1e6)
        row["beta"] = red_noise_beta(r, v.time)
        rows.append(row)
        curves.append({"label": v.label, "band": v.band, "time": v.time, "t0": row["t0"], "flux": v.flux,
                       "model": model, "systematics": sysm, "astro": m.astro(P), "chi2_red": row["chi2_red"]})
    jr.visit_rows, jr.curves = rows, curves
    if s.orbit == "timing":
        t = np.array([r["t0"] for r in rows])
        e = np.array([0.5 * (r["t0_err_lower"] + r["t0_err_upper"]) for r in rows])
        eph = linear_ephemeris([r["epoch"] for r in rows], t, e)
        jr.timing = {"ephemeris": eph, "rows": [
            {"label": r["label"], "epoch": r["epoch"], "band": r["band"], "t0": r["t0"], "t0_err": float(ee),
             "t_calc": float(eph["T0"] + r["epoch"] * eph["P"]), "o_c_min": float(oc * 1440.0),
             "o_c_err_min": float(ee * 1440.0)} for r, ee, oc in zip(rows, e, eph["o_c"])]}
        log.info("stage4 joint timing: T0 %.6f +- %.6f, P %.8f +- %.8f d, chi2 %.2f for %d dof", eph["T0"],
                 eph["T0_err"], eph["P"], eph["P_err"], eph["chi2"], eph["dof"])


def _per_visit_fits(setup: JointSetup, cfg) -> list[FitResult]:
    """Each visit fitted alone (its own t0 and every declared parameter free; per fixed)."""
    from .stage import _fit_args

    args = _fit_args(cfg)
    args["method"] = cfg["joint"]["per_visit_fits"]
    args["clip_sigma"] = None  # the joint fit's clipping already applies to these points
    out = []
    for k, (m, v) in enumerate(zip(setup.models, setup.visits)):
        specs = {n: (copy.copy(sp) if n != "per" else sp) for n, sp in setup.visit_specs[k].specs.items()}
        fr = fit_lightcurve(m, ParameterSet(specs), v.flux, v.err, label=v.label,
                            seed=cfg["fitter"]["seed"] + k + 1, wavelength=v.wavelength, **args)
        fr.epoch = v.epoch
        out.append(fr)
        log.info("stage4 joint: visit %s alone: t0 %.6f, rp_rs %.5f, chi2_red %.2f", v.label, fr.median["t0"],
                 fr.median.get("rp_rs", np.nan), fr.chi2_red)
    return out
