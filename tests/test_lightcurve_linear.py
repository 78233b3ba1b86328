"""Analytic marginalisation of the linear baseline (f0, polynomial) and the error multiplier.

1. The marginal log-likelihood equals a brute-force numerical integral of the full likelihood times the
   flat priors over (f0, poly1, err_mult) at fixed nonlinear parameters.
2. Injection: emcee over the nonlinear parameters only (marginalised) gives the same Rp/Rs posterior as
   emcee over every parameter: mean within 0.1 sigma, width within 10 %; and the conditional draws
   give f0 / poly1 / err_mult posteriors matching the full sampling.
"""

import numpy as np
import pytest
from scipy.special import logsumexp

from tsoreduce.lightcurve import fit_lightcurve
from tsoreduce.lightcurve.linear import LinearBaseline, marginal_plan
from tsoreduce.lightcurve.parameters import ParameterSet
from tsoreduce.lightcurve.stage import build_model, build_parameters, validate_config

TRUTH = dict(t0=0.0, per=3.0, rp_rs=0.1, a_rs=10.0, inc=88.0, ecc=0.0, w=90.0, q1=0.3, q2=0.3, f0=1.0,
             ramp_amp1=2e-3, ramp_tau1=0.02, poly1=1e-3, err_mult=1.0)


def _case(seed=1, cadence=120.0, ppm=500.0, ramp="single"):
    rng = np.random.default_rng(seed)
    t = np.arange(-0.15, 0.15, cadence / 86400.0)
    cfg = validate_config({
        "model": "transit", "systematics": {"ramp": ramp, "polynomial_order": 1, "decorrelate": [],
                                            "noise": "err_mult"},
        "parameters": {"t0": {"value": 0.0, "prior": "uniform", "bounds": [-0.02, 0.02]}, "per": 3.0,
                       "rp_rs": {"value": 0.1, "prior": "uniform", "bounds": [0.03, 0.3]},
                       "a_rs": {"value": 10.0, "prior": "fixed"}, "inc": {"value": 88.0, "prior": "fixed"},
                       "q1": {"value": 0.3, "prior": "fixed"}, "q2": {"value": 0.3, "prior": "fixed"}}})
    m = build_model(t, cfg, {}, t_start=t[0])
    truth = TRUTH if ramp == "single" else {k: v for k, v in TRUTH.items() if not k.startswith("ramp")}
    flux = m.evaluate(truth) + 1e-6 * ppm * rng.standard_normal(t.size)
    err = np.full(t.size, 1e-6 * ppm)
    return m, build_parameters(m, cfg, flux), flux, err


def test_marginal_likelihood_equals_numerical_integral():
    m, ps, flux, err = _case()
    lin, noise, why = marginal_plan(m, ps.specs)
    assert lin == ["f0", "poly1"] and noise and why == ""
    base = LinearBaseline(m, ps.specs, flux, err, lin, noise)
    P = ps.expand(ps.start())
    P[m.index["rp_rs"]] = 0.1003
    P[m.index["ramp_amp1"]], P[m.index["ramp_tau1"]] = 2.1e-3, 0.019
    analytic = float(base.loglike(P[None, :])[0])
    # brute force: the model is g(t) f0 (1 + c1 dt); integrate L over a +-7 sigma grid of (f0, c1, s)
    g = m.evaluate(dict(zip(m.names, P)) | {"f0": 1.0, "poly1": 0.0})
    dt = m.systematics.dt_ref
    chi2, beta, chol = base.solve(P[None, :])
    cov = np.linalg.inv(chol[0] @ chol[0].T)
    f0s = beta[0, 0] + np.linspace(-7, 7, 81) * np.sqrt(cov[0, 0])
    c1s = beta[0, 1] / beta[0, 0] + np.linspace(-7, 7, 81) * np.sqrt(cov[1, 1]) / beta[0, 0]
    s_hat = np.sqrt(chi2[0] / flux.size)
    ss = s_hat * (1 + np.linspace(-7, 7, 61) / np.sqrt(2 * flux.size))
    F0, C1 = np.meshgrid(f0s, c1s, indexing="ij")
    model = g[None, None, :] * F0[..., None] * (1 + C1[..., None] * dt[None, None, :])
    r2 = np.sum(((flux - model) / err) ** 2, axis=-1)  # (f0, c1)
    n = flux.size
    ll = (-0.5 * r2[..., None] / ss ** 2 - n * np.log(ss) - np.log(err).sum() - 0.5 * n * np.log(2 * np.pi))
    widths = [ps["f0"].upper() - ps["f0"].lower(), ps["poly1"].upper() - ps["poly1"].lower(),
              ps["err_mult"].upper() - ps["err_mult"].lower()]
    cell = np.log((f0s[1] - f0s[0]) * (c1s[1] - c1s[0]) * (ss[1] - ss[0]))
    numeric = float(logsumexp(ll) + cell - np.sum(np.log(widths)))
    print(f"\nmarginal log-likelihood: analytic {analytic:.5f}, numerical integral {numeric:.5f}")
    assert analytic == pytest.approx(numeric, abs=2e-3)


def test_marginalised_posterior_equals_full_sampling():
    # no ramp: a Gaussian posterior, so that 60-tau chains compare to ~3 % (the ramp's marginal likelihood is
    # checked exactly in the integral test above)
    m, ps, flux, err = _case(seed=4, cadence=240.0, ppm=350.0, ramp="none")
    kw = dict(nsteps=8000, burn_in=200, n_tau=60, moves="de", seed=11, nwalkers=24)
    full = fit_lightcurve(m, ps, flux, err, marginalise=False, **kw)
    marg = fit_lightcurve(m, ps, flux, err, marginalise=True, **kw)
    assert marg.marginalised == ["f0", "poly1", "err_mult"] and full.marginalised == []
    assert marg.chain.shape[2] == len(marg.sampled) == 2 and marg.samples.shape[1] == len(marg.free) == 5
    print()
    stats = {}
    for n in ("rp_rs", "t0", "f0", "poly1", "err_mult"):
        a, b = full.derived_samples(n), marg.derived_samples(n)
        sd = np.std(a)
        stats[n] = ((np.mean(b) - np.mean(a)) / sd, np.std(b) / sd)
        print(f"{n:>10}: full {np.mean(a):.7g} +- {sd:.3g} (ESS {full.ess:.0f}, tau {np.max(full.tau):.0f}), "
              f"marginalised {np.mean(b):.7g} +- {np.std(b):.3g} (ESS {marg.ess:.0f}, tau {np.max(marg.tau):.0f}): "
              f"mean diff {stats[n][0]:+.3f} sigma, width ratio {stats[n][1]:.3f}")
    # Rp/Rs and t0 (sampled) and the conditional draws of the marginalised f0 / poly1 / err_mult
    for n in ("rp_rs", "t0", "f0", "poly1", "err_mult"):
        assert abs(stats[n][0]) < 0.1, n
        assert abs(stats[n][1] - 1) < 0.10, n
    assert np.max(marg.tau) < np.max(full.tau)


def test_plan_refuses_what_is_not_linear():
    m, ps, flux, err = _case()
    specs = dict(ps.specs)
    specs["poly1"] = ps["poly1"].__class__("poly1", 0.0, "normal", None, 1e-3, 0.0)
    lin, noise, why = marginal_plan(m, specs)
    assert lin == [] and "poly1" in why
    specs = dict(ps.specs)
    specs["err_mult"] = ps["err_mult"].fixed_at(1.0)
    lin, noise, why = marginal_plan(m, specs)
    assert lin == ["f0", "poly1"] and not noise
    # err_mult fixed: the likelihood uses s = 1 and the result is the s-conditional marginal
    base = LinearBaseline(m, specs, flux, err, lin, noise)
    P = ParameterSet(specs).expand(ParameterSet(specs).start())
    assert np.isfinite(base.loglike(P[None, :])[0])
