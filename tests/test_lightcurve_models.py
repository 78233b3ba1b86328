"""Stage 4 light-curve models: physics checks and the fused kernel against the plain numpy model."""

import numpy as np
import pytest

from tsoreduce.lightcurve import LightCurveModel, Systematics, kipping_to_u, u_to_kipping

V = dict(t0=0.0, per=0.8135, rp_rs=0.16, a_rs=4.9, inc=82.0, ecc=0.0, w=90.0, fp=0.005, pc_amp1=0.002,
         pc_offset1=10.0, pc_amp2=0.0003, pc_offset2=30.0, q1=0.1, q2=0.3, f0=1.0, ramp_amp1=0.01,
         ramp_tau1=0.01, ramp_amp2=0.003, ramp_tau2=0.1, poly1=0.001, poly2=0.001, decorr_x=1e-4,
         err_mult=1.1, jitter_ppm=300.0)


def test_kipping_round_trip():
    u1, u2 = kipping_to_u(0.36, 0.25)
    assert u1 == pytest.approx(0.3) and u2 == pytest.approx(0.3)
    q1, q2 = u_to_kipping(u1, u2)
    assert q1 == pytest.approx(0.36) and q2 == pytest.approx(0.25)


def test_transit_depth_uniform_disc():
    t = np.linspace(-0.1, 0.1, 2001)
    m = LightCurveModel(t, "transit", ld_law="uniform", ld_parametrisation="u", ramp="none", poly_order=0, noise="none")
    v = {n: V[n] for n in m.names}
    v["inc"] = 90.0
    f = m.evaluate(v)
    assert 1 - f.min() == pytest.approx(0.16 ** 2, rel=1e-6)
    assert f[0] == 1.0


def test_phasecurve_physics():
    per = V["per"]
    t = np.linspace(-0.2, 0.9, 5001)
    m = LightCurveModel(t, "phasecurve", ramp="none", poly_order=0, noise="none", pc_order=1)
    v = {n: V[n] for n in m.names}
    f = m.evaluate(v)
    tsec = per / 2
    # planet hidden at mid-eclipse: only the star
    assert f[np.argmin(abs(t - tsec))] == pytest.approx(1.0, abs=1e-12)
    # just outside the eclipse the planet adds ~fp (phase variation changes it slowly)
    k = np.argmin(abs(t - (tsec + 0.06)))
    th = 2 * np.pi * (t[k] - tsec) / per
    d = np.deg2rad(v["pc_offset1"])
    expect = 1 + v["fp"] + v["pc_amp1"] * (np.cos(th + d) - np.cos(d))
    assert f[k] == pytest.approx(expect, abs=1e-12)
    # the maximum of the planet flux comes before the eclipse for a positive (eastward) offset
    out = (abs(t - tsec) > 0.08) & (abs(t) > 0.08) & (abs(t - per) > 0.08)
    tmax = t[out][np.argmax(f[out])]
    assert tsec - 0.1 < tmax < tsec


def test_systematics_ramp_poly_decorr():
    t = np.linspace(100.0, 100.5, 500)
    x = np.sin(np.arange(500))
    s = Systematics(t, ramp="double", poly_order=1, regressors={"x": x}, t_start=99.9)
    idx = {n: i for i, n in enumerate(s.names)}
    P = np.zeros(len(s.names))
    P[idx["f0"]] = 2.0
    P[idx["ramp_amp1"]], P[idx["ramp_tau1"]] = 0.01, 0.02
    P[idx["ramp_amp2"]], P[idx["ramp_tau2"]] = -0.003, 0.2
    P[idx["poly1"]] = 0.004
    P[idx["decorr_x"]] = 0.001
    z = (x - x.mean()) / x.std()
    ref = 2.0 * (1 + 0.01 * np.exp(-(t - 99.9) / 0.02) - 0.003 * np.exp(-(t - 99.9) / 0.2)) \
        * (1 + 0.004 * (t - t.mean())) * (1 + 0.001 * z)
    np.testing.assert_allclose(s.evaluate(P, idx), ref, rtol=1e-13)


@pytest.mark.parametrize("kind", ["transit", "eclipse", "phasecurve"])
@pytest.mark.parametrize("noise,ramp", [("err_mult", "single"), ("jitter", "double"), ("none", "none")])
def test_fused_loglike_matches_numpy(kind, noise, ramp):
    rng = np.random.default_rng(3)
    t = np.sort(np.linspace(-0.3, 0.8, 3000) + 1e-7 * rng.standard_normal(3000))
    m = LightCurveModel(t, kind, ramp=ramp, poly_order=2, regressors={"x": rng.standard_normal(t.size)},
                        noise=noise, pc_order=2, t_start=-0.31)
    P = np.array([[V[n] for n in m.names]] * 6)
    P[:, m.index["rp_rs"]] += np.linspace(0, 0.01, 6)
    P[:, m.index["t0"]] += np.linspace(0, 0.002, 6)
    flux = m.evaluate(P[0]) + 1e-3 * rng.standard_normal(t.size)
    err = np.full(t.size, 1e-3)

    def ref(P):
        sig = m.sigma(P, err)
        r = (flux - m.evaluate(P)) / sig
        return -0.5 * (r * r).sum(1) - np.log(sig).sum(1) - 0.5 * t.size * np.log(2 * np.pi)

    np.testing.assert_allclose(m.loglike(P, flux, err), ref(P), rtol=1e-10, atol=1e-6)
    # frozen orbit: batman only on the transit/eclipse windows, identical result
    P[:, m.index["t0"]] = 0.0
    full = m.evaluate(P)
    m.freeze_orbit({n: P[0, i] for i, n in enumerate(m.names)}, rp_max=0.3)
    np.testing.assert_array_equal(m.evaluate(P), full)
    np.testing.assert_allclose(m.loglike(P, flux, err), ref(P), rtol=1e-10, atol=1e-6)


def test_supersampling_smooths_ingress():
    t = np.linspace(-0.1, 0.1, 401)
    kw = dict(ramp="none", poly_order=0, noise="none")
    m1 = LightCurveModel(t, "transit", **kw)
    m30 = LightCurveModel(t, "transit", supersample_factor=15, exp_time=0.01, **kw)
    v = {n: V[n] for n in m1.names}
    f1, f30 = m1.evaluate(v), m30.evaluate(v)
    assert np.max(np.abs(f1 - f30)) > 1e-3  # long exposures blur ingress/egress
    assert abs(f1.sum() - f30.sum()) / f1.size < 1e-4  # but conserve the mean flux deficit
