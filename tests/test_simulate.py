"""Tests of the MIRI LRS simulator: every injected effect is recovered from the output with a stated
tolerance (injection-recovery), plus determinism, segments, files and configuration errors."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

from tsoreduce import reference as ref
from tsoreduce import instrument
from tsoreduce.datamodel import DQ, concatenate
from tsoreduce.errors import ConfigError, OverwriteError
from tsoreduce.simulate import (COSMIC_RAY_DTYPE, LRSSimConfig, apply_linearity_polynomial,
                                invert_linearity_polynomial, iter_lrs_segments, load_lrs_truth,
                                simulate_lrs, simulate_lrs_rateints, write_lrs_simulation)

# every detector effect off: ramps are exact integrations of the scene (up to integer rounding)
QUIET = dict(poisson=False, read_noise=False, nonlinearity=False, dark=False, rscd=False,
             cosmic_rays=False, emi=False)


def small(**kw) -> LRSSimConfig:
    base = dict(nints=4, ngroups=10)
    base.update(kw)
    return LRSSimConfig(**base)


def ramps(cfg):
    sim = simulate_lrs(cfg)
    return concatenate(sim.segments).data, sim.truth


# ---------------------------------------------------------------------------------------- basics
def test_deterministic_for_a_seed():
    cfg = small(nints=3, ngroups=6)
    a, ta = ramps(cfg)
    b, tb = ramps(cfg)
    assert np.array_equal(a, b)
    assert np.array_equal(ta.cosmic_rays, tb.cosmic_rays)
    assert np.array_equal(ta.emi["phases"], tb.emi["phases"])
    c, _ = ramps(small(nints=3, ngroups=6, seed=1))
    assert not np.array_equal(a, c)


def test_raw_reads_are_integer_dn_with_reference_pixels_dark():
    data, truth = ramps(small(nints=2, ngroups=5))
    assert data.dtype == np.float32
    assert np.array_equal(data, np.rint(data))
    assert data.min() >= 0 and data.max() <= 65535
    # no light on the reference columns, and they are flagged
    assert np.all(truth.rate_star[..., :4] == 0) and np.all(truth.rate_background[..., :4] == 0)
    sim = simulate_lrs(small(nints=1, ngroups=3))
    pdq = sim.segments[0].pixeldq
    assert np.all(pdq[:, :4] & DQ.REFERENCE_PIXEL) and not np.any(pdq[:, 4:])
    rates, _ = simulate_lrs_rateints(small(nints=1))
    assert np.all(rates.dq[:, :, :4] & DQ.REFERENCE_PIXEL) and not np.any(rates.dq[:, :, 4:])


def test_config_errors():
    with pytest.raises(ConfigError, match="nsegments"):
        LRSSimConfig(nints=3, nsegments=4)
    with pytest.raises(ConfigError, match="ngroups"):
        LRSSimConfig(ngroups=1)
    with pytest.raises(ConfigError, match="saturation_dn"):
        LRSSimConfig(saturation_dn=70000)
    with pytest.raises(ConfigError, match="edges"):
        simulate_lrs_rateints(small(nints=1))[1].injected_spectrum([6.0, 5.0])


@pytest.mark.slow
def test_default_simulation_builds_with_a_centred_transit():
    sim = simulate_lrs(LRSSimConfig())
    (seg,) = sim.segments
    t = sim.truth
    assert seg.data.shape == (60, 30, 416, 72)
    assert t.rate_star.shape == t.rate_background.shape == (60, 416, 72)
    assert t.trace_x.shape == (60, 416) and t.wavelength.shape == t.rp_rs.shape == (416,)
    assert t.times_bjd_tdb.shape == (60,)
    # the default ramp stays below saturation everywhere
    assert seg.data.max() < t.saturation_dn.min() - 1000
    # the transit is centred and leaves out-of-transit baseline on both sides
    in_transit = t.transit_lc.mean(axis=1) < 1 - 1e-6
    idx = np.flatnonzero(in_transit)
    assert idx[0] >= 10 and idx[-1] <= 49
    assert abs(0.5 * (idx[0] + idx[-1]) - 29.5) <= 1
    assert 0.3 < in_transit.mean() < 0.5
    assert seg.meta["NGROUPS"] == 30 and seg.meta["NINTS"] == 60 and seg.meta["READPATT"] == "FASTR1"


# ------------------------------------------------------------------------------------ the scene
def test_trace_follows_specwcs_with_diffraction_width():
    _, truth = simulate_lrs_rateints(small(nints=6, drift_x_px=0.0, jitter_x_px=0.0, width_jitter=0.0,
                                           psf_wing_fraction=0.0))
    rows = np.arange(40, 380)
    img = truth.rate_star[0, rows].astype(float)
    cols = np.arange(72)
    centroid = (img * cols).sum(1) / img.sum(1)
    assert np.max(np.abs(centroid - ref.trace_x_center(rows))) < 0.01
    width = np.sqrt((img * (cols - centroid[:, None]) ** 2).sum(1) / img.sum(1))
    # pixel-integrated Gaussian: width^2 = sigma^2 + 1/12
    assert np.allclose(width, np.sqrt(truth.trace_sigma[rows] ** 2 + 1 / 12), atol=0.01)
    lam = truth.wavelength
    s5 = truth.trace_sigma[np.nanargmin(np.abs(lam - 5))]
    s12 = truth.trace_sigma[np.nanargmin(np.abs(lam - 12))]
    # 0.42 lambda/D diffraction (0.61 / 1.45 px) with 0.45 px added in quadrature
    assert s5 == pytest.approx(np.hypot(0.606, 0.45), abs=0.02)
    assert s12 == pytest.approx(np.hypot(1.454, 0.45), abs=0.02)
    # rows without a wavelength carry no starlight
    assert np.all(truth.rate_star[:, :7] == 0) and np.all(truth.rate_star[:, 395:] == 0)
    assert truth.rate_star.max() == pytest.approx(2000.0, rel=0.03)


def test_drift_shifts_the_trace():
    _, truth = simulate_lrs_rateints(small(nints=20, drift_x_px=0.04, jitter_x_px=0.0))
    dx = truth.trace_x[:, 200] - ref.trace_x_center(200)
    assert dx[-1] - dx[0] == pytest.approx(0.04 * 19 / 20, rel=1e-6)
    rows = np.arange(100, 350)
    img = truth.rate_star[:, rows].astype(float)
    cen = (img * np.arange(72)).sum(2) / img.sum(2)
    measured = (cen - cen[0]).mean(axis=1)
    assert np.allclose(measured, dx - dx[0], atol=2e-3)


def test_background_rises_toward_long_wavelength_with_column_gradient():
    _, truth = simulate_lrs_rateints(small(nints=3))
    bkg = truth.rate_background[0]
    assert bkg[20, 10] > 10 * bkg[380, 10] > 0
    assert bkg[200, 70] > bkg[200, 5]
    assert np.all(bkg[:, :4] == 0)


def test_white_light_depth_matches_flux_weighted_rp_rs_squared():
    # uniform disc (u = 0), central transit: the in-transit flux of row r is exactly 1 - rp_r^2
    cfg = small(nints=30, ngroups=20, settling=False, drift=False, background=False, u1=0.0, u2=0.0,
                impact_parameter=0.0, **QUIET)
    data, truth = ramps(cfg)
    expected = truth.injected_spectrum([0.0, 100.0])["transit_depth"][0] * 1e-6
    assert expected > 0.12**2  # the 7.7 um feature deepens it
    white = truth.rate_star.reshape(cfg.nints, -1).sum(1, dtype=float)
    depth_truth = 1 - white.min() / white.max()
    assert depth_truth == pytest.approx(expected, rel=1e-5)
    # the same from the (noiseless) ramps: least-squares slope of each pixel, summed; the integer
    # rounding of the reads leaves ~ 1e-4 relative noise per integration, so average the flat bottom
    # (second to third contact) and the baseline
    t = np.arange(cfg.ngroups) * cfg.tframe
    w = (t - t.mean()) / np.sum((t - t.mean()) ** 2)
    white_ramp = np.einsum("g,igrc->i", w, data[:, :, :, 4:].astype(float))
    bottom = white == white.min()
    baseline = white == white.max()
    assert bottom.sum() >= 3 and baseline.sum() >= 6
    depth_ramp = 1 - white_ramp[bottom].mean() / white_ramp[baseline].mean()
    assert depth_ramp == pytest.approx(expected, abs=1e-4)
    assert np.allclose(white_ramp / white_ramp[baseline].mean(), white / white.max(), atol=3e-4)
    # and per bin, from the per-row transit light curves
    tab = truth.injected_spectrum(np.arange(5.0, 12.01, 1.0))
    row_flux = truth.rate_star.sum(2, dtype=float)
    for r in tab:
        sel = (truth.wavelength >= r["wavelength_lower"]) & (truth.wavelength < r["wavelength_upper"])
        lc = row_flux[:, sel].sum(1)
        assert 1 - lc.min() / lc.max() == pytest.approx(r["transit_depth"] * 1e-6, rel=1e-5)


def test_custom_transmission_spectrum():
    table = ([5.0, 8.0, 12.0], [0.10, 0.13, 0.10])
    _, truth = simulate_lrs_rateints(small(nints=2, rp_rs_spectrum=table))
    lam = truth.wavelength
    ok = np.isfinite(lam)
    assert np.allclose(truth.rp_rs[ok], np.interp(lam[ok], *table))
    _, truth2 = simulate_lrs_rateints(small(nints=2, rp_rs_spectrum=lambda w: 0.1 + 0.001 * w))
    assert np.allclose(truth2.rp_rs[ok], 0.1 + 0.001 * lam[ok])
    # a bin narrow enough to hold one row gives that row's depth exactly
    r = 200
    edges = [lam[r] - 1e-4, lam[r] + 1e-4]
    assert truth.injected_spectrum(edges)["transit_depth"][0] == pytest.approx(truth.rp_rs[r] ** 2 * 1e6)
    # an empty bin is NaN
    assert np.isnan(truth.injected_spectrum([20.0, 21.0])["transit_depth"][0])


def test_settling_ramp():
    cfg = small(nints=20, transit=False, settling_amplitude=0.02, settling_tau_s=20.0)
    _, truth = simulate_lrs_rateints(cfg)
    t = (truth.times_bjd_tdb - cfg.start_bjd_tdb) * 86400
    assert np.allclose(truth.white_flux, 1 - 0.02 * np.exp(-t / 20.0), rtol=1e-5)


# ----------------------------------------------------------------------------------- detector
@pytest.mark.parametrize("lam", [0.05, 3.0, 20.0, 49.9, 60.0, 800.0])
def test_frame_charge_is_exactly_poisson(lam):
    """The per-frame sampler (CDF inversion below 50 e-, numpy above) against the Poisson pmf:
    chi-square over bins with >= 20 expected counts, and the mean / variance."""
    from scipy import stats

    from tsoreduce.simulate._lrs_detector import poisson_frames

    n = 200_000
    x = poisson_frames(np.random.default_rng(11), np.array([[lam]]), n)[:, 0, 0].astype(int)
    assert x.mean() == pytest.approx(lam, abs=5 * np.sqrt(lam / n))
    assert x.var() == pytest.approx(lam, rel=0.02)
    ks = np.arange(x.max() + 1)
    expected = stats.poisson.pmf(ks, lam) * n
    observed = np.bincount(x, minlength=ks.size)
    keep = expected >= 20
    exp_k = np.r_[expected[keep], n - expected[keep].sum()]
    obs_k = np.r_[observed[keep], n - observed[keep].sum()]
    assert stats.chisquare(obs_k, exp_k).pvalue > 1e-3


def test_cosmic_rays_are_the_only_jumps():
    cfg = small(nints=6, ngroups=8, cosmic_ray_rate_cm2_s=20.0, nonlinearity=False)
    with_cr, truth = ramps(cfg)
    without, truth0 = ramps(small(nints=6, ngroups=8, cosmic_ray_rate_cm2_s=20.0, nonlinearity=False,
                                  cosmic_rays=False))
    hits = truth.cosmic_rays
    assert hits.dtype == COSMIC_RAY_DTYPE and len(truth0.cosmic_rays) == 0
    assert len(hits) > 10
    diff = with_cr.astype(float) - without
    # a jump is a step between consecutive groups of the difference ramp
    step = np.diff(diff, axis=1, prepend=0.0)
    found = {(int(i), int(g), int(r), int(c)) for i, g, r, c in zip(*np.nonzero(np.abs(step) > 25))}
    injected = {(int(h["integration"]), int(h["group"]), int(h["row"]), int(h["col"])) for h in hits}
    assert found == injected
    for h in hits:  # amplitude recovered to the integer rounding of the reads
        i, g, r, c = h["integration"], h["group"], h["row"], h["col"]
        assert step[i, g, r, c] == pytest.approx(h["amplitude_dn"], abs=1.01)
        assert np.allclose(diff[i, g:, r, c], diff[i, g, r, c], atol=1.01)
    assert hits["amplitude_dn"].min() >= 50 and hits["amplitude_dn"].max() <= 5000
    assert hits["col"].min() >= 4 and hits["group"].min() >= 1


def test_cosmic_ray_rate():
    cfg = small(nints=40, ngroups=30)
    _, truth = simulate_lrs_rateints(cfg)
    expected = 5.0 * (25e-4) ** 2 * 416 * 68 * 29 * cfg.tframe * 40
    assert len(truth.cosmic_rays) == pytest.approx(expected, abs=4 * np.sqrt(expected))


def test_emi_frequency_and_amplitude_recovered_from_reference_pixels():
    from astropy.timeseries import LombScargle

    cfg = small(nints=4, ngroups=12, **dict(QUIET, emi=True, read_noise=True, dark=True),
                emi_components=((390.625, 4.0),))
    data, truth = ramps(cfg)
    t_int, t_group, t_pix = instrument.pixel_read_time_offsets(cfg.nints, cfg.ngroups)
    y = data[..., :4].astype(float)
    t = (t_int[:, None, None, None] + t_group[None, :, None, None] + t_pix[None, None, :, :4])
    y = y - y.mean(axis=(0, 1), keepdims=True)  # bias per pixel
    freq = np.linspace(100.0, 1000.0, 20001)
    power = LombScargle(t.ravel(), y.ravel()).power(freq, method="fast")
    assert freq[np.argmax(power)] == pytest.approx(390.625, abs=0.1)
    # least squares with a bias per pixel (Frisch-Waugh: demean regressors per pixel too)
    w = 2 * np.pi * 390.625 * t
    X = np.stack([np.sin(w), np.cos(w)], -1)
    X = X - X.mean(axis=(0, 1), keepdims=True)
    coef, *_ = np.linalg.lstsq(X.reshape(-1, 2), y.ravel(), rcond=None)
    amp = np.hypot(*coef)
    phase = np.arctan2(coef[1], coef[0])
    assert amp == pytest.approx(truth.emi["amplitudes"][0], rel=0.05)
    assert np.angle(np.exp(1j * (phase - truth.emi["phases"][0]))) == pytest.approx(0.0, abs=0.05)


def test_emi_harmonics_and_other_frequencies():
    cfg = small(nints=2, ngroups=10, emi_harmonics=True, emi_components=((390.625, 4.0), ("Hz10", 2.0)))
    truth = simulate_lrs_rateints(cfg)[1]
    assert np.allclose(truth.emi["frequencies"], [390.625, 10.039216, 781.25, 1562.5])
    assert np.allclose(truth.emi["amplitudes"], [4.0, 2.0, 0.75, 0.22])
    off = simulate_lrs_rateints(small(nints=2, emi=False))[1]
    assert off.emi["frequencies"].size == 0
    with pytest.raises(ConfigError, match="Hz999"):
        LRSSimConfig(emi_components=(("Hz999", 1.0),))
    with pytest.raises(ConfigError, match="emi_components"):
        LRSSimConfig(emi_components=(390.625, 4.0))


def test_saturation_clips_the_brightest_pixels():
    cfg = LRSSimConfig.saturating(nints=2, ngroups=30)
    data, truth = ramps(cfg)
    sat = truth.saturation_dn
    assert np.all(data <= np.rint(sat) + 0.5)
    at_sat = data[:, -1] >= np.rint(sat) - 0.5
    assert 5 < at_sat[0].sum() < 2000
    # the saturated pixels are the brightest ones, and once saturated a ramp stays there
    # (raw 60000 DN is ~ 66000 linear DN: 12000 bias + > 11300 DN/s x 4.77 s saturates)
    bright = truth.rate_star[0] > 0.9 * truth.rate_star[0].max()
    assert np.all(at_sat[0][bright])
    r, c = np.argwhere(at_sat[0])[0]
    ramp = data[0, :, r, c]
    first = np.argmax(ramp >= np.rint(sat[r, c]) - 0.5)
    assert np.all(ramp[first:] == ramp[-1])
    unclipped, _ = ramps(LRSSimConfig.saturating(nints=2, ngroups=30, saturation=False))
    assert unclipped.max() > sat.max()


def test_linearity_polynomial_round_trip():
    rng = np.random.default_rng(3)
    coeffs = np.array([0.0, 1.0, 8e-7, 1.5e-11])[:, None, None] * (1 + 0.05 * rng.standard_normal((1, 5, 6)))
    coeffs[1] = 1.0
    linear = rng.uniform(5000, 70000, (7, 5, 6))
    raw = invert_linearity_polynomial(linear, coeffs)
    assert np.all(raw < linear)
    assert np.allclose(apply_linearity_polynomial(raw, coeffs), linear, rtol=0, atol=1e-6)
    # realistic magnitude: a few per cent at 30000 DN
    frac = apply_linearity_polynomial(30000.0, np.array([0.0, 1.0, 8e-7, 1.5e-11])) / 30000 - 1
    assert 0.02 < frac < 0.06


def test_nonlinear_ramps_are_linearised_by_the_truth_coefficients():
    cfg = LRSSimConfig.saturating(nints=1, ngroups=25, saturation=False, settling=False, drift=False,
                                  **dict(QUIET, nonlinearity=True))
    data, truth = ramps(cfg)
    r, c = np.unravel_index(np.argmax(truth.rate_star[0]), (416, 72))
    raw = data[0, :, r, c].astype(float)
    corrected = apply_linearity_polynomial(raw, truth.nonlinearity_coeffs[:, r, c])
    d_raw, d_cor = np.diff(raw), np.diff(corrected)
    assert d_raw[-1] < 0.85 * d_raw[0]  # the raw ramp bends over
    # corrected: constant steps equal to the injected rate (integer rounding of raw ~ 1 DN)
    expected = (truth.rate_star[0, r, c] + truth.rate_background[0, r, c]) * cfg.tframe
    assert np.allclose(d_cor, expected, atol=2.5)
    assert np.allclose(corrected - truth.bias[r, c],
                       expected * np.arange(1, cfg.ngroups + 1), atol=2.0)


def test_rscd_transient_and_first_integration_anomaly():
    kw = dict(nints=3, ngroups=20, transit=False, settling=False, drift=False, **QUIET)
    on, truth = ramps(small(**dict(kw, rscd=True)))
    off, _ = ramps(small(**kw))
    d = on.astype(float) - off
    g = np.arange(20)
    shape = -(1 - np.exp(-g / truth.rscd["tau_groups"]))
    r, c = 300, 2  # reference pixel: no light, so the amplitude is the flux-independent part
    assert np.allclose(d[0, :, r, c], truth.rscd["amplitude_dn"] * shape, atol=1.01)
    # a bright pixel: integration 0 has no preceding charge, later ones add flux_fraction x charge
    rr, cc = np.unravel_index(np.argmax(truth.rate_star[0]), (416, 72))
    charge = (truth.rate_star[0, rr, cc] + truth.rate_background[0, rr, cc]) * 20 * instrument.TFRAME
    amp1 = truth.rscd["amplitude_dn"] + truth.rscd["flux_fraction"] * charge
    assert np.allclose(d[0, :, rr, cc], truth.rscd["amplitude_dn"] * shape, atol=1.01)
    assert np.allclose(d[1, :, rr, cc], amp1 * shape, atol=1.01)
    assert amp1 > 2 * truth.rscd["amplitude_dn"]


def test_dark_current_accumulates():
    kw = dict(nints=2, ngroups=20, **QUIET)
    on, truth = ramps(small(**dict(kw, dark=True)))
    off, _ = ramps(small(**kw))
    d = on.astype(float) - off
    hot = truth.dark > 5 * np.median(truth.dark)
    assert hot.sum() > 10
    expected = truth.dark * 20 * instrument.TFRAME
    assert np.allclose(d[0, -1][hot], expected[hot], atol=1.01)


def test_rate_level_noise_matches_ramp_fit_of_simulated_ramps():
    # ramps with Poisson + read noise only; OLS slope scatter vs the rate-level error model
    cfg = small(nints=24, ngroups=10, transit=False, settling=False, drift=False, background=True,
                **dict(QUIET, poisson=True, read_noise=True))
    data, truth = ramps(cfg)
    t = np.arange(cfg.ngroups) * cfg.tframe
    w = (t - t.mean()) / np.sum((t - t.mean()) ** 2)
    slopes = np.einsum("g,igrc->irc", w, data.astype(float))
    model = truth.rate_star.astype(float) + truth.rate_background
    rates, rtruth = simulate_lrs_rateints(cfg)
    assert np.allclose(rtruth.rate_star, truth.rate_star)
    var_pred = rates.err.astype(float) ** 2
    z2 = (slopes - model) ** 2 / var_pred
    bright = truth.rate_star[0] > 200
    faint = (truth.rate_star[0] < 1) & (np.arange(72) >= 4)
    # chi^2 per pixel ~ 1 (5 % tolerance: ~3000 bright and ~500k faint samples)
    assert z2[:, bright].mean() == pytest.approx(1.0, abs=0.06)
    assert z2[:, faint].mean() == pytest.approx(1.0, abs=0.03)
    # and the rate-level data scatter like their errors
    zr = ((rates.data - model) / rates.err)[:, :, 4:]
    assert np.mean(zr**2) == pytest.approx(1.0, abs=0.02)
    assert np.allclose(rates.var_poisson + rates.var_rnoise, rates.err.astype(float) ** 2, rtol=1e-4)


# ----------------------------------------------------------------------------- segments, files
def test_segments_are_consecutive_and_identical_to_one_exposure():
    cfg3 = small(nints=7, ngroups=5, nsegments=3)
    sim3 = simulate_lrs(cfg3)
    sim1 = simulate_lrs(small(nints=7, ngroups=5))
    starts = [s.meta["INTSTART"] for s in sim3.segments]
    ends = [s.meta["INTEND"] for s in sim3.segments]
    assert starts == [1, 4, 6] and ends == [3, 5, 7]
    assert [s.meta["EXSEGNUM"] for s in sim3.segments] == [1, 2, 3]
    assert all(s.meta["EXSEGTOT"] == 3 and s.meta["NINTS"] == 7 for s in sim3.segments)
    joined = concatenate(sim3.segments)
    assert np.array_equal(joined.data, sim1.segments[0].data)
    truth_it, lazy = iter_lrs_segments(cfg3)
    for a, b in zip(lazy, sim3.segments):
        assert np.array_equal(a.data, b.data) and a.meta == b.meta
    it = joined.int_times
    assert np.array_equal(it.integration_number, np.arange(1, 8))
    cycle = (5 + 1) * instrument.TFRAME / 86400
    assert np.allclose(np.diff(it.mid_bjd_tdb), cycle, rtol=0, atol=1e-10)  # MJD float64: ~1 us
    assert np.allclose(it.start_bjd_tdb[1:], it.end_bjd_tdb[:-1], rtol=0, atol=1e-10)
    assert np.allclose(it.mid_bjd_tdb, sim3.truth.times_bjd_tdb)
    m = sim3.segments[0].meta
    assert (m["INSTRUME"], m["DETECTOR"], m["EXP_TYPE"], m["SUBARRAY"], m["READPATT"], m["NFRAMES"]) == \
        ("MIRI", "MIRIMAGE", "MIR_LRS-SLITLESS", "SLITLESSPRISM", "FASTR1", 1)
    assert m["TFRAME"] == m["TGROUP"] == instrument.TFRAME


def test_write_and_reload(tmp_path):
    from tsoreduce.io import read_segments

    cfg = small(nints=5, ngroups=6, nsegments=2)
    out = write_lrs_simulation(cfg, tmp_path)
    assert [p.name for p in out["uncal"]] == ["jw00000001001_01101_00001-seg001_mirimage_uncal.fits",
                                              "jw00000001001_01101_00001-seg002_mirimage_uncal.fits"]
    sim = simulate_lrs(cfg)
    ramp = read_segments(out["uncal"])
    assert np.array_equal(ramp.data, concatenate(sim.segments).data)
    assert ramp.meta["INTSTART"] == 1 and ramp.meta["INTEND"] == 5
    truth = load_lrs_truth(out["truth"])
    assert np.array_equal(truth.cosmic_rays, sim.truth.cosmic_rays)
    assert np.array_equal(truth.rate_star, sim.truth.rate_star)
    assert truth.transit == pytest.approx(sim.truth.transit)
    assert truth.config["seed"] == 0
    from astropy.table import Table

    spec = Table.read(out["spectrum"], format="ascii.ecsv")
    assert {"wavelength", "wavelength_lower", "wavelength_upper", "transit_depth"} <= set(spec.colnames)
    assert np.allclose(spec["transit_depth"],
                       sim.truth.injected_spectrum(np.arange(5.0, 12.01, 0.5))["transit_depth"])
    refs = out["references"]
    meta = ramp.meta
    assert np.allclose(ref.load_linearity(refs["linearity"], meta), truth.nonlinearity_coeffs)
    assert np.allclose(ref.load_gain(refs["gain"], meta), truth.gain)
    assert np.allclose(ref.load_readnoise(refs["readnoise"], meta), truth.read_noise_dn * np.sqrt(2), rtol=1e-6)
    assert np.allclose(ref.load_saturation(refs["saturation"], meta), truth.saturation_dn, rtol=1e-6)
    dark, dark_dq = ref.load_dark(refs["dark"], meta, with_dq=True)
    assert dark.shape == (1, 6, 416, 72) and dark_dq.shape == (416, 72)   # jwst's 4-D MIRI dark
    dark = dark[0]
    # READNOISE holds the CDS (read-difference) noise, as CRDS files and stcal; DESCRIP says so
    assert np.allclose(fits.getdata(refs["readnoise"], "SCI"), truth.read_noise_dn * np.sqrt(2), rtol=1e-6)
    assert "cds" in fits.getheader(refs["readnoise"])["DESCRIP"].lower()
    # ... which Stage 1's readnoise_convention 'auto' recognises: per-read noise = the injected truth
    from tsoreduce.detector.stage import resolve_references
    resolved = resolve_references({}, {k: str(v) for k, v in refs.items()}, meta)
    assert np.allclose(resolved["readnoise"], truth.read_noise_dn, rtol=1e-6)
    assert resolved["dark"].shape == (1, 6, 416, 72) and resolved["dark_dq"].shape == (416, 72)
    assert set(out["jwst_references"]) == set(refs) | {"mask"}
    assert fits.getdata(out["jwst_references"]["mask"], "DQ")[:, :4].min() == DQ.REFERENCE_PIXEL
    g = np.arange(6)
    rscd = -truth.rscd["amplitude_dn"] * (1 - np.exp(-g / truth.rscd["tau_groups"]))
    assert np.allclose(dark, truth.dark * (g[:, None, None] + 1) * instrument.TFRAME + rscd[:, None, None],
                       atol=1e-3)
    with pytest.raises(OverwriteError):
        write_lrs_simulation(cfg, tmp_path)


# ------------------------------------------------------------------------------ independent streams
def _builder(cfg):
    from tsoreduce.simulate import _lrs_detector as det
    from tsoreduce.simulate import lrs

    truth, _, maps, seqs = lrs._build_truth(cfg)
    return det.RampBuilder(cfg, {"rate_star": truth.rate_star, "rate_background": truth.rate_background},
                           maps, truth.cosmic_rays, truth.emi, seqs["noise"], instrument.SUBARRAY_SHAPE), truth


@pytest.mark.parametrize("effect", ["dark", "drift", "settling", "background", "transit", "rscd", "emi",
                                    "nonlinearity", "poisson"])
def test_toggling_one_effect_leaves_read_noise_and_cosmic_rays_bit_identical(effect):
    base = small(nints=3, ngroups=6, seed=7)
    b0, t0 = _builder(base)
    b1, t1 = _builder(small(nints=3, ngroups=6, seed=7, **{effect: not getattr(base, effect)}))
    assert np.array_equal(t0.cosmic_rays, t1.cosmic_rays)
    for i in range(base.nints):
        assert np.array_equal(b0.read_noise_draw(i), b1.read_noise_draw(i))


def test_read_noise_realisation_survives_a_change_of_photon_rates():
    # with Poisson noise on, the read noise actually added to the reads (read_noise on minus off, same
    # photon draws) is the same realisation whether the dark current (hence the photon rates and the
    # count of numbers the bright-pixel Poisson draws consume) is on or off
    kw = dict(nints=2, ngroups=6, seed=3, nonlinearity=False, rscd=False, emi=False, cosmic_rays=False,
              saturation=False)
    rn = {}
    for dark in (True, False):
        on, _ = ramps(small(dark=dark, **kw))
        off, _ = ramps(small(dark=dark, read_noise=False, **kw))
        rn[dark] = on.astype(float) - off
    diff = np.abs(rn[True] - rn[False])
    print(f"read-noise realisation, dark on vs off: max |difference| {diff.max():.0f} DN (integer rounding), "
          f"rms read noise {rn[True].std():.1f} DN")
    assert diff.max() <= 1.0 + 1e-9
    assert rn[True].std() > 5.0
