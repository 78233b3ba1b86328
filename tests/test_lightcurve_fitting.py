"""Stage 4 injection-recovery on synthetic light curves (transit, eclipse, phase curve; each with a
settling ramp, a linear baseline, a trace-position systematic and white noise), and the Stage 4 run and its written products.
"""

import numpy as np
import pytest
from astropy.table import Table
from astropy.units import cds

from tsoreduce.datamodel import LightCurves
from tsoreduce.lightcurve import (LightCurveModel, ParameterSet, fit_lightcurve, parse_parameter, read_chains,
                                  run_stage4)
from tsoreduce.pipeline import run_stage4_files

ERR = 3e-4


def _setup(kind, seed, n=None):
    rng = np.random.default_rng(seed)
    if kind == "phasecurve":
        n = n or 2500
        t = 60000.0 + np.linspace(-0.1, 0.95, n)
        truth = dict(t0=60000.05, per=0.8135, rp_rs=0.16, a_rs=4.9, inc=82.0, ecc=0.0, w=90.0, fp=0.005,
                     pc_amp1=0.0018, pc_offset1=12.0, q1=0.1, q2=0.3)
    elif kind == "eclipse":
        n = n or 1500
        t = 60000.0 + np.linspace(0.25, 0.55, n)
        truth = dict(t0=60000.0, per=0.8135, rp_rs=0.16, a_rs=4.9, inc=82.0, ecc=0.0, w=90.0, fp=0.004)
    else:
        n = n or 1500
        t = 60000.0 + np.linspace(-0.15, 0.15, n)
        truth = dict(t0=60000.01, per=3.0, rp_rs=0.12, a_rs=12.0, inc=87.0, ecc=0.0, w=90.0, q1=0.3, q2=0.3)
    x = np.cumsum(rng.standard_normal(n)) * 0.01
    truth.update(f0=1.0, ramp_amp1=0.004, ramp_tau1=0.02, poly1=0.002, decorr_trace_x=2e-4, err_mult=1.0)
    model = LightCurveModel(t, kind, ramp="single", poly_order=1, regressors={"trace_x": x}, t_start=t[0] - 0.005)
    flux = model.evaluate(truth) + ERR * rng.standard_normal(n)
    err = np.full(n, ERR)
    free = {"t0": (truth["t0"] - 0.02, truth["t0"] + 0.02), "rp_rs": (0.05, 0.3), "a_rs": (2.0, 30.0),
            "inc": (70.0, 90.0), "fp": (0.0, 0.02), "pc_amp1": (0.0, 0.01), "pc_offset1": (-60.0, 60.0),
            "q1": (0.0, 1.0), "q2": (0.0, 1.0), "f0": (0.9, 1.1), "ramp_amp1": (-0.1, 0.1),
            "ramp_tau1": (1e-3, 0.2), "poly1": (-0.1, 0.1), "decorr_trace_x": (-0.01, 0.01),
            "err_mult": (0.5, 3.0)}
    if kind == "eclipse":
        for k in ("rp_rs", "a_rs", "inc"):
            free.pop(k)
    if kind == "phasecurve":
        free.pop("q1"), free.pop("q2")
    specs = {}
    for name in model.names:
        v = truth[name]
        if name in free:
            lo, hi = free[name]
            start = v + 0.02 * (hi - lo) * rng.uniform(-1, 1) if name not in ("err_mult",) else 1.0
            prior = "loguniform" if name == "ramp_tau1" else "uniform"
            if name == "ramp_tau1":
                start = v * np.exp(0.3 * rng.uniform(-1, 1))
            specs[name] = parse_parameter(name, {"value": float(np.clip(start, lo, hi)), "prior": prior,
                                                 "bounds": [lo, hi]})
        else:
            specs[name] = parse_parameter(name, v)
    return model, ParameterSet(specs), flux, err, truth


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["transit", "eclipse", "phasecurve"])
def test_injection_recovery_lsq_many_seeds(kind):
    """Least squares with covariance errors, 40 seeds: every parameter within 2 sigma in >= 85 % of
    them (expected 95 %; 85 % is 3 binomial sigma below), pulls of unit width (0.7-1.4: the errors
    are honest) and no systematic bias (mean pull within 3/sqrt(40))."""
    nseed = 40
    pulls = {}
    for seed in range(nseed):
        model, params, flux, err, truth = _setup(kind, seed)
        r = fit_lightcurve(model, params, flux, err, method="lsq", clip_sigma=None)
        for n in r.free:
            if n == "err_mult":
                continue
            pulls.setdefault(n, []).append((r.median[n] - truth[n]) / r.err_lower[n])
    report = []
    for n, p in pulls.items():
        p = np.array(p)
        assert np.all(np.isfinite(p)), n
        frac = np.mean(np.abs(p) < 2)
        report.append(f"{n} {frac:.0%} (pull sd {p.std():.2f})")
        assert frac >= 0.85, f"{kind} {n}: only {frac:.0%} of seeds within 2 sigma (pulls {np.round(p, 2)})"
        assert 0.7 < p.std() < 1.4, f"{kind} {n}: pull width {p.std():.2f}"
        assert abs(p.mean()) < 3 / np.sqrt(nseed) + 0.1, f"{kind} {n}: biased, mean pull {p.mean():.2f}"
    print(f"\n{kind}, {nseed} seeds, within 2 sigma: " + ", ".join(report))


@pytest.mark.slow
def test_injection_recovery_emcee_transit():
    model, params, flux, err, truth = _setup("transit", 123, n=1000)
    r_lsq = fit_lightcurve(model, params, flux, err, method="lsq")
    r = fit_lightcurve(model, params, flux, err, method="emcee", nwalkers=32, nsteps=500, burn_in=250, seed=1)
    assert r.chain.shape == (500, 32, len(r.sampled)) and 0.1 < r.acceptance < 0.8
    assert r.marginalised == ["f0", "poly1", "err_mult"] and r.samples.shape[1] == len(r.free)
    within2 = []
    for n in r.free:
        if n == "err_mult":
            continue
        if n in ("q1", "q2"):
            # this noise realisation prefers other limb darkening: a converged chain (DE moves, 50 tau) gives
            # q1 = 0.48 +- 0.07, q2 = 0.073 +0.067/-0.047 against 0.3 / 0.3 injected, and the least squares
            # (now solved to convergence) the same; the calibration of q1/q2 errors is tested over 30 seeds
            # in test_injection_recovery_lsq_many_seeds.  Until the lsq fix this test started emcee from the
            # near-truth starting values, where trf used to stop.
            continue
        # the error on the side of the truth (posteriors of bounded parameters are asymmetric)
        sig = r.err_upper[n] if truth[n] > r.median[n] else r.err_lower[n]
        pull = (r.median[n] - truth[n]) / sig
        assert abs(pull) < 3, f"{n}: {r.median[n]} vs injected {truth[n]} ({pull:.1f} sigma)"
        within2.append(abs(pull) < 2)
    assert np.mean(within2) >= 0.8
    sig_rp = 0.5 * (r.err_lower["rp_rs"] + r.err_upper["rp_rs"])
    # the sampler agrees with the least-squares optimum
    assert abs(r.median["rp_rs"] - r_lsq.median["rp_rs"]) < 0.5 * sig_rp
    # posterior width agrees with the least-squares covariance; here q2 sits ~1 sigma from its bound 0,
    # which truncates the rp-limb-darkening degeneracy in the posterior but not in the linearised
    # covariance (measured ratio 0.58 in this chain, 0.60 in a converged one)
    assert 0.5 < sig_rp / r_lsq.err_lower["rp_rs"] < 1.6


def _synthetic_lc(kind="transit", nchan=3, seed=7):
    rng = np.random.default_rng(seed)
    model, params, _, _, truth = _setup(kind, seed)
    t = model.time
    rps = np.array([0.115, 0.12, 0.125])[:nchan]
    flux, err = [], []
    for k in range(nchan):
        v = dict(truth, rp_rs=rps[k], ramp_amp1=0.004 + 0.001 * k)
        if kind != "transit":
            v["fp"] = truth["fp"] * (1 + 0.2 * k)
        flux.append(model.evaluate(v) + 2 * ERR * rng.standard_normal(t.size))
        err.append(np.full(t.size, 2 * ERR))
    flux, err = np.array(flux), np.array(err)
    white = model.evaluate(dict(truth)) + ERR * rng.standard_normal(t.size)
    wl = np.array([6.0, 8.0, 10.0])[:nchan]
    lc = LightCurves(time=t, flux=flux, err=err, wavelength=wl, wavelength_lower=wl - 1, wavelength_upper=wl + 1,
                     white_flux=white, white_err=np.full(t.size, ERR),
                     regressors={"trace_x": model.systematics._z[0].copy()}, meta={"target": "synthetic"})
    return lc, truth, rps


def _stage_cfg(truth, method="lsq", **fitter):
    return {"model": "transit", "exclude_first": 0, "clip_sigma": 5.0, "n_processes": 2,
            "parameters": {"t0": {"value": truth["t0"] + 0.002, "prior": "uniform",
                                  "bounds": [truth["t0"] - 0.02, truth["t0"] + 0.02]},
                           "per": truth["per"],
                           "rp_rs": {"value": 0.11, "prior": "uniform", "bounds": [0.05, 0.3]},
                           "a_rs": {"value": 11.0, "prior": "uniform", "bounds": [5, 20]},
                           "inc": {"value": 88.0, "prior": "uniform", "bounds": [80, 90]}},
            "fitter": {"method": method, **fitter}}


def test_run_stage4_products_lsq(tmp_path):
    lc, truth, rps = _synthetic_lc()
    res = run_stage4_files(lc, _stage_cfg(truth), tmp_path, plot=True, progress=False)
    with cds.enable():
        spec = Table.read(tmp_path / "spectrum.ecsv")
    for c in ("wavelength", "wavelength_lower", "wavelength_upper", "rp_rs", "rp_rs_err_lower", "rp_rs_err_upper",
              "transit_depth", "transit_depth_err_lower", "transit_depth_err_upper"):
        assert c in spec.colnames
    assert str(spec["wavelength"].unit) == "um" and str(spec["transit_depth"].unit) == "ppm"
    assert len(spec) == 3
    pull = (spec["rp_rs"] - rps) / spec["rp_rs_err_lower"]
    assert np.all(np.abs(pull) < 3), pull
    np.testing.assert_allclose(spec["transit_depth"], 1e6 * spec["rp_rs"] ** 2, rtol=1e-12)
    wf = Table.read(tmp_path / "white_fit.ecsv")
    assert list(wf.colnames) == ["name", "median", "err_lower", "err_upper", "fixed", "flag"]
    assert wf.meta["tsoreduce_version"] and spec.meta["stage4_config"]["model"] == "transit"
    row = wf[wf["name"] == "per"][0]
    assert row["fixed"] and row["err_lower"] == 0
    # channels hold the orbit at the white-light values
    for ch in res.channels:
        assert ch.fixed["t0"] and ch.median["t0"] == res.white.median["t0"]
        assert not ch.fixed["rp_rs"]
    for f in ("chains.h5", "channel_fits.ecsv", "figures/white_fit.png", "figures/spectrum.png",
              "figures/white_rms_binning.png", "figures/channel_fits.png"):
        assert (tmp_path / f).exists(), f


@pytest.mark.slow
def test_run_stage4_emcee_parallel(tmp_path):
    lc, truth, rps = _synthetic_lc(nchan=2)
    cfg = _stage_cfg(truth, "emcee", nwalkers=28, nsteps=80, burn_in=40)
    res = run_stage4_files(lc, cfg, tmp_path, plot=True, progress=False)
    assert (tmp_path / "figures" / "white_corner.png").exists()
    chains = read_chains(tmp_path / "chains.h5")
    assert set(chains) == {"white", "channel_00", "channel_01"}
    assert chains["white"]["chain"].shape[:2] == (80, 28)
    assert "rp_rs" in chains["channel_00"]["free_names"] and "t0" not in chains["channel_00"]["free_names"]
    for ch, rp in zip(res.channels, rps):
        sig = 0.5 * (ch.err_lower["rp_rs"] + ch.err_upper["rp_rs"])
        assert abs(ch.median["rp_rs"] - rp) < 4 * sig
    assert res.white.tau is not None and res.white.tau.size == len(res.white.sampled) == len(res.white.free) - 3
    w = chains["white"]
    assert w["chain"].shape[2] == len(w["sampled_names"]) and w["samples"].shape[1] == len(w["free_names"])
    assert w["marginalised"] == ["f0", "poly1", "err_mult"]


def test_eclipse_spectrum_has_eclipse_columns(tmp_path):
    lc, truth, _ = _synthetic_lc("eclipse", nchan=2)
    cfg = {"model": "eclipse", "n_processes": 1, "fitter": {"method": "lsq"},
           "parameters": {"t0": {"value": truth["t0"], "prior": "uniform",
                                 "bounds": [truth["t0"] - 0.02, truth["t0"] + 0.02]},
                          "per": truth["per"], "rp_rs": 0.16, "a_rs": 4.9, "inc": 82.0,
                          "fp": {"value": 0.003, "prior": "uniform", "bounds": [0, 0.02]}}}
    res = run_stage4(lc, cfg).product
    spec = res.spectrum
    assert "eclipse_depth" in spec.colnames and "eclipse_depth_err_upper" in spec.colnames
    expect = 1e6 * truth["fp"] * np.array([1.0, 1.2])
    assert np.all(np.abs(spec["eclipse_depth"] - expect) < 4 * spec["eclipse_depth_err_lower"])


# ----------------------------------------------------------------- bad input and prior bounds (issue 13)
def test_unsorted_and_nan_times_are_sorted_and_dropped_with_warnings(caplog):
    import logging

    from tsoreduce.lightcurve import fit_white

    lc, truth, _ = _synthetic_lc(nchan=1)
    cfg = _stage_cfg(truth)
    ref = fit_white(lc, cfg)
    rng = np.random.default_rng(3)
    perm = rng.permutation(lc.nints)
    t = lc.time[perm].copy()
    t[[5, 50, 500]] = np.nan  # three integrations lose their time
    shuffled = lc.replace(time=t, flux=lc.flux[:, perm], err=lc.err[:, perm], white_flux=lc.white_flux[perm],
                          white_err=lc.white_err[perm], mask=lc.mask[perm],
                          regressors={k: v[perm] for k, v in lc.regressors.items()})
    with caplog.at_level(logging.WARNING):
        res = fit_white(shuffled, cfg)
    msgs = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("3 of 1500 integrations have a non-finite time" in m for m in msgs)
    assert any("sorted by time" in m for m in msgs)
    assert np.all(np.diff(res.time) > 0) and res.time.size + 3 + res.n_clipped == lc.nints + ref.n_clipped
    print(f"rp_rs sorted-from-shuffled {res.median['rp_rs']:.5f} vs ordered {ref.median['rp_rs']:.5f} "
          f"+- {ref.err_lower['rp_rs']:.5f}")
    assert abs(res.median["rp_rs"] - ref.median["rp_rs"]) < 0.2 * ref.err_lower["rp_rs"]
    # a zero-filled placeholder row (time 0, flux 0, err 0; seen in a real table) sorts first but must
    # not become the time reference of the settling ramp
    t0 = lc.time.copy()
    t0[700] = 0.0
    wf, we = lc.white_flux.copy(), lc.white_err.copy()
    wf[700], we[700] = 0.0, 0.0
    cf, ce = lc.flux.copy(), lc.err.copy()
    cf[:, 700], ce[:, 700] = 0.0, 0.0
    res0 = fit_white(lc.replace(time=t0, white_flux=wf, white_err=we, flux=cf, err=ce), cfg)
    assert abs(res0.median["rp_rs"] - ref.median["rp_rs"]) < 0.2 * ref.err_lower["rp_rs"]
    assert abs(res0.median["ramp_amp1"] - ref.median["ramp_amp1"]) < 0.2 * ref.err_lower["ramp_amp1"]


def test_parameter_pinned_at_a_prior_bound_is_flagged_in_every_table(tmp_path, caplog):
    import logging

    lc, truth, rps = _synthetic_lc(nchan=2)
    cfg = _stage_cfg(truth)
    # the prior excludes the true radius (0.115 - 0.12): the fit piles up on the lower bound
    cfg["parameters"]["rp_rs"] = {"value": 0.15, "prior": "uniform", "bounds": [0.14, 0.3]}
    with caplog.at_level(logging.WARNING):
        res = run_stage4_files(lc, cfg, tmp_path, plot=False, progress=False)
    assert "at_lower_bound" in res.white.flags["rp_rs"]
    assert any("rp_rs" in r.getMessage() and "at_lower_bound" in r.getMessage() for r in caplog.records
               if r.levelno == logging.WARNING)
    wf = Table.read(tmp_path / "white_fit.ecsv")
    assert "at_lower_bound" in wf["flag"][list(wf["name"]).index("rp_rs")]
    with cds.enable():
        spec = Table.read(tmp_path / "spectrum.ecsv")
    assert all("rp_rs:at_lower_bound" in str(f) for f in spec["flag"])
    cf = Table.read(tmp_path / "channel_fits.ecsv")
    sel = cf["name"] == "rp_rs"
    assert all("at_lower_bound" in str(f) for f in cf["flag"][sel])
    # a well-constrained parameter inside its prior is not flagged
    ok = run_stage4(lc, _stage_cfg(truth)).product
    assert ok.white.flags["rp_rs"] == "" and all(c.flags["rp_rs"] == "" for c in ok.channels)


def test_error_larger_than_the_prior_is_flagged():
    from tsoreduce.lightcurve.fitting import FitResult, bound_flags

    r = FitResult(label="x", names=["rp_rs"], free=["rp_rs"], median={"rp_rs": 0.0502},
                  err_lower={"rp_rs": 12.1}, err_upper={"rp_rs": 12.1}, fixed={"rp_rs": False},
                  bounds={"rp_rs": (0.05, 0.3)})
    assert bound_flags(r)["rp_rs"] == "at_lower_bound;err_exceeds_prior"


def test_walkers_that_cannot_start_raise_a_named_error():
    from tsoreduce.errors import FitError
    from tsoreduce.lightcurve.fitting import LogPosterior, run_emcee

    model, params, flux, err, truth = _setup("transit", 1, n=200)
    post = LogPosterior(model, params, flux, err)
    x0 = params.start()
    lo, hi = params.bounds()
    x0[params.free_names.index("rp_rs")] = hi[params.free_names.index("rp_rs")] + 1.0  # outside the prior
    with pytest.raises(FitError, match="walkers still have a non-finite posterior"):
        run_emcee(post, x0, np.full(x0.size, 1e-6), nwalkers=2 * x0.size + 2, nsteps=10)


def test_noise_figures_on_white_noise_at_the_limit(tmp_path):
    """White noise at exactly the quoted ERR: every ratio ~ 1 and beta ~ 1 (1500 points: the std of a
    sample rms is 1/sqrt(2n) = 1.8 %; beta scatters by ~ 10 %)."""
    lc, truth, rps = _synthetic_lc(nchan=3)
    res = run_stage4_files(lc, _stage_cfg(truth), tmp_path, plot=True, progress=False)
    for r in [res.white] + res.channels:
        n = r.noise
        print(f"{r.label}: expected {n['expected_ppm']:.0f} ppm, residual {n['achieved_resid_ppm']:.0f} ppm "
              f"(ratio {n['ratio_resid']:.3f}), p2p ratio {n['ratio_p2p']:.3f}, beta {n['beta']:.2f}")
        assert abs(n["ratio_resid"] - 1) < 0.06 and abs(n["ratio_p2p"] - 1) < 0.1
        assert 0.75 < n["beta"] < 1.3
    cf = Table.read(tmp_path / "channel_fits.ecsv")
    assert set(cf.meta["noise"]) == {"channel_00", "channel_01", "channel_02"}
    with cds.enable():
        spec = Table.read(tmp_path / "spectrum.ecsv")
    np.testing.assert_allclose(spec["noise_ratio"], [c.noise["ratio_resid"] for c in res.channels])
    assert "noise" in Table.read(tmp_path / "white_fit.ecsv").meta


def test_log_uniform_prior_bounds_are_judged_in_log_space():
    from tsoreduce.lightcurve.fitting import FitResult, bound_flags

    def res(m, lo_err, hi_err):
        return FitResult(label="x", names=["ramp_tau1"], free=["ramp_tau1"], median={"ramp_tau1": m},
                         err_lower={"ramp_tau1": lo_err}, err_upper={"ramp_tau1": hi_err}, fixed={"ramp_tau1": False},
                         bounds={"ramp_tau1": (2e-4, 0.5, True)}, samples=np.zeros((1, 1)))
    # 50 s on a [17 s, 12 h] log-uniform prior is well inside it (seen flagged with linear distances)
    assert bound_flags(res(5.8e-4, 8e-5, 8e-5))["ramp_tau1"] == ""
    assert bound_flags(res(2.05e-4, 4e-6, 2e-5))["ramp_tau1"] == "at_lower_bound"


def test_run_emcee_samples_any_vectorised_callable():
    """run_emcee takes any vectorised log-probability (the joint fit's pooled posterior has no
    ParameterSet): a 2-D standard normal is sampled with the right mean and width."""
    import numpy as np
    from tsoreduce.lightcurve.fitting import run_emcee

    def logp(theta):
        theta = np.atleast_2d(theta)
        return -0.5 * np.sum(theta ** 2, axis=1)

    sampler = run_emcee(logp, np.zeros(2), np.ones(2), nwalkers=16, nsteps=1500, seed=3)
    flat = sampler.get_chain(discard=300, flat=True)
    print(f"\nmean {flat.mean(axis=0)}, std {flat.std(axis=0)}")
    assert np.all(np.abs(flat.mean(axis=0)) < 0.15)
    assert np.all(np.abs(flat.std(axis=0) - 1) < 0.15)


def test_clip_mask_clips_outliers_and_never_empties_a_curve(caplog):
    """Residual clipping: a 50-sigma outlier and a NaN go, Gaussian points stay (5 sigma keeps all but
    ~6e-7 of them); residuals without scatter keep every finite point, with a WARNING (it used to drop
    them all, leaving the re-fit an empty light curve)."""
    import logging

    from tsoreduce.lightcurve.fitting import clip_mask

    r = np.random.default_rng(3).normal(size=2000)
    r[5], r[6] = 50.0, np.nan
    keep = clip_mask(r, 5.0)
    assert not keep[5] and not keep[6] and keep.sum() == 1998
    flat = np.zeros(10)
    flat[3] = 1.0
    with caplog.at_level(logging.WARNING, logger="tsoreduce.lightcurve.fitting"):
        assert clip_mask(flat, 5.0).all()
    assert "no point clipped" in caplog.text
