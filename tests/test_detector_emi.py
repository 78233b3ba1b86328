"""EMI correction (tsoreduce.detector.correct_emi).

Synthetic tests inject sinusoids at each pixel's SLITLESSPRISM read time (exact truth, no rounding);
the simulator test compares the same scene simulated with and without EMI (independent random
streams, so the only difference is the EMI plus the uint16 rounding of the reads)."""

import logging

import numpy as np
import pytest

from tsoreduce import reference as ref
from tsoreduce import instrument
from tsoreduce.datamodel import RampData
from tsoreduce.detector import correct_emi, dq_init, emi_frequencies, fit_ramps, flag_reset_groups
from tsoreduce.errors import ConfigError

TG, GAIN, RN = 0.15904, 3.1, 6.0
NY, NX = instrument.SUBARRAY_SHAPE


def scene(nints, ngroups, seed=0, int_offset=0):
    rng = np.random.default_rng(seed)
    xc = ref.trace_x_center(np.arange(NY))
    rate = 20.0 + 3000.0 * np.exp(-0.5 * ((np.arange(NX)[None] - xc[:, None]) / 1.5) ** 2)
    rate[:, :4] = 0.0
    lam = (rate * TG * GAIN)[None, None] * np.ones((nints, ngroups, 1, 1))
    raw = np.cumsum(rng.poisson(lam), axis=1) / GAIN + 12000 + rng.normal(0, RN, lam.shape)
    ti, tg, tp = instrument.pixel_read_time_offsets(nints, ngroups, int_offset=int_offset)
    t = ti[:, None, None, None] + tg[None, :, None, None] + tp[None, None]
    return raw, t, rate, xc


def emi_signal(t, tones):
    return sum(a * np.cos(2 * np.pi * f * t + ph) for f, a, ph in tones)


def amplitude_at(resid, t, f):
    x = np.stack([np.cos(2 * np.pi * f * t).ravel(), np.sin(2 * np.pi * f * t).ravel()], 1)
    return float(np.hypot(*np.linalg.lstsq(x, resid.astype(float).ravel(), rcond=None)[0]))


def trace_flux(rates, xc):
    tr = np.abs(np.arange(NX)[None] - xc[:, None]) <= 4
    return rates.data[:, tr].sum(axis=1)


@pytest.fixture(scope="module")
def synthetic():
    raw, t, rate, xc = scene(8, 12, seed=1)
    tones = [(390.625, 4.0, 0.3), (781.25, 0.8, 1.2), (1562.5, 0.25, 2.0)]
    clean = dq_init(RampData(raw.astype(np.float32), meta={"TGROUP": TG}))
    dirty = clean.replace(data=(raw + emi_signal(t, tones)).astype(np.float32))
    return clean, dirty, t, tones, xc


def test_emi_removed_tenfold_and_trace_flux_unchanged(synthetic):
    clean, dirty, t, tones, xc = synthetic
    fixed, diag = correct_emi(dirty, frequencies=["Hz390"], harmonics=[1, 2, 3, 4])
    for f, a, _ in tones:
        before = amplitude_at(dirty.data - clean.data, t, f)
        after = amplitude_at(fixed.data - clean.data, t, f)
        assert before == pytest.approx(a, rel=0.02)
        assert after < 0.1 * a, (f, after)
    # fitted amplitudes per integration match the injection
    np.testing.assert_allclose(np.median(diag["amplitude"][:, [0, 1, 3]], axis=0), [4.0, 0.8, 0.25], rtol=0.05)
    f_clean = trace_flux(fit_ramps(clean), xc)
    f_fixed = trace_flux(fit_ramps(fixed), xc)
    assert np.max(np.abs(f_fixed / f_clean - 1)) < 1e-4
    assert fixed.meta["S_EMICOR"] == "COMPLETE"
    assert not np.shares_memory(fixed.data, dirty.data)


def test_exposure_mode_uses_absolute_read_times():
    """A segment starting at INTSTART = 41: one amplitude/phase for the whole exposure."""
    raw, t, rate, xc = scene(6, 10, seed=2, int_offset=40)
    clean = dq_init(RampData(raw.astype(np.float32), meta={"TGROUP": TG, "INTSTART": 41, "NGROUPS": 10}))
    dirty = clean.replace(data=(raw + emi_signal(t, [(390.625, 3.0, 1.0)])).astype(np.float32))
    fixed, diag = correct_emi(dirty, harmonics=[1], fit_per="exposure")
    assert amplitude_at(fixed.data - clean.data, t, 390.625) < 0.3
    assert np.allclose(diag["amplitude"], 3.0, rtol=0.02)
    # the absolute phase (t = 0 at the exposure start) is recovered
    assert np.allclose(diag["phase"], 1.0, atol=0.02)


def test_degenerate_cases_warn(caplog, synthetic):
    clean, dirty, *_ = synthetic
    # 8 x 390.625 Hz advances by a whole number of cycles per frame (62.125 x 8 = 497)
    with caplog.at_level(logging.WARNING):
        fixed, diag = correct_emi(dirty, harmonics=[8])
    assert "in phase from group to group" in caplog.text
    assert diag.get("skipped") == "all tones degenerate"
    np.testing.assert_array_equal(fixed.data, dirty.data)
    caplog.clear()
    short = dirty.replace(data=dirty.data[:, :3], groupdq=dirty.groupdq[:, :3])
    with caplog.at_level(logging.WARNING):
        _, diag = correct_emi(short)
    assert "skipped" in diag and "at least 3" in caplog.text


def test_unknown_frequency_name():
    with pytest.raises(ConfigError, match="Hz999"):
        emi_frequencies(["Hz999"])
    assert emi_frequencies(["Hz390", "Hz10"], [1, 2]).size == 4


@pytest.mark.slow
def test_simulated_emi_reduced_tenfold():
    """Simulator (LRSSimConfig emi on/off, same seed): the injected 390 Hz EMI amplitude drops >= 10x
    and the trace flux changes by < 1e-4 on average; the per-integration scatter of the ratio stays
    at the floor set by the different uint16 rounding of the two simulations (~1.7e-4 here)."""
    from tsoreduce.simulate import LRSSimConfig, simulate_lrs
    kw = dict(nints=20, ngroups=20, seed=7, cosmic_rays=False)
    sim_a = simulate_lrs(LRSSimConfig(**kw))
    sim_b = simulate_lrs(LRSSimConfig(emi=False, **kw))
    a = dq_init(sim_a.segments[0])
    b = dq_init(sim_b.segments[0])
    fixed, diag = correct_emi(a, first_fit_group=12)
    nints, ng = a.data.shape[:2]
    ti, tg, tp = instrument.pixel_read_time_offsets(nints, ng)
    t = ti[:, None, None, None] + tg[None, :, None, None] + tp[None, None]
    f0 = sim_a.truth.emi["frequencies"][0]
    a0 = sim_a.truth.emi["amplitudes"][0]
    before = amplitude_at(a.data - b.data, t, f0)
    after = amplitude_at(fixed.data - b.data, t, f0)
    print(f"simulated EMI {f0} Hz: injected {a0} DN, before {before:.3f}, after {after:.4f} DN")
    assert before == pytest.approx(a0, rel=0.02)
    assert after <= 0.1 * before
    xc = ref.trace_x_center(np.arange(NY))
    fa = trace_flux(fit_ramps(flag_reset_groups(fixed)), xc)
    fb = trace_flux(fit_ramps(flag_reset_groups(b)), xc)
    ratio = fa / fb - 1
    print(f"simulated EMI: reduction {before / after:.0f}x; trace flux change mean {np.mean(ratio):+.1e}, "
          f"rms {np.std(ratio):.1e}")
    assert abs(np.mean(ratio)) < 1e-4
    assert np.std(ratio) < 3e-4
