"""Stage 3 (tsoreduce.extraction): trace finding, box / optimal extraction, regressors, binning --
injection-recovery on synthetic frames with known truth and the MIRISim products in ../shared/data."""

from __future__ import annotations

import numpy as np
import pytest

from test_spectroscopic import _read_mirisim, synth_rates
from tsoreduce import reference
from tsoreduce.datamodel import DQ, IntTimes, LightCurves, SpectraData, dq_has
from tsoreduce.errors import ConfigError, ShapeError
from tsoreduce.extraction import (CONFIG_SCHEMA, bin_lightcurves, box_extract, box_weights, find_trace,
                                  measure_position_width, optimal_extract, optimize_box_width, run_stage3,
                                  run_with_deep_frame, white_light_scatter)
from tsoreduce.simulate.hot_pixels import noiseless_hot_pixels
from tsoreduce.spectroscopic import make_deep_frame, run_stage2, subtract_background

BRIGHT = np.arange(160, 390)


def _bkg_subtracted(nints=40, **kw):
    r, t = synth_rates(nints, **kw)
    r, _ = subtract_background(r, trace_center=37.0)
    return r, t


def test_edgetrigger_recovers_trace():
    """Issue 4 Stage 3 step 1: trace recovered to < 0.05 px rms (specwcs_0006 trace shifted by 0.37 px,
    pixel-integrated Gaussian PSF, Poisson + read noise, 30 integrations in the deep frame)."""
    r, t = _bkg_subtracted(30, x_offset=0.37, seed=2)
    deep = make_deep_frame(r)
    trace, info = find_trace(deep)
    rows = info["rows"]
    assert rows.min() < 200 and rows.max() > 370
    rms = np.sqrt(np.mean((trace[rows] - t["trace0"][rows]) ** 2))
    print(f"\nedgetrigger on synthetic frames: trace rms error {rms:.4f} px over {rows.size} rows")
    assert rms < 0.05, rms
    # user centroids and the nominal solution
    t_user, _ = find_trace(deep, method="user", centroids=(rows, t["trace0"][rows]))
    assert np.sqrt(np.mean((t_user[rows] - t["trace0"][rows]) ** 2)) < 0.01
    t_nom, _ = find_trace(deep, method="nominal")
    np.testing.assert_allclose(t_nom, reference.trace_x_center(np.arange(416)))
    with pytest.raises(ConfigError):
        find_trace(deep, method="user")
    with pytest.raises(ShapeError):
        find_trace(deep, method="user", centroids=np.ones(10))


def test_box_weights_fractional():
    tr = np.full(416, 37.3)
    w = box_weights(tr, 7.0)
    np.testing.assert_allclose(w.sum(axis=1), 7.0)
    # aperture [33.8, 40.8]: pixel 34 (33.5-34.5) has 0.7 inside, pixel 41 (40.5-41.5) 0.3
    assert np.isclose(w[0, 34], 0.7) and np.isclose(w[0, 41], 0.3) and w[0, 35:41].min() == 1
    assert box_weights(np.full(416, 2.0), 6.0)[:, :4].sum() == 0  # reference pixels never used


def test_optimal_beats_box_and_conserves_flux():
    """Issue 4 Stage 3 step 3: optimal extraction has lower white-light scatter than the box and
    conserves the flux to < 0.5 %."""
    r, t = _bkg_subtracted(40, seed=7, bkg_level=60.0)
    deep = make_deep_frame(r)
    trace, _ = find_trace(deep)
    fb, eb, _ = box_extract(r, trace, 8.0)
    fo, eo, dqo, nrej = optimal_extract(r, deep, trace, aperture_halfwidth=6.0)
    wb = fb[:, BRIGHT].sum(1)
    wo = fo[:, BRIGHT].sum(1)
    sb, so = np.std(wb / wb.mean()), np.std(wo / wo.mean())
    assert so < sb, (so, sb)
    true_rows = t["star"][:, BRIGHT, :].sum(axis=2)  # all the star's flux in each row
    cons = wo.mean() / true_rows.sum(1).mean() - 1
    print(f"\nbackground-limited frames: white-light scatter box {1e6 * sb:.0f} ppm, optimal {1e6 * so:.0f} ppm; "
          f"optimal flux conservation {100 * cons:+.3f} %")
    assert abs(cons) < 0.005, cons
    # per-row errors describe the scatter (chi^2-like check on the time series of each row)
    z = (fo[:, BRIGHT] - fo[:, BRIGHT].mean(0)) / eo[:, BRIGHT]
    assert 0.8 < np.std(z) < 1.2
    assert (dqo[:, BRIGHT] == 0).all()


def test_optimal_rejects_cosmic_ray():
    r, t = _bkg_subtracted(20, seed=8)
    deep = make_deep_frame(r)
    trace, _ = find_trace(deep)
    data = r.data.copy()
    data[5, 300, int(round(trace[300])) + 1] += 3000.0
    hit = r.replace(data=data)
    fo, _, _, nrej = optimal_extract(hit, deep, trace)
    fb, _, _ = box_extract(hit, trace, 8.0)
    truth = t["star"][5, 300].sum()
    assert nrej >= 1
    assert abs(fo[5, 300] - truth) < 0.02 * truth
    assert abs(fb[5, 300] - truth) > 0.5 * truth  # the box cannot reject it


def test_position_width_regressors():
    rng = np.random.default_rng(3)
    n = 40
    shifts = 0.05 * rng.standard_normal(n)
    widths = 1 + 0.01 * rng.standard_normal(n)
    r, t = _bkg_subtracted(n, shifts=shifts, widths=widths, seed=4)
    deep = make_deep_frame(r)
    trace, info = find_trace(deep)
    tx, tw = measure_position_width(r, deep, trace, rows=info["rows"])
    dx = tx - tx.mean()
    slope = np.polyfit(shifts, dx, 1)[0]
    assert np.corrcoef(shifts, dx)[0, 1] > 0.98 and abs(slope - 1) < 0.1, slope
    assert abs(tx.mean() - t["trace0"][info["rows"]].mean()) < 0.05
    cw = np.corrcoef(widths, tw)[0, 1]
    assert cw > 0.8, cw
    assert 0.9 < np.median(tw) / 1.1 < 1.3  # RMS width ~ sigma of the Gaussian (1.1 px)


def test_optimize_box_width():
    r, _ = _bkg_subtracted(30, seed=12, shifts=0.02 * np.random.default_rng(0).standard_normal(30))
    deep = make_deep_frame(r)
    trace, _ = find_trace(deep)
    best, ws, sc = optimize_box_width(r, trace, BRIGHT, np.arange(2.0, 12.01, 1.0))
    assert best in ws and sc[np.argmin(sc)] == sc.min()
    assert sc[0] > sc.min()  # a 2-px box loses flux to trace jitter: it cannot be the best


def _transit_spectra(nints=80, seed=0):
    """SpectraData with a known wavelength-dependent transit depth (box-shaped transit)."""
    rng = np.random.default_rng(seed)
    wl = reference.wavelength_of_row(np.arange(7, 395))
    depth = 0.01 + 0.002 * (wl > 8)
    intr = (np.arange(nints) >= 30) & (np.arange(nints) < 50)
    base = 1000 * np.exp(-0.5 * ((wl - 8) / 3) ** 2)
    flux = base[None] * (1 - depth[None] * intr[:, None])
    err = np.sqrt(base)[None] * np.ones((nints, 1)) * 0.02
    flux = flux + err * rng.standard_normal(flux.shape)
    times = IntTimes(np.arange(1, nints + 1), 60000 + np.arange(nints) * 1e-3, 60000.0005 + np.arange(nints)
                     * 1e-3, 60000.001 + np.arange(nints) * 1e-3)
    sp = SpectraData(data=flux, err=err, wavelength=wl, int_times=times,
                     aux={"trace_x": np.linspace(37, 37.1, nints), "trace_width": np.ones(nints)})
    return sp, depth, intr, base, wl


def test_bin_lightcurves_recovers_depths():
    sp, depth, intr, base, wl = _transit_spectra()
    lc = bin_lightcurves(sp, white_range=(5, 12), baseline_ints=[0, 30, 50, 80])
    assert isinstance(lc, LightCurves) and lc.nchan == 14
    np.testing.assert_allclose(lc.wavelength_lower, np.arange(5, 12, 0.5))
    np.testing.assert_allclose(lc.time, sp.int_times.mid_bjd_tdb)
    d = 1 - lc.flux[:, intr].mean(axis=1)
    expect = np.where(lc.wavelength > 8, 0.012, 0.01)
    expect[lc.wavelength_lower == 8.0] = 0.012  # the 8.0-8.5 bin is fully > 8 um
    np.testing.assert_allclose(d, expect, atol=3e-4)
    assert set(lc.regressors) == {"trace_x", "trace_width"}
    wd = 1 - lc.white_flux[intr].mean()
    assert 0.01 < wd < 0.012
    # fractional weights conserve the flux: bins tiling the white range sum to the white light curve
    raw = bin_lightcurves(sp, normalise=False)
    np.testing.assert_allclose(raw.flux.sum(axis=0), raw.white_flux, rtol=1e-10)
    # constant resolution and explicit edges
    lr = bin_lightcurves(sp, resolution=10, white_range=(5, 12))
    assert lr.nchan == round(np.log(12 / 5) * 10)
    assert np.allclose(lr.wavelength_upper / lr.wavelength_lower, lr.wavelength_upper[0] / lr.wavelength_lower[0])
    le = bin_lightcurves(sp, edges=[5, 7, 9, 11])
    assert le.nchan == 3
    with pytest.raises(ConfigError):
        bin_lightcurves(sp, edges=[20, 21])
    with pytest.raises(ConfigError):
        bin_lightcurves(sp, edges=[9, 7])


@pytest.mark.slow
def test_run_stage3_products(tmp_path):
    n = 30
    rng = np.random.default_rng(5)
    white = 1 - 0.01 * ((np.arange(n) >= 10) & (np.arange(n) < 20))
    r, t = synth_rates(n, seed=10, white=white, shifts=0.02 * rng.standard_normal(n))
    times = IntTimes(np.arange(1, n + 1), 60000 + np.arange(n) * 1e-4, 60000 + np.arange(n) * 1e-4 + 5e-5,
                     60000 + np.arange(n) * 1e-4 + 1e-4)
    r = r.replace(int_times=times, meta={"EXP_TYPE": "MIR_LRS-SLITLESS", "INSTRUME": "MIRI",
                                         "SUBARRAY": "SLITLESSPRISM"})
    cal, diag = (s2res := run_stage2(r, {"pca": {"skip": True}})).product, s2res.diagnostics
    res = run_with_deep_frame(cal, diag["deep_frame"], {"lightcurves": {"baseline_ints": [0, 10, 20, 30]}},
                              plot_dir=tmp_path)
    spectra, lc = res.product.x1dints, res.product.lightcurves
    assert sorted(p.name for p in res.figures) == ["stage3_deep_frame_aperture.png", "stage3_lightcurve_image.png",
                                                   "stage3_regressors.png", "stage3_white_light.png"]
    assert spectra.data.shape == (n, 388)  # rows 7-394, like the flight x1dints (388 rows)
    assert np.all(np.diff(spectra.wavelength) < 0)  # row order: wavelength decreasing
    assert np.isfinite(spectra.data).all() and np.isfinite(spectra.err).all()
    assert set(spectra.aux) == {"trace_x", "trace_width"}
    intr = (np.arange(n) >= 10) & (np.arange(n) < 20)
    assert abs(1 - lc.white_flux[intr].mean() - 0.01) < 5e-4
    for name in ("stage3_deep_frame_aperture.png", "stage3_lightcurve_image.png", "stage3_white_light.png",
                 "stage3_regressors.png"):
        assert (tmp_path / name).stat().st_size > 1000
    # box with width optimisation also runs and writes its scan
    sb = run_stage3(cal, {"extraction": {"method": "box", "optimize_width": True,
                                         "width_grid": [4, 10, 2]}}, plot_dir=tmp_path).product.x1dints
    assert (tmp_path / "stage3_box_width_scan.png").exists() and sb.meta["EXTRWID"] in (4, 6, 8, 10)
    # the x1dints round-trips through the FITS writer/reader, regressors included
    from tsoreduce import io

    path = io.write_x1dints(tmp_path / "sim_x1dints.fits", spectra)
    back = io.read_x1dints(path)
    np.testing.assert_allclose(back.data, spectra.data, rtol=1e-6)
    np.testing.assert_allclose(back.aux["trace_x"], spectra.aux["trace_x"])
    with pytest.raises(ConfigError):
        run_stage3(cal, {"extraction": {"method": "psf"}})
    assert set(CONFIG_SCHEMA) == {"trace", "extraction", "lightcurves"}


def test_white_light_scatter_metric():
    rng = np.random.default_rng(1)
    f = 1 + 1e-3 * rng.standard_normal(5000)
    # median |f_i - (f_{i-1}+f_{i+1})/2| = 0.6745 * sqrt(1.5) * sigma for white noise
    assert abs(white_light_scatter(f) / (0.6745 * np.sqrt(1.5) * 1e-3) - 1) < 0.05


@pytest.mark.parametrize("kind", ["rateints", "calints"])
def test_stages_2_3_on_mirisim(kind):
    """Real STScI pipeline products (MIRISim NGTS-10): Stage 2 + 3 run, trace found near column 37.5,
    finite spectra."""
    r = _read_mirisim(kind)
    cal, diag = (s2res := run_stage2(r)).product, s2res.diagnostics
    p = run_with_deep_frame(cal, diag["deep_frame"]).product
    spectra, lc = p.x1dints, p.lightcurves
    tr = spectra.meta["_trace"]
    rows = spectra.meta["_rows"]
    sel = (rows > 150) & (rows < 390)
    assert np.all((tr[sel] > 36.0) & (tr[sel] < 38.5)), (tr[sel].min(), tr[sel].max())
    assert np.isfinite(spectra.data).all()
    assert spectra.wavelength.min() < 5 and spectra.wavelength.max() > 12
    assert lc.nchan == 14 and np.isfinite(lc.flux).all()
    # 4 integrations of one steady source: the white light curve is flat to < 0.3 %
    assert np.ptp(lc.white_flux) < 3e-3


# ------------------------------------------------------------------ helper 2's LRS simulator

@pytest.fixture(scope="module")
def sim_stage2():
    sim = pytest.importorskip("tsoreduce.simulate")
    if not hasattr(sim, "simulate_lrs_rateints"):
        pytest.skip("tsoreduce.simulate.simulate_lrs_rateints not available")
    rates, truth = sim.simulate_lrs_rateints(sim.LRSSimConfig(nints=60, seed=1))
    cal, diag = (s2res := run_stage2(rates, {"pca": {"skip": True}})).product, s2res.diagnostics
    return rates, truth, cal, diag


def test_sim_trace_accuracy(sim_stage2):
    """Edgetrigger recovers the simulator's trace (time-averaged) to < 0.05 px rms over the rows used."""
    _, truth, cal, diag = sim_stage2
    trace, info = find_trace(diag["deep_frame"])
    rows = info["rows"]
    rms = np.sqrt(np.mean((trace[rows] - truth.trace_x.mean(axis=0)[rows]) ** 2))
    print(f"\nedgetrigger on the simulator: trace rms error {rms:.4f} px over {rows.size} rows")
    assert rms < 0.05, rms
    # per-integration offsets follow the injected drift + jitter
    tx, tw = measure_position_width(cal, diag["deep_frame"], trace, rows=rows)
    tru = truth.trace_x[:, rows].mean(axis=1)
    assert np.corrcoef(tx, tru)[0, 1] > 0.9


def test_sim_optimal_vs_box(sim_stage2):
    """Optimal extraction (profile moved with the measured trace offsets) against the default 7-px box
    on the simulator: lower noise and flux conserved to < 0.5 % against the noiseless truth passed
    through the same background subtraction and aperture.

    The simulator's star dominates the noise (3 DN/s background), where Horne's gain over a well-chosen
    box is small (~1 %), so the comparison uses the summed per-row residual variance against the
    noiseless truth (290 rows x 60 integrations: precise) and requires the white-light scatter to be
    no worse than the box's within 3 % (with 60 integrations a scatter has a ~9 % statistical error);
    the background-limited case, where the gain is large, is tested on synthetic frames above."""
    from tsoreduce.datamodel import RateData

    _, truth, cal, diag = sim_stage2
    deep = diag["deep_frame"]
    trace, info = find_trace(deep)
    tx, _ = measure_position_width(cal, deep, trace, rows=info["rows"])
    shifts = tx - trace[info["rows"]].mean()
    rows = np.arange(100, 390)
    true_rows = truth.rate_star[:, rows].sum(axis=2)

    def noise(f):
        resid = f[:, rows] - true_rows * (f[:, rows].sum() / true_rows.sum())
        resid -= resid.mean(axis=0)
        total = f[:, rows].sum(1).mean()
        return np.sqrt(resid.var(axis=0).sum()) / total, resid.sum(axis=1).std() / total

    fb, _, _ = box_extract(cal, trace, 7.0)
    fo, eo, _, _ = optimal_extract(cal, deep, trace, aperture_halfwidth=6.0, shifts=shifts)
    (ib, wb), (io_, wo) = noise(fb), noise(fo)
    # issue 13: with the smooth (Horne/Marsh) profile the per-row noise equals the 7-px box's within 3 %
    # here (measured 1.02x, summed over rows it is dominated by the bright, star-limited rows where
    # optimal weights are box-like; 0.92-0.97x in the fainter rows 100-250).  The earlier deep-frame
    # profile scored 0.99x only through its noise-correlated weights (with the true profile: 1.05x).
    assert io_ < 1.03 * ib, (io_, ib)
    assert wo < 1.03 * wb, (wo, wb)
    noiseless, _ = subtract_background(RateData(truth.rate_star + truth.rate_background),
                                       trace_center=diag["trace_center"])
    # the optimal flux is the flux of the profile region (+-10.5 px, a 21-px box), not of the aperture
    ta, _, _ = box_extract(noiseless, trace, 21.0)
    cons = fo[:, rows].sum() / ta[:, rows].sum() - 1
    print(f"\nsimulator: per-row noise box {1e6 * ib:.1f} ppm, optimal {1e6 * io_:.1f} ppm; white-light "
          f"scatter box {1e6 * wb:.0f} ppm, optimal {1e6 * wo:.0f} ppm; flux conservation {100 * cons:+.3f} %")
    assert abs(cons) < 0.005, cons
    # the quoted errors match the achieved scatter (p2p metric, Gaussian-equivalent)
    so = white_light_scatter(fo[:, rows].sum(1))
    expect = np.median(np.sqrt((eo[:, rows] ** 2).sum(1)) / fo[:, rows].sum(1)) * 0.6745 * np.sqrt(1.5)
    assert 0.8 < so / expect < 1.3, (so, expect)


def test_optimal_shifted_profile_follows_trace_motion():
    """With the trace moving by 0.1 px rms, a fixed deep-frame profile leaves position-correlated
    white-light errors; moving the profile by the measured offsets removes them."""
    rng = np.random.default_rng(21)
    n = 40
    shifts = 0.1 * rng.standard_normal(n)
    r, t = _bkg_subtracted(n, shifts=shifts, seed=22, x_offset=0.3)
    deep = make_deep_frame(r)
    trace, info = find_trace(deep)
    tx, _ = measure_position_width(r, deep, trace, rows=info["rows"])
    truth = t["star"][:, BRIGHT].sum(axis=(1, 2))
    f0 = optimal_extract(r, deep, trace)[0][:, BRIGHT].sum(1) / truth
    f1 = optimal_extract(r, deep, trace, shifts=tx - trace[info["rows"]].mean())[0][:, BRIGHT].sum(1) / truth
    s0, s1 = np.std(f0 / f0.mean()), np.std(f1 / f1.mean())
    assert s1 < 0.8 * s0, (s0, s1)
    assert abs(np.corrcoef(f1, shifts)[0, 1]) < 0.5
    with pytest.raises(ShapeError):
        optimal_extract(r, deep, trace, shifts=np.zeros(3))


def test_mjy_per_sr_calints_converted_to_jy():
    """MJy/sr calints (STScI photom) are kept in Stage 2 and converted to Jy in Stage 3 with PIXAR_SR
    (flux = sum of surface brightness x pixel solid angle); without PIXAR_SR the units say so."""
    r, _ = _bkg_subtracted(6, seed=30, noise=False)
    pixar = 2.8e-13  # sr, MIRI imager pixel (0.11 arcsec)^2
    cal = r.replace(units="MJy/sr", meta={"PIXAR_SR": pixar})
    sp_dn = run_stage3(r, {"extraction": {"method": "box"}, "lightcurves": {"skip": True}}).product.x1dints
    p = run_stage3(cal, {"extraction": {"method": "box"}, "lightcurves": {"skip": True}}).product
    sp_jy, lc = p.x1dints, p.lightcurves
    assert lc is None and sp_jy.units == "Jy"
    np.testing.assert_allclose(sp_jy.data, sp_dn.data * pixar * 1e6, rtol=1e-10)
    sp_raw = run_stage3(r.replace(units="MJy/sr"), {"extraction": {"method": "box"},
                                                    "lightcurves": {"skip": True}}).product.x1dints
    assert "MJy/sr" in sp_raw.units


def test_user_centroids_file(tmp_path):
    from astropy.table import Table

    r, t = _bkg_subtracted(5, seed=31, x_offset=-0.4)
    rows = np.arange(120, 390, 5)
    Table({"row": rows, "x": t["trace0"][rows]}).write(tmp_path / "centroids.ecsv")
    sp = run_stage3(r, {"trace": {"method": "user", "centroids_file": str(tmp_path / "centroids.ecsv")},
                        "lightcurves": {"skip": True}}).product.x1dints
    kept = sp.meta["_rows"]
    sel = (kept >= 120) & (kept < 390)
    assert np.max(np.abs(sp.meta["_trace"][sel] - t["trace0"][kept[sel]])) < 0.01
    Table({"a": rows}).write(tmp_path / "bad.ecsv")
    with pytest.raises(ConfigError):
        run_stage3(r, {"trace": {"method": "user", "centroids_file": str(tmp_path / "bad.ecsv")}})


def test_bin_lightcurves_on_flight_wasp39_x1dints():
    """Real STScI x1dints (WASP-39, 10 integrations): our white light curve reproduces the shape of the
    pipeline's own white-light table (first integration ~2.6 % faint) to 2e-4 over 5-12 um."""
    from test_spectroscopic import DATA

    from tsoreduce import io

    base = DATA / "wasp39b_miri_lrs_x1dints"
    x1d = base / "jw02783-o002_t001_miri_p750l-slitlessprism_x1dints.fits"
    wlt = base / "jw02783-o002_t001_miri_p750l-slitlessprism_whtlt.ecsv"
    if not x1d.exists() or not wlt.exists():
        pytest.skip(f"flight WASP-39 x1dints absent ({base})")
    from astropy.table import Table

    spectra = io.read_x1dints(x1d)
    lc = bin_lightcurves(spectra, white_range=(5.0, 12.0), baseline_ints=[1, 10])
    ref = np.asarray(Table.read(wlt)["whitelight_flux"], float)
    ref = ref / np.median(ref[1:])
    assert abs(lc.white_flux[0] - 0.974) < 0.005
    np.testing.assert_allclose(lc.white_flux, ref, atol=2e-4)
    assert lc.nchan == 14 and np.isfinite(lc.flux).all()
    np.testing.assert_allclose(lc.time, spectra.int_times.mid_bjd_tdb)


def test_mirisim_rateints_and_calints_same_wavelengths(tmp_path):
    """Issue 13 part 1: the rateints-only run of the MIRISim NGTS-10 file (no WAVELENGTH extension, so
    Stage 2 falls back to the bundled default specwcs_0009) gives the same x1dints wavelengths as a run
    on its calints (the STScI WAVELENGTH extension, CRDS jwst_1535 / specwcs_0009), measured < 1e-5 um;
    every calints and x1dints header names the map (R_SPCWCS, WAVSRC)."""
    from astropy.io import fits

    from tsoreduce import io

    s2 = {"bad_pixels": {"skip_temporal": True}, "pca": {"n_components": 3}}
    out = {}
    for kind in ("rateints", "calints"):
        cal, diag = (s2res := run_stage2(_read_mirisim(kind), s2)).product, s2res.diagnostics
        spectra = run_with_deep_frame(cal, diag["deep_frame"], {"lightcurves": {"skip": True}}).product.x1dints
        pc = io.write_calints(tmp_path / f"{kind}_calints.fits", cal)
        px = io.write_x1dints(tmp_path / f"{kind}_x1dints.fits", spectra)
        out[kind] = (spectra, fits.getheader(pc, 0), fits.getheader(px, 0))
    wr, wc = out["rateints"][0].wavelength, out["calints"][0].wavelength
    print(f"\nMIRISim x1dints wavelengths, rateints vs calints run: {wr.size} vs {wc.size} elements, "
          f"max |diff| {np.max(np.abs(wr - wc)) if wr.shape == wc.shape else np.nan:.2g} um")
    assert wr.shape == wc.shape == (388,)
    np.testing.assert_allclose(wr, wc, atol=1e-5)
    for kind, src in (("rateints", "bundled slitlessprism_specwcs_0009.ecsv"),
                      ("calints", "input WAVELENGTH extension")):
        for h in out[kind][1:]:
            assert h["WAVSRC"] == src
            assert "jwst_miri_specwcs_0009.fits" in h["R_SPCWCS"]


# ------------------------------------------------------------------ issue 13: profile bias, repairs

@pytest.mark.parametrize("seed", [1, 2])
def test_optimal_profile_unbiased_at_low_snr(seed):
    """Issue 13 part 2: at low S/N (10 integrations, the 11-12 um rows) the optimal flux equals a 21-px
    box's on the same data to < 0.5 % and does not depend on the aperture half-width (4, 6, 10 px).
    Measured (seeds 1-4): 1.0004 +- 0.0007 for every half-width; before (deep-frame profile with
    negatives set to zero): 0.981 / 0.996 / 1.012 for half-widths 4 / 6 / 10."""
    from tsoreduce.extraction.profile import pixel_variance, smooth_profile
    from tsoreduce.simulate import LRSSimConfig, simulate_lrs_rateints

    rates, truth = simulate_lrs_rateints(LRSSimConfig(nints=10, seed=seed))
    cal, diag = (s2res := run_stage2(rates, {"pca": {"skip": True}})).product, s2res.diagnostics
    deep = diag["deep_frame"]
    trace, _ = find_trace(deep)
    rows = np.flatnonzero((truth.wavelength >= 11) & (truth.wavelength <= 12))
    fb = box_extract(cal, trace, 21.0)[0][:, rows].sum()
    r = np.array([np.nansum(optimal_extract(cal, deep, trace, aperture_halfwidth=h)[0][:, rows]) / fb
                  for h in (4.0, 6.0, 10.0)])
    print(f"\nseed {seed}: optimal / box-21 over 11-12 um, half-widths 4/6/10: {np.round(r, 4)}")
    assert np.all(np.abs(r - 1) < 0.005), r
    assert np.ptp(r) < 0.002, r
    # the profile is non-negative, zero outside its region and normalised per row
    region = box_weights(trace, 21.0, 72)
    var = pixel_variance(cal.err, np.ones(cal.err.shape, bool)) * (0.5 * np.pi / cal.nints)
    P, info = smooth_profile(deep, var, region)
    assert (P >= 0).all() and (P[region == 0] == 0).all()
    np.testing.assert_allclose(P.sum(axis=1), 1.0, rtol=1e-9)


def test_repaired_pixels_stay_repaired():
    """Issue 13 part 5: on a noiseless simulation with hot pixels on the trace (rows 233 and 344 of the
    issue and four more), every row from 5 to 10.5 um is within 1 % of the true star flux, box (21 px)
    and optimal; the hot rows' x1dints DQ says FLUX_ESTIMATED, not DO_NOT_USE.  Measured: worst row
    0.9935 (box) / 0.9937 (optimal), hot rows 0.995-1.001; before: hot rows 0.61-0.72 (the repaired
    pixel was zeroed), flagged DO_NOT_USE.  Without Stage 2's repair the bad pixels are excluded and
    the elements flagged DO_NOT_USE."""
    rates, truth, rows, cols = noiseless_hot_pixels()
    cal, diag = (s2res := run_stage2(rates, {"pca": {"skip": True}})).product, s2res.diagnostics
    assert dq_has(cal.dq[:, rows, cols], DQ.FLUX_ESTIMATED).all()
    deep = diag["deep_frame"]
    trace, _ = find_trace(deep)
    true = truth.rate_star.sum(axis=2).mean(axis=0)
    band = np.flatnonzero((truth.wavelength >= 5.0) & (truth.wavelength <= 10.5))
    for name, (f, e, dq, *_) in (("box", box_extract(cal, trace, 21.0)),
                                 ("optimal", optimal_extract(cal, deep, trace, aperture_halfwidth=6.0))):
        r = np.nanmean(f, axis=0) / true
        print(f"\n{name}: hot rows {np.round(r[rows], 4)}, worst row 5-10.5 um {r[band][np.argmax(np.abs(r[band] - 1))]:.4f}")
        assert np.all(np.abs(r[band] - 1) < 0.01), (name, band[np.abs(r[band] - 1) >= 0.01])
        assert dq_has(dq[:, rows], DQ.FLUX_ESTIMATED).all()
        assert not dq_has(dq[:, rows], DQ.DO_NOT_USE).any()
        assert np.isfinite(e[:, rows]).all()
    # the estimate's variance is inflated: the box error of a hot row exceeds its neighbours' mean
    _, eb, _ = box_extract(cal, trace, 21.0)
    assert np.all(eb[0, rows] > 0.5 * (eb[0, rows - 1] + eb[0, rows + 1]))
    # not repaired (Stage 2's bad-pixel step skipped): excluded / flagged, never counted as estimated
    raw = run_stage2(rates, {"pca": {"skip": True}, "bad_pixels": {"skip": True}}).product
    _, _, dqb = box_extract(raw, trace, 21.0)
    fo, _, dqo, _ = optimal_extract(raw, deep, trace, aperture_halfwidth=6.0)
    assert dq_has(dqb[:, rows], DQ.DO_NOT_USE).all() and not dq_has(dqb[:, rows], DQ.FLUX_ESTIMATED).any()
    assert np.all(np.abs(np.nanmean(fo, axis=0)[rows] / true[rows] - 1) < 0.01)  # excluded, profile-weighted


def test_bin_lightcurves_skips_elements_without_wavelength():
    """Issue 13 part 1: elements with a NaN wavelength (outside the table) enter no bin and do not move
    the edges of the others: the binned light curves equal those of the spectrum without them."""
    sp, *_ = _transit_spectra()
    w = sp.wavelength.copy()
    w_nan = w.copy()
    w_nan[[0, 5, 200]] = np.nan
    keep = np.isfinite(w_nan)
    with_nan = bin_lightcurves(sp.replace(wavelength=w_nan), normalise=False)
    reduced = SpectraData(data=sp.data[:, keep], err=sp.err[:, keep], dq=sp.dq[:, keep], wavelength=w[keep],
                          int_times=sp.int_times, aux=dict(sp.aux), meta=dict(sp.meta), units=sp.units)
    ref = bin_lightcurves(reduced, normalise=False)
    np.testing.assert_allclose(with_nan.flux, ref.flux, rtol=1e-12)
    np.testing.assert_allclose(with_nan.white_flux, ref.white_flux, rtol=1e-12)
    assert with_nan.meta["n_elements_without_wavelength"] == 3


# ------------------------------------------------------------------ issue 18: the stage contract

def test_run_is_pure_and_returns_a_stage_result(monkeypatch):
    """Issue 18: ``run`` returns a StageResult holding a Stage3Product, leaves its input untouched
    (every array and the header), refuses reference files, and gives the same products whatever the
    block size of its bounded-memory loops (blocks of integrations, chunks of rows)."""
    from tsoreduce.contract import Stage3Product, StageResult
    from tsoreduce.extraction import _blocks, run

    r, _ = _bkg_subtracted(12, seed=40)
    dq = r.dq.copy()
    dq[3, 200, 37] |= np.uint32(DQ.DO_NOT_USE)  # one flagged pixel in the aperture
    r = r.replace(dq=dq, meta={"EFFINTTM": 10.0, "BKGMETH": "median", "BKGCOLS": "4-20,55-71"})
    before = r.copy()
    res = run(r, {"lightcurves": {"bin_width": 1.0}})
    assert isinstance(res, StageResult) and isinstance(res.product, Stage3Product)
    assert isinstance(res.product.x1dints, SpectraData) and isinstance(res.product.lightcurves, LightCurves)
    assert res.figures == [] and res.diagnostics["deep_frame"].shape == (416, 72)
    assert res.diagnostics["background_error"] and res.product.x1dints.meta["BKGERR"]
    for name in ("data", "err", "dq"):
        np.testing.assert_array_equal(getattr(r, name), getattr(before, name))
    assert r.meta == before.meta
    with pytest.raises(ValueError, match="no reference files"):
        run(r, references={"flat": "x.fits"})
    # blocks of 5 integrations and chunks of a few rows: identical products
    monkeypatch.setattr(_blocks, "BLOCK", 5)
    monkeypatch.setattr(_blocks, "CHUNK_BYTES", 12 * 72 * 4 * 7)
    small = run(r, {"lightcurves": {"bin_width": 1.0}})
    box_cfg = {"extraction": {"method": "box", "optimize_width": True, "width_grid": [4, 8, 2]}}
    box_small = run(r, box_cfg)
    monkeypatch.undo()
    box = run(r, box_cfg)
    for a, b in ((res, small), (box, box_small)):
        for name in ("data", "err", "dq"):
            np.testing.assert_array_equal(getattr(a.product.x1dints, name), getattr(b.product.x1dints, name))
        np.testing.assert_array_equal(a.product.lightcurves.flux, b.product.lightcurves.flux)


def test_block_read_calints_equals_astropy(tmp_path):
    """Issue 17: io reads calints block by block (no raw copy of the file held); the arrays equal what
    astropy reads whole (DQ with high bits set, exercising the uint32 BZERO; NaN in SCI), and
    ``variances=False`` (Stage 3's read) only leaves out the variance cubes."""
    from astropy.io import fits

    from tsoreduce import io

    r, _ = _bkg_subtracted(70, seed=41)
    n = r.nints
    dq = r.dq.copy()
    dq[5, 100, 30] = np.uint32(2**31 + 5)
    data = r.data.copy()
    data[7, 200, 40] = np.nan
    times = IntTimes(np.arange(1, n + 1), 6e4 + np.arange(n) * 1e-4, 6e4 + np.arange(n) * 1e-4 + 5e-5,
                     6e4 + np.arange(n) * 1e-4 + 1e-4)
    wav = np.broadcast_to(reference.wavelength_of_row(np.arange(416))[:, None], (416, 72)).astype(np.float32)
    cal = r.replace(data=data, dq=dq, int_times=times, wavelength=wav,
                    meta={"EXP_TYPE": "MIR_LRS-SLITLESS", "INSTRUME": "MIRI", "SUBARRAY": "SLITLESSPRISM"})
    path = str(io.write_calints(tmp_path / "x_calints.fits", cal))
    ref = io.read_calints(path)
    got = io.read_segments([path], variances=False)
    with fits.open(path) as hdul:
        for name, ext in (("data", "SCI"), ("err", "ERR"), ("dq", "DQ"), ("wavelength", "WAVELENGTH")):
            np.testing.assert_array_equal(getattr(got, name), hdul[ext].data)
            np.testing.assert_array_equal(getattr(ref, name), hdul[ext].data)
    assert got.dq[5, 100, 30] == np.uint32(2**31 + 5) and np.isnan(got.data[7, 200, 40])
    assert ref.var_poisson is not None
    np.testing.assert_array_equal(got.int_times.mid_bjd_tdb, ref.int_times.mid_bjd_tdb)
    assert got.var_poisson is None and got.units == ref.units
    assert {k: v for k, v in got.meta.items() if not k.startswith("_")} == \
        {k: v for k, v in ref.meta.items() if not k.startswith("_")}
