"""Joint Stage 4 fits across visits: injection-recovery on a simulated 3-visit set (two bands, three
cadences, ramps on two visits), one visit = the single-visit fit, bad input stopped before fitting,
YAML list input.

The 30-seed test uses the least-squares covariance errors (not emcee) to stay fast: for these
well-sampled transits the posterior is close to Gaussian, so the Jacobian covariance is the posterior
covariance to first order, and the pull widths (measured below) test exactly that claim.
"""

import numpy as np
import pytest

from tsoreduce.errors import ConfigError, NoTransitInWindowError, ScopeError, VisitOverlapError
from tsoreduce.lightcurve import LightCurveModel, fit_lightcurve
from tsoreduce.lightcurve import joint as J
from tsoreduce.pipeline import run_stage4_files
from tsoreduce.lightcurve.stage import build_model, build_parameters, validate_config
from tsoreduce.lightcurve.visits import make_visits

TRUTH = dict(t0=60000.0, per=3.0, a_rs=10.0, inc=87.5, ecc=0.0, w=90.0)  # b = 0.44: away from the inc = 90 bound
RP = {"A": 0.10, "B": 0.12}
# label, band, epoch, cadence (s), ramp amplitude (None: no ramp), noise (ppm)
VISITS = [("v1", "A", 0, 60.0, 2e-3, 500.0), ("v2", "B", 3, 120.0, None, 400.0), ("v3", "A", 7, 90.0, -1.5e-3, 600.0)]
LD = {"A": (0.30, 0.30), "B": (0.30, 0.30)}  # fixed in the fits (not the subject here)


def _simulate(seed, visits=VISITS, half=0.16):
    rng = np.random.default_rng(seed)
    out, truth = [], {}
    for label, band, epoch, cad, ramp, ppm in visits:
        tc = TRUTH["t0"] + epoch * TRUTH["per"]
        t = np.arange(tc - half, tc + half, cad / 86400.0)
        m = LightCurveModel(t, "transit", ramp="single" if ramp is not None else "none", poly_order=1, t_start=t[0])
        v = dict(TRUTH, t0=tc, rp_rs=RP[band], q1=LD[band][0], q2=LD[band][1], f0=1.0 + 0.01 * epoch,
                 poly1=1e-3 * (epoch - 3), err_mult=1.0)
        if ramp is not None:
            v.update(ramp_amp1=ramp, ramp_tau1=0.02)
        flux = m.evaluate(v) + 1e-6 * ppm * rng.standard_normal(t.size)
        out.append({"time": t, "flux": flux, "err": np.full(t.size, 1e-6 * ppm), "visit": label, "band": band})
        truth.update({f"f0@{label}": v["f0"], f"poly1@{label}": v["poly1"]})
        if ramp is not None:
            truth[f"ramp_amp1@{label}"] = ramp
    truth.update({"t0": TRUTH["t0"], "per": TRUTH["per"], "a_rs": TRUTH["a_rs"], "inc": TRUTH["inc"],
                  "rp_rs@A": RP["A"], "rp_rs@B": RP["B"]})
    return out, truth


def _config(orbit="ephemeris", method="lsq", start_shift=0.0, labels=("v1", "v2", "v3")):
    return {
        "model": "transit",
        "systematics": {"ramp": "none", "polynomial_order": 1, "decorrelate": [], "noise": "err_mult"},
        "clip_sigma": None,
        "joint": {"orbit": orbit, "per_visit_fits": "none",
                  "systematics": {k: {"ramp": "single"} for k in ("v1", "v3") if k in labels}},
        "parameters": {
            "t0": {"value": 60000.0 + start_shift, "prior": "uniform", "bounds": [59999.95, 60000.05]},
            "per": ({"value": 3.0 + start_shift / 10, "prior": "uniform", "bounds": [2.98, 3.02]}
                    if orbit == "ephemeris" else {"value": 3.0, "prior": "fixed"}),
            "rp_rs": {"value": 0.11, "prior": "uniform", "bounds": [0.03, 0.3], "scope": "per_band"},
            "a_rs": {"value": 10.5, "prior": "uniform", "bounds": [4.0, 30.0]},
            "inc": {"value": 87.2, "prior": "uniform", "bounds": [80.0, 90.0]},
            # limb darkening fixed per band at the truth: the test is about the joint bookkeeping
            "q1": {"value": 0.3, "prior": "fixed"}, "q2": {"value": 0.3, "prior": "fixed"},
        },
        "fitter": {"method": method, "nsteps": 3000, "burn_in": 300, "seed": 3},
    }


@pytest.fixture(scope="module")
def injection():
    rows = []
    for seed in range(30):
        entries, truth = _simulate(seed)
        cfg = _config(start_shift=0.002 * ((seed % 5) - 2))
        setup = J.JointSetup(make_visits(entries, regressors=[]), validate_config(cfg))
        x, err, _ = J._joint_lsq(setup)
        free = setup.params.free_names
        rows.append({n: ((x[free.index(n)] - truth[n]) / err[free.index(n)]) for n in truth if n in free})
    return rows


def test_injection_recovery_30_seeds(injection):
    names = sorted(injection[0])
    print()
    for n in names:
        pulls = np.array([r[n] for r in injection])
        within = np.mean(np.abs(pulls) < 2.0)
        width = np.std(pulls)
        print(f"{n:>16}: within 2 sigma {100 * within:5.1f} %, pull mean {np.mean(pulls):+.2f}, width {width:.2f}")
        assert within >= 0.85, n
        assert 0.7 <= width <= 1.4, n
        assert abs(np.mean(pulls)) < 3 * width / np.sqrt(len(pulls)) + 0.2, n


def test_one_visit_equals_single_visit_fit():
    entries, _ = _simulate(11, visits=[VISITS[0]])
    cfg = validate_config(_config(labels=("v1",)))
    cfg["parameters"]["per"] = {"value": 3.0, "prior": "fixed"}
    cfg["parameters"]["q1"] = {"value": 0.3, "prior": "fixed"}
    cfg["clip_sigma"] = 5.0
    jr = J.fit_joint(entries, cfg)
    single_cfg = validate_config({k: v for k, v in cfg.items() if k != "joint"} | {"systematics": dict(
        cfg["systematics"], ramp="single")})
    e = entries[0]
    m = build_model(e["time"], single_cfg, {}, t_start=e["time"][0])
    params = build_parameters(m, single_cfg, e["flux"])
    fr = fit_lightcurve(m, params, e["flux"], e["err"], method="lsq", clip_sigma=5.0)
    for n in fr.free:
        key = n if n in ("t0", "a_rs", "inc") else (f"{n}@A" if n == "rp_rs" else f"{n}@v1")
        print(f"{n}: joint {jr.median[key]:.8g} +- {jr.err_lower[key]:.3g}, single {fr.median[n]:.8g} +- "
              f"{fr.err_lower[n]:.3g}")
        # same model, data, priors and clipping; the residual differences are the optimisers' stopping
        # points and finite-difference Jacobians: fit_lsq's trf works on t0 itself, so its xtol (relative to
        # |x| ~ 6e4 d) and difference steps (~1e-8 |t0|) are coarse; the joint solver works in scaled offsets
        assert abs(jr.median[key] - fr.median[n]) < 0.05 * fr.err_lower[n], n
        assert jr.err_lower[key] == pytest.approx(fr.err_lower[n], rel=0.03), n
    assert jr.visit_rows[0]["chi2_red"] == pytest.approx(fr.chi2_red, rel=1e-3)


def _no_fit(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("fitting started before the input was checked")

    monkeypatch.setattr(J, "_joint_lsq", boom)


def test_overlapping_visits_error(monkeypatch):
    _no_fit(monkeypatch)
    entries, _ = _simulate(1, visits=[VISITS[0], ("v2", "B", 0, 120.0, None, 400.0)])
    entries[1]["time"] = entries[1]["time"] + 0.05  # overlaps v1, same epoch
    with pytest.raises(VisitOverlapError, match="overlap"):
        J.fit_joint(entries, _config(labels=("v1", "v2")))


def test_visit_without_transit_error(monkeypatch):
    _no_fit(monkeypatch)
    entries, _ = _simulate(2)
    entries[1]["time"] = entries[1]["time"] + 1.0  # the window now misses epoch 3's transit
    with pytest.raises(NoTransitInWindowError, match="v2"):
        J.fit_joint(entries, _config())


def test_per_band_without_band_error(monkeypatch):
    _no_fit(monkeypatch)
    entries, _ = _simulate(3)
    entries[2]["band"] = None
    with pytest.raises(ScopeError, match="rp_rs.*v3"):
        J.fit_joint(entries, _config())


def test_scope_and_timing_config_errors(monkeypatch):
    _no_fit(monkeypatch)
    entries, _ = _simulate(4)
    cfg = _config()
    cfg["parameters"]["t0"]["scope"] = "per_visit"
    with pytest.raises(ScopeError, match="timing"):
        J.fit_joint(entries, cfg)
    cfg = _config(orbit="timing")
    cfg["parameters"]["per"] = {"value": 3.0, "prior": "uniform", "bounds": [2.9, 3.1]}
    with pytest.raises(ConfigError, match="fixed"):
        J.fit_joint(entries, cfg)
    cfg = _config()
    cfg["parameters"]["rp_rs"]["scope"] = "per_planet"
    with pytest.raises(ConfigError, match="scope"):
        J.fit_joint(entries, cfg)


def test_timing_mode_o_c_and_products(tmp_path):
    entries, truth = _simulate(5)
    cfg = _config(orbit="timing")
    cfg["joint"]["per_visit_fits"] = "lsq"
    jr = run_stage4_files(entries, cfg, tmp_path, plot=True, progress=False).joint
    eph = jr.timing["ephemeris"]
    print(f"\ntiming: P {eph['P']:.6f} +- {eph['P_err']:.6f}, T0 {eph['T0']:.6f} +- {eph['T0_err']:.6f}, "
          f"chi2 {eph['chi2']:.2f} / {eph['dof']}")
    assert abs(eph["P"] - 3.0) < 4 * eph["P_err"]
    assert abs(eph["T0"] - 60000.0) < 4 * eph["T0_err"]
    from astropy.table import Table

    tt = Table.read(tmp_path / "transit_times.ecsv")
    vt = Table.read(tmp_path / "visits.ecsv")
    assert list(tt["epoch"]) == [0, 3, 7] and list(vt["label"]) == ["v1", "v2", "v3"]
    assert np.all(np.abs(tt["o_c_min"]) < 4 * tt["o_c_err_min"])
    for c in ("t0", "t0_err_lower", "rp_rs", "rp_rs_err_upper", "f0", "chi2_red", "rms_ppm", "beta"):
        assert c in vt.colnames, c
    assert np.all(np.isfinite(vt["beta"])) and np.all(np.abs(vt["chi2_red"] - 1) < 0.2)
    assert (tmp_path / "figures" / "joint_lightcurves.png").is_file()
    assert (tmp_path / "figures" / "o_c.png").is_file()
    wf = Table.read(tmp_path / "white_fit.ecsv")
    assert "a_rs" in list(wf["name"]) and "rp_rs@A" in list(wf["name"])


def test_emcee_joint_converges_and_agrees_with_lsq():
    entries, truth = _simulate(6, visits=[("v1", "A", 0, 240.0, None, 400.0), VISITS[1]])
    cfg = _config(method="emcee", labels=())
    cfg["fitter"].update(nsteps=4000, burn_in=200, n_tau=30, nwalkers=32)
    cfg["n_processes"] = 1
    cfg["parameters"]["inc"] = {"value": 87.5, "prior": "fixed"}
    jr = J.fit_joint(entries, cfg)
    print(f"\nemcee: {jr.nsteps} steps, tau max {np.max(jr.tau):.1f}, ESS {jr.ess:.0f}, converged {jr.converged}")
    assert jr.converged and jr.nsteps < 4000
    # f0, poly1 and err_mult of each visit are marginalised analytically and drawn afterwards
    assert set(jr.marginalised) == {f"{n}@{v}" for n in ("f0", "poly1", "err_mult") for v in ("v1", "v2")}
    assert jr.chain.shape[2] == len(jr.sampled) == len(jr.free) - 6 and jr.samples.shape[1] == len(jr.free)
    for n in jr.marginalised:
        assert abs(jr.median[n] - jr.lsq_values[n]) < 0.5 * jr.lsq_errors[n], n
    for n in ("t0", "per", "a_rs", "rp_rs@A", "rp_rs@B"):
        e = jr.lsq_errors[n]
        assert abs(jr.median[n] - jr.lsq_values[n]) < 0.5 * e, n
        assert 0.7 < 0.5 * (jr.err_lower[n] + jr.err_upper[n]) / e < 1.4, n


def test_yaml_list_input(tmp_path):
    from tsoreduce.config import validate_run_config

    p = tmp_path / "a.ecsv"
    p.write_text("x")
    user = {"name": "j", "stages": 4, "input": {"lightcurves": [{"path": "a.ecsv", "visit": "x", "band": 3.2},
                                                                "a.ecsv"]},
            "stage4": _config(labels=())}
    user["stage4"]["parameters"]["rp_rs"]["scope"] = "per_visit"  # the second visit has no band
    cfg = validate_run_config(user, tmp_path)
    assert cfg["input"]["lightcurve_visits"][0] == {"path": str(p), "visit": "x", "band": "3.2"}
    assert cfg["input"]["lightcurve_visits"][1]["visit"] == "v2"
    user["input"]["lightcurves"][1] = {"path": "a.ecsv", "visit": "x"}
    with pytest.raises(ConfigError, match="used twice"):
        validate_run_config(user, tmp_path)
    user["input"]["lightcurves"][1] = {"path": "a.ecsv", "epoch": 3}
    with pytest.raises(ConfigError, match="unknown key"):
        validate_run_config(user, tmp_path)
    # a per_band parameter with a visit without band: stopped by the run-file validation
    user["input"]["lightcurves"][1] = {"path": "a.ecsv", "visit": "y"}
    user["stage4"]["parameters"]["rp_rs"]["scope"] = "per_band"
    with pytest.raises(ConfigError, match=r"rp_rs.scope.*\['y'\] have no band"):
        validate_run_config(user, tmp_path)
    user["input"]["lightcurves"][1] = {"path": "missing.ecsv"}
    with pytest.raises(ConfigError, match="no file"):
        validate_run_config(user, tmp_path)


def test_yaml_run_through_pipeline(tmp_path):
    """A run file with a list of light-curve files runs the joint fit in Stage 4 and writes its products."""
    import yaml
    from astropy.table import Table

    from tsoreduce import pipeline
    from tsoreduce.config import load_run_config
    from tsoreduce.datamodel import LightCurves
    from tsoreduce.io import write_lightcurves

    entries, _ = _simulate(8, visits=[("v1", "A", 0, 240.0, None, 400.0), ("v2", "B", 3, 240.0, None, 400.0)])
    items = []
    for e in entries:
        p = tmp_path / f"{e['visit']}.ecsv"
        write_lightcurves(p, LightCurves(time=e["time"], white_flux=e["flux"], white_err=e["err"]))
        items.append({"path": p.name, "visit": e["visit"], "band": e["band"]})
    cfg = _config(labels=())
    cfg["joint"]["per_visit_fits"] = "lsq"
    run = {"name": "joint", "output_dir": "out", "stages": 4, "plots": False, "input": {"lightcurves": items},
           "stage4": cfg}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(run))
    pipeline.run(load_run_config(tmp_path / "run.yaml"), progress=False)
    vt = Table.read(tmp_path / "out" / "stage4" / "visits.ecsv")
    assert list(vt["label"]) == ["v1", "v2"] and list(vt["epoch"]) == [0, 3]
    assert (tmp_path / "out" / "stage4" / "visit_fits.ecsv").is_file()


def test_padding_row_does_not_move_the_ramp_origin():
    """A padding row (time 0, flux 0 / NaN error) as in the Eureka! tables is excluded and does not set t_start."""
    entries, _ = _simulate(9, visits=[VISITS[0]])
    e = entries[0]
    k = e["time"].size // 2
    e["time"] = np.insert(e["time"], k, 0.0)
    e["flux"] = np.insert(e["flux"], k, 0.0)
    e["err"] = np.insert(e["err"], k, np.nan)
    (v,) = make_visits(entries, regressors=[])
    assert v.t_start == pytest.approx(entries[0]["time"][0]) and v.time.size == entries[0]["time"].size - 1


def test_one_visit_joint_posterior_equals_single_visit_posterior():
    """The joint posterior of one visit is the single-visit LogPosterior (same prior, likelihood and -inf
    outside the prior support), walker by walker."""
    from tsoreduce.lightcurve.fitting import LogPosterior

    entries, _ = _simulate(12, visits=[VISITS[0]])
    cfg = validate_config(_config(labels=("v1",)))
    cfg["parameters"]["per"] = {"value": 3.0, "prior": "fixed"}
    setup = J.JointSetup(make_visits(entries, regressors=[]), cfg)
    single_cfg = validate_config({k: v for k, v in cfg.items() if k != "joint"} | {"systematics": dict(
        cfg["systematics"], ramp="single")})
    e = entries[0]
    m = build_model(e["time"], single_cfg, {}, t_start=e["time"][0])
    params = build_parameters(m, single_cfg, e["flux"])
    single = LogPosterior(m, params, e["flux"], e["err"])
    joint = J.JointPosterior(setup)
    jfree = [n.split("@", 1)[0] for n in setup.params.free_names]
    assert sorted(jfree) == sorted(params.free_names)
    order = [params.free_names.index(n) for n in jfree]
    rng = np.random.default_rng(0)
    x0 = params.start()
    theta = x0[None, :] + 1e-5 * rng.standard_normal((6, x0.size))
    theta[0, params.free_names.index("rp_rs")] = 0.5  # outside the prior [0.03, 0.3]
    a, b = single(theta), joint(theta[:, order])
    assert a[0] == b[0] == -np.inf and np.all(np.isfinite(a[1:]))
    np.testing.assert_allclose(b, a, rtol=1e-12)
    assert joint.ncalls == single.ncalls == 6
