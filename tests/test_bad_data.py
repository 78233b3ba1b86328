"""Bad data is flagged, excluded and recorded, never silently repaired (issue 13, part 3).

Each case injects one kind of bad input into a small simulation with known truth and checks: a WARNING
stating the count, the DQ flag (pixel / integration), the record in the product (meta = header keyword
or light-curve table metadata) and that the good data are unchanged."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from tsoreduce import instrument
from tsoreduce.datamodel import DQ, IntTimes, SpectraData
from tsoreduce.errors import ProductError
from tsoreduce.simulate import LRSSimConfig, simulate_lrs, simulate_lrs_rateints


@pytest.fixture(scope="module")
def rateints():
    return simulate_lrs_rateints(LRSSimConfig(nints=24, seed=5, cosmic_rays=False))


def _warnings(caplog, text):
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and text in r.getMessage()]


# ------------------------------------------------------------------------------------------ Stage 1
@pytest.fixture(scope="module")
def ramp():
    sim = simulate_lrs(LRSSimConfig(nints=3, ngroups=8, seed=2, cosmic_rays=False, emi=False))
    return sim.segments[0], sim.truth


def test_bad_gain_and_read_noise_pixels_are_flagged_counted_and_recorded(ramp, caplog):
    from tsoreduce.detector import run_stage1

    seg, truth = ramp
    cfg = {"jump": {"skip": True}, "emi": {"skip": True}}
    refs = {"linearity": truth.nonlinearity_coeffs, "saturation": truth.saturation_dn,
            "gain": truth.gain.copy(), "readnoise": truth.read_noise_dn.copy()}
    good = run_stage1(seg, cfg, references=refs).product
    gpix = [(100, 30), (200, 36), (300, 40)]
    rpix = [(150, 37), (250, 20)]
    for k, (y, x) in enumerate(gpix):
        refs["gain"][y, x] = (np.nan, 0.0, -1.0)[k]
    for y, x in rpix:
        refs["readnoise"][y, x] = np.inf
    with caplog.at_level(logging.WARNING):
        out = run_stage1(seg, cfg, references=refs).product
    assert any("3 pixel(s)" in m and "NO_GAIN_VALUE" in m for m in _warnings(caplog, "gain reference"))
    assert any("2 pixel(s)" in m and "UNRELIABLE_ERROR" in m for m in _warnings(caplog, "read noise reference"))
    assert out.meta["NGAINDEF"] == 3 and out.meta["NRNDEF"] == 2
    gflag = (out.dq & np.uint32(DQ.NO_GAIN_VALUE)) != 0
    rflag = (out.dq & np.uint32(DQ.UNRELIABLE_ERROR)) != 0
    assert gflag.sum() == 3 * out.nints and rflag.sum() == 2 * out.nints
    assert all(gflag[:, y, x].all() for y, x in gpix) and all(rflag[:, y, x].all() for y, x in rpix)
    # only the defaulted pixels change (the truth's gain is the default value)
    assert abs(float(truth.gain[0, 0]) - instrument.GAIN) < 1e-6
    changed = ~np.isclose(out.err, good.err, rtol=1e-6, equal_nan=True)
    assert set(zip(*np.nonzero(changed.any(axis=0)))) <= set(rpix)
    np.testing.assert_allclose(out.data, good.data, rtol=1e-6, equal_nan=True)


def test_group_time_fallback_is_a_warning_and_a_keyword(ramp, caplog):
    from tsoreduce.detector import run_stage1

    seg, truth = ramp
    cfg = {"jump": {"skip": True}, "emi": {"skip": True}}
    refs = {"linearity": truth.nonlinearity_coeffs, "saturation": truth.saturation_dn}
    base = run_stage1(seg, cfg, references=refs).product
    assert "TGRPSRC" not in base.meta
    meta = {k: v for k, v in seg.meta.items() if k != "TGROUP"}
    with caplog.at_level(logging.WARNING):
        out = run_stage1(seg.replace(meta=meta), cfg, references=refs).product
    assert out.meta["TGRPSRC"] == "TFRAME" and _warnings(caplog, "no usable TGROUP")
    np.testing.assert_allclose(out.data, base.data, rtol=1e-6, equal_nan=True)
    meta.pop("TFRAME")
    meta["TGROUP"] = float("nan")
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        out = run_stage1(seg.replace(meta=meta), cfg, references=refs).product
    assert out.meta["TGRPSRC"] == "DEFAULT" and _warnings(caplog, "neither TGROUP nor TFRAME")


# ------------------------------------------------------------------------------------------ Stage 2/3
@pytest.mark.parametrize("fraction", [1.0, 0.7])
def test_mostly_bad_integration_is_excluded_flagged_and_masked(rateints, fraction, caplog):
    from tsoreduce.extraction import run_stage3
    from tsoreduce.spectroscopic import run_stage2

    rates, truth = rateints
    bad = rates.copy()
    rng = np.random.default_rng(0)
    hit = rng.random(bad.data.shape[1:]) < fraction
    bad.data[7][hit] = np.nan
    cfg2 = {"pca": {"skip": True}}
    with caplog.at_level(logging.WARNING):
        cal, diag = (s2res := run_stage2(bad, cfg2)).product, s2res.diagnostics
    msgs = _warnings(caplog, "bad integrations")
    assert msgs and "1 of 24" in msgs[0] and "integration(s) 8" in msgs[0]
    assert cal.meta["NBADINT"] == 1 and diag["bad_integrations"][7] and diag["bad_integrations"].sum() == 1
    assert np.isnan(cal.data[7]).all() and ((cal.dq[7] & np.uint32(DQ.DO_NOT_USE)) != 0).all()
    # the good integrations are processed exactly as if the bad one had never been there
    keep = np.r_[0:7, 8:24]
    ref_cal = run_stage2(rates.select_integrations(keep), cfg2).product
    np.testing.assert_array_equal(cal.data[keep], ref_cal.data)
    p = run_stage3(cal, {"extraction": {"method": "box"}}).product
    spectra, lc = p.x1dints, p.lightcurves
    assert lc.mask[7] and lc.mask.sum() == 1 and lc.meta["masked_integrations"] == [8]
    assert np.isnan(lc.white_flux[7]) and np.isnan(lc.flux[:, 7]).all()
    assert np.isfinite(lc.white_flux[keep]).all()
    # the other points follow the truth (no transit in these 24 integrations' worth of flux change)
    true = truth.white_flux[keep] / np.median(truth.white_flux[keep])
    print(f"bad fraction {fraction}: white light vs truth rms {np.std(lc.white_flux[keep] - true) * 1e6:.0f} ppm")
    assert np.std(lc.white_flux[keep] - true) < 3e-3


def test_rows_without_background_are_interpolated_flagged_and_counted(rateints, caplog):
    from tsoreduce.spectroscopic.background import _background_columns, subtract_background

    rates, truth = rateints
    cols = _background_columns(72, 36.5, 10, 14)
    bad = rates.copy()
    for y in (120, 121, 122):
        bad.data[3, y, cols] = np.nan
    with caplog.at_level(logging.WARNING):
        out, bkg = subtract_background(bad, trace_center=36.5)
    msg = _warnings(caplog, "no usable background")
    assert msg and "3 row(s) of 1 integration(s)" in msg[0]
    assert out.meta["NBKGINTP"] == 3 * 72
    est = (out.dq & np.uint32(DQ.FLUX_ESTIMATED)) != 0
    assert est[3, 120:123].all() and est.sum() == 3 * 72
    # interpolated from rows 119 and 123: close to the true background (smooth along rows)
    tb = truth.rate_background[3, 120:123, 50]
    print(f"interpolated background {bkg[3, 120:123, 50]} vs truth {tb}")
    assert np.all(np.abs(bkg[3, 120:123, 50] - tb) < 0.05 * tb + 3 * float(np.median(rates.err[3, 120, cols])))
    clean, _ = subtract_background(rates, trace_center=36.5)
    assert clean.meta["NBKGINTP"] == 0 and not np.any(clean.dq & np.uint32(DQ.FLUX_ESTIMATED))


def _spectra(times, meta=None):
    n = len(times)
    it = None if times is None else IntTimes(np.arange(1, n + 1), times - 0.001, times, times + 0.001)
    w = np.linspace(12.0, 5.0, 50)
    rng = np.random.default_rng(1)
    return SpectraData(data=100 + rng.normal(0, 0.1, (n, 50)), err=np.full((n, 50), 0.1), wavelength=w,
                       int_times=it, meta=meta or {})


def test_non_finite_int_times_are_interpolated_not_discarded(caplog):
    from tsoreduce.extraction import bin_lightcurves

    t = 60000.0 + np.arange(30) * 0.0005
    bad = t.copy()
    bad[[0, 11, 12]] = np.nan
    with caplog.at_level(logging.WARNING):
        lc = bin_lightcurves(_spectra(bad))
    assert _warnings(caplog, "3 of 30 INT_TIMES")
    np.testing.assert_allclose(lc.time, t, rtol=0, atol=1e-9)
    assert lc.meta["n_times_interpolated"] == 3 and lc.meta["times_interpolated"] == [1, 12, 13]
    assert lc.meta["time_source"].startswith("INT_TIMES")
    with pytest.raises(ProductError, match="EFFINTTM"):
        bin_lightcurves(_spectra(np.full(30, np.nan)))
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        lc = bin_lightcurves(_spectra(np.full(30, np.nan), {"EFFINTTM": 10.0}))
    assert _warnings(caplog, "index x 10 s")
    np.testing.assert_allclose(np.diff(lc.time) * 86400, 10.0)


# ------------------------------------------------------------------------------ noise budget (part 4)
def test_background_subtraction_noise_is_in_the_spectra_err():
    """Constant scene (no transit, drift, settling or cosmic rays): the scatter over 150 integrations
    of each box-extracted row equals its ERR once the row-correlated noise of the median background
    (pi/2 sigma^2 / n, times the box width squared) is propagated; without it the ERR is low on the
    long-wavelength rows (here ~5 %; 10-20 % in the ramp-level noise budget, benchmarks/noise_budget.py).  Tolerance: 150 x 60 rows, the rms ratio has a
    standard error of ~1 %; 4 % allows for the temporal outlier cleaning and the median's finite-n
    efficiency."""
    from tsoreduce.extraction import run_stage3
    from tsoreduce.spectroscopic import run_stage2

    rates, _ = simulate_lrs_rateints(LRSSimConfig(nints=150, seed=9, transit=False, drift=False,
                                                  settling=False, cosmic_rays=False))
    cal = run_stage2(rates, {"pca": {"skip": True}}).product
    assert cal.meta["BKGMETH"] == "median" and cal.meta["BKGCOLS"]
    cfg = {"extraction": {"method": "box"}, "lightcurves": {"skip": True}}
    spectra = run_stage3(cal, cfg).product.x1dints
    assert spectra.meta["BKGERR"]
    rows = (spectra.wavelength > 9.5) & (spectra.wavelength < 12)
    f, e = spectra.data[:, rows], spectra.err[:, rows]
    ratio = np.sqrt(np.mean(np.var(f, axis=0, ddof=1)) / np.mean(e ** 2))
    plain = run_stage3(cal.replace(meta={k: v for k, v in cal.meta.items() if k != "BKGMETH"}), cfg).product.x1dints
    ratio_plain = np.sqrt(np.mean(np.var(f, axis=0, ddof=1)) / np.mean(plain.err[:, rows] ** 2))
    print(f"9.5-12 um rows: scatter / ERR = {ratio:.3f} with the background term, {ratio_plain:.3f} without")
    assert abs(ratio - 1) < 0.04
    assert ratio_plain > ratio + 0.04  # the term is several standard errors (~1 %) large here
