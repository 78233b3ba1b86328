"""Stage 2 (tsoreduce.spectroscopic): injection-recovery on synthetic SLITLESSPRISM frames with known
truth, plus the MIRISim rateints/calints (real STScI pipeline products) in ../shared/data."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from scipy.special import erf

from tsoreduce import reference
from tsoreduce import instrument
from tsoreduce.datamodel import DQ, RateData, dq_has
from tsoreduce.errors import ConfigError, ShapeError
from tsoreduce.spectroscopic import (CONFIG_SCHEMA, assign_wavelength, clean_bad_pixels, flat_field,
                                     make_deep_frame, pca_reconstruct, read_specwcs_wavelength_map,
                                     run_stage2, subtract_background)

DATA = Path(__file__).parents[1].parent / "shared" / "data"
MIRISIM = DATA / "mirisim_ngts10"
SPECWCS = DATA / "miri_lrs_reference" / "jwst_miri_specwcs_0006.fits"


def synth_rates(nints=40, *, seed=1, sigma=1.1, x_offset=0.0, shifts=None, widths=None, white=None,
                bkg_level=20.0, bkg_slope=0.0, noise=True, peak_flux=2000.0, k_poisson=1 / 31.0,
                read_noise=0.3):
    """A synthetic LRS rateints (DN/s) with known truth.

    Star: per row y a Gaussian spatial profile integrated over each pixel (exact pixel fluxes), centre
    ``trace0(y) + shifts[i]`` with trace0 the specwcs_0006 trace + ``x_offset`` and width
    ``sigma * widths[i]``, row flux ``spec(y) * white[i]`` (spec bright around row 300).  Background
    ``bkg_level * (1 + bkg_slope * (x - 36)) * (1 + 0.3 y / 416)``.  Noise: Gaussian with variance
    ``k_poisson * (star + bkg) + read_noise^2`` (a 10-s integration with gain 3.1), reported in ERR.
    """
    rng = np.random.default_rng(seed)
    ny, nx = instrument.SUBARRAY_SHAPE
    y = np.arange(ny, dtype=float)
    x = np.arange(nx, dtype=float)
    trace0 = reference.trace_x_center(y) + x_offset
    spec = peak_flux * np.exp(-0.5 * ((y - 290) / 85) ** 2) + 20.0
    spec[y > 395] *= 0.05
    shifts = np.zeros(nints) if shifts is None else np.asarray(shifts, float)
    widths = np.ones(nints) if widths is None else np.asarray(widths, float)
    white = np.ones(nints) if white is None else np.asarray(white, float)
    c = trace0[None, :, None] + shifts[:, None, None]
    s = sigma * widths[:, None, None]
    prof = 0.5 * (erf((x[None, None, :] + 0.5 - c) / (np.sqrt(2) * s))
                  - erf((x[None, None, :] - 0.5 - c) / (np.sqrt(2) * s)))
    star = spec[None, :, None] * white[:, None, None] * prof
    bkg = bkg_level * (1 + bkg_slope * (x[None, :] - 36.0)) * (1 + 0.3 * y[:, None] / ny)
    bkg = np.broadcast_to(bkg, star.shape)
    var = k_poisson * np.clip(star + bkg, 0, None) + read_noise**2
    data = star + bkg + (rng.normal(size=star.shape) * np.sqrt(var) if noise else 0.0)
    dq = np.zeros(star.shape, np.uint32)
    dq[:, :, :4] = DQ.REFERENCE_PIXEL
    rates = RateData(data=data, err=np.sqrt(var), dq=dq, var_poisson=k_poisson * np.clip(star + bkg, 0, None),
                     var_rnoise=np.full(star.shape, read_noise**2), units="DN/s")
    truth = dict(star=star, bkg=np.array(bkg), trace0=trace0, spec=spec, shifts=shifts, widths=widths,
                 white=white, sigma=sigma)
    return rates, truth


# ------------------------------------------------------------------------------------- wavelength

def test_wavelength_sources(caplog):
    r, _ = synth_rates(3, noise=False)
    with caplog.at_level(logging.WARNING, logger="tsoreduce.spectroscopic"):
        out = assign_wavelength(r, "auto")
    # the fallback to a bundled map is a WARNING naming it, and the product records it
    assert any(rec.levelno == logging.WARNING and "specwcs_0009" in rec.getMessage() for rec in caplog.records)
    assert out.meta["R_SPCWCS"] == "jwst_miri_specwcs_0009.fits"
    assert out.meta["WAVSRC"] == "bundled slitlessprism_specwcs_0009.ecsv"
    ref = reference.default_wavelength_map()
    np.testing.assert_allclose(out.wavelength, ref, equal_nan=True)
    assert r.wavelength is None  # input untouched
    old = run_stage2(r, {"wavelength": {"source": "default", "map": "specwcs_0006"}, "pca": {"skip": True},
                         "bad_pixels": {"skip": True}}).product
    np.testing.assert_allclose(old.wavelength, reference.default_wavelength_map(name="specwcs_0006"),
                               equal_nan=True)
    assert old.meta["R_SPCWCS"] == "jwst_miri_specwcs_0006.fits"
    with pytest.raises(ConfigError, match="map"):
        run_stage2(r, {"wavelength": {"map": "specwcs_0042"}})
    with pytest.raises(ConfigError, match="WAVELENGTH"):
        assign_wavelength(r, "extension")
    ext = r.replace(wavelength=ref + 0.01, meta=dict(r.meta, R_SPCWCS="crds://jwst_miri_specwcs_0009.fits"))
    out_ext = assign_wavelength(ext, "auto")
    np.testing.assert_allclose(out_ext.wavelength, ref + 0.01, equal_nan=True)
    assert out_ext.meta["WAVSRC"] == "input WAVELENGTH extension"
    assert out_ext.meta["R_SPCWCS"] == "crds://jwst_miri_specwcs_0009.fits"
    # jwst #6963: an all-zero WAVELENGTH extension must not be used
    zero = r.replace(wavelength=np.zeros(instrument.SUBARRAY_SHAPE))
    np.testing.assert_allclose(assign_wavelength(zero, "auto").wavelength, ref, equal_nan=True)


@pytest.mark.skipif(not SPECWCS.exists(), reason=f"shared CRDS specwcs file absent ({SPECWCS})")
def test_specwcs_file_matches_bundled_0006():
    wm = read_specwcs_wavelength_map(SPECWCS)
    ref = reference.default_wavelength_map(name="specwcs_0006")
    assert np.array_equal(np.isfinite(wm), np.isfinite(ref))
    assert np.nanmax(np.abs(wm - ref)) < 1e-3
    r, _ = synth_rates(2, noise=False)
    out = run_stage2(r, {"wavelength": {"source": "specwcs", "specwcs_path": str(SPECWCS)},
                         "pca": {"skip": True}}).product
    assert abs(out.wavelength[257, 36] - 9.70) < 0.05  # PROVENANCE.md: row 257 ~ 9.70 um
    assert out.meta["R_SPCWCS"] == SPECWCS.name and out.meta["WAVSRC"] == f"specwcs file {SPECWCS.name}"


# ---------------------------------------------------------------------------------------- flat

def test_flat_field_divides_and_flags():
    r, _ = synth_rates(3, noise=False)
    flat = np.full(instrument.SUBARRAY_SHAPE, 2.0)
    flat[100, 40] = np.nan
    out = flat_field(r, flat)
    np.testing.assert_allclose(out.data[:, 200, 30], r.data[:, 200, 30] / 2, rtol=1e-6)
    np.testing.assert_allclose(out.err[:, 200, 30], r.err[:, 200, 30] / 2, rtol=1e-6)
    assert (out.dq[:, 100, 40] & DQ.NO_FLAT_FIELD).all()
    assert out.data[0, 100, 40] == r.data[0, 100, 40]
    assert flat_field(r, None) is r
    with pytest.raises(ShapeError):
        flat_field(r, np.ones((10, 10)))


# ---------------------------------------------------------------------------------- background

@pytest.mark.parametrize("method", ["median", "slope"])
def test_background_gradient_removed(method):
    """A background with a strong row gradient (and, for 'slope', a column gradient) is removed to
    < 1 % of its level at the trace (issue 4, Stage 2 step 3)."""
    slope = 0.02 if method == "slope" else 0.0  # 2 % per column: 50 % across the background regions
    r, t = synth_rates(20, bkg_slope=slope, seed=3)
    out, bkg = subtract_background(r, method=method, trace_center=37.0)
    ys = slice(150, 380)
    # background level at the trace, per row and integration, against its estimate
    true_at_trace = t["bkg"][:, ys, 37]
    err = bkg[:, ys, 37] - true_at_trace
    rel = np.abs(err.mean(axis=0)) / true_at_trace.mean(axis=0)
    assert rel.max() < 0.01, rel.max()
    # residual sky off the trace averages to zero
    resid = out.data[:, ys, 14:24] - t["star"][:, ys, 14:24]
    assert abs(resid.mean()) < 0.01 * t["bkg"][:, ys, 37].mean()
    assert bkg.shape == r.data.shape


def test_background_bad_config():
    r, _ = synth_rates(2, noise=False)
    with pytest.raises(ConfigError):
        subtract_background(r, trace_center=5, trace_halfwidth=10, region_width=2)
    with pytest.raises(ConfigError, match="unknown key"):
        run_stage2(r, {"background": {"mehtod": "median"}})
    with pytest.raises(ConfigError):
        run_stage2(r, {"background": {"method": "mean"}})


# ---------------------------------------------------------------------------------- bad pixels

def test_bad_pixels_spatial_and_temporal():
    r, t = synth_rates(30, seed=4)
    out0, _ = subtract_background(r, trace_center=37.0)
    data = out0.data.copy()
    dq = out0.dq.copy()
    hot = [(50, 20), (120, 45), (200, 60), (310, 30), (260, 41)]  # (row, col) persistent hot pixels
    for y, x in hot:
        data[:, y, x] += 300.0
    dq[:, 222, 50] |= np.uint32(DQ.DO_NOT_USE)  # a DQ-flagged pixel
    data[:, 222, 50] = np.nan
    rng = np.random.default_rng(9)
    crs = [(int(i), int(y), int(x)) for i, y, x in zip(rng.integers(0, 30, 12), rng.integers(20, 400, 12),
                                                      rng.integers(10, 66, 12))]
    for i, y, x in crs:
        data[i, y, x] += 400.0  # cosmic-ray residuals in single integrations
    dirty = out0.replace(data=data, dq=dq)
    clean, diag = clean_bad_pixels(dirty, space_thresh=10, time_thresh=10)
    hm = diag["hot_pixel_map"]
    for y, x in hot + [(222, 50)]:
        assert hm[y, x], (y, x)
    # few false positives: the trace peak must not be flagged
    assert hm.sum() <= len(hot) + 1 + 5
    assert not hm[200:300, 36:39].any()
    assert diag["n_replaced_spatial"] >= 6 * 30
    assert diag["n_replaced_temporal"] >= len(crs) - 1
    truth = t["star"]
    noise = r.err
    for y, x in hot + [(222, 50)]:
        assert np.all(np.abs(clean.data[:, y, x] - truth[:, y, x]) < 6 * noise[:, y, x] + 2), (y, x)
    for i, y, x in crs:
        assert abs(clean.data[i, y, x] - truth[i, y, x]) < 8 * noise[i, y, x], (i, y, x)
    assert np.isfinite(clean.data).all()
    assert (clean.dq[:, 222, 50] & DQ.DO_NOT_USE == 0).all()
    assert (clean.dq[:, 222, 50] & DQ.FLUX_ESTIMATED).all()
    assert np.isnan(dirty.data[0, 222, 50])  # input not mutated


# ----------------------------------------------------------------------------------------- PCA

def _fixed_box_white(rates, c0=33, c1=40, rows=slice(150, 390)):
    """White light with a fixed integer aperture (columns c0..c1-1, as ExoTiC-MIRI's col 36 +- 4):
    off-centre against the trace, hence sensitive to trace motion."""
    return rates.data[:, rows, c0:c1].sum(axis=(1, 2))


@pytest.mark.slow
def test_pca_finds_and_removes_trace_shift():
    rng = np.random.default_rng(11)
    nints = 60
    shifts = 0.1 * rng.standard_normal(nints)
    r, t = synth_rates(nints, shifts=shifts, seed=5)
    r, _ = subtract_background(r, trace_center=37.0)
    _, res = pca_reconstruct(r, n_components=5)
    corr = [abs(np.corrcoef(ts, shifts)[0, 1]) for ts in res["timeseries"]]
    k = int(np.argmax(corr))
    assert corr[k] > 0.95, corr
    assert res["eigenimages"].shape == (5, 416, 72)
    assert np.isnan(res["eigenimages"][0, :, :12]).all()
    cleaned, res2 = pca_reconstruct(r, n_components=5, remove_components=[k + 1])
    w0 = _fixed_box_white(r)
    w1 = _fixed_box_white(cleaned)
    s0, s1 = np.std(w0 / w0.mean()), np.std(w1 / w1.mean())
    assert s1 < 0.5 * s0, (s0, s1)
    # the mean level is kept (only the component's time variation is removed)
    assert abs(w1.mean() / w0.mean() - 1) < 1e-4
    assert res2["removed"] == [k + 1] and res2["removed_variance_map"].max() > 0
    with pytest.raises(ConfigError):
        pca_reconstruct(r, n_components=3, remove_components=[4])


# ------------------------------------------------------------------------------------- runner

@pytest.mark.slow
def test_run_stage2_defaults_and_outputs(tmp_path):
    r, t = synth_rates(20, seed=6, white=1 - 0.01 * (np.arange(20) % 7 == 3))
    res = run_stage2(r, None, plot_dir=tmp_path)
    out, diag = res.product, res.diagnostics
    assert diag["deep_frame"].shape == (416, 72)
    assert diag["hot_pixel_map"].shape == (416, 72) and diag["hot_pixel_map"].dtype == bool
    assert {"n_replaced_spatial", "n_replaced_temporal", "pca"} <= set(diag)
    assert abs(diag["trace_center"] - t["trace0"][250:350].mean()) < 0.5
    assert out.wavelength is not None and out.units == "DN/s"
    # background removed: the deep frame at the trace core matches the noiseless star
    np.testing.assert_allclose(diag["deep_frame"][250:330, 37], t["star"][:, 250:330, 37].mean(0),
                               rtol=0.03)
    # the (default: none) PCA removal did not touch the transit-like dips
    assert np.allclose(out.data[3].sum() / out.data[2].sum(), 0.99, atol=2e-3)
    for name in ("stage2_background.png", "stage2_bad_pixels.png", "stage2_pca.png"):
        assert (tmp_path / name).stat().st_size > 1000
    assert sorted(p.name for p in res.figures) == sorted(p.name for p in tmp_path.glob("*.png"))
    from astropy.io import fits

    from tsoreduce.errors import OverwriteError
    from tsoreduce.spectroscopic import write_stage2_diagnostics

    assert not (tmp_path / "stage2_diagnostics.fits").exists()  # run() writes figures only
    write_stage2_diagnostics(tmp_path / "stage2_diagnostics.fits", diag)

    with fits.open(tmp_path / "stage2_diagnostics.fits") as h:
        np.testing.assert_array_equal(h["DEEP"].data, diag["deep_frame"])
        assert h["HOTPIX"].data.shape == (416, 72) and h["PCA_TS"].data.shape[1] == 20
        assert h[0].header["NREPSPA"] == diag["n_replaced_spatial"]
    with pytest.raises(OverwriteError):
        write_stage2_diagnostics(tmp_path / "stage2_diagnostics.fits", diag)
    assert set(CONFIG_SCHEMA) == {"wavelength", "flat_field", "background", "bad_pixels", "pca", "deep_frame",
                                  "bad_integrations"}


def test_deep_frame_baseline_selection():
    r, _ = synth_rates(10, noise=False, white=np.r_[np.ones(5), 0.5 * np.ones(5)])
    d_all = make_deep_frame(r)
    d_pre = make_deep_frame(r, [0, 5])
    assert np.isclose(d_pre[300, 37], r.data[0, 300, 37], rtol=1e-6)
    assert d_all[300, 37] < d_pre[300, 37]
    with pytest.raises(ConfigError):
        make_deep_frame(r, [20, 30])


def _read_mirisim(kind):
    path = MIRISIM / f"ERS_NGTS10_2022_new_drift_041_{kind}.fits"
    if not path.exists():
        pytest.skip(f"MIRISim file absent: {path}")
    from tsoreduce import io

    return (io.read_rateints if kind == "rateints" else io.read_calints)(path)


@pytest.mark.parametrize("kind", ["rateints", "calints"])
def test_stage2_on_mirisim(kind):
    r = _read_mirisim(kind)
    res = run_stage2(r)
    out, diag = res.product, res.diagnostics
    assert 36.0 <= diag["trace_center"] <= 38.5
    # values without any estimate (real DO_NOT_USE regions at the subarray edge) stay NaN and
    # DO_NOT_USE instead of a silent 0 flagged FLUX_ESTIMATED (issue 13); everything else is finite
    nonfinite = ~np.isfinite(out.data[:, :, 4:])
    assert dq_has(out.dq[:, :, 4:][nonfinite], DQ.DO_NOT_USE).all()
    assert not dq_has(out.dq[:, :, 4:][nonfinite], DQ.FLUX_ESTIMATED).any()
    assert nonfinite.mean() < 0.05
    # columns 4-6 of this file are 94 % DO_NOT_USE (runs longer than the +-12-row search): no estimate
    assert dq_has(r.dq[:, :, 4:7], DQ.DO_NOT_USE).mean() > 0.9
    assert np.isfinite(diag["deep_frame"][:, 7:]).all()
    # background ~ 17.8 DN/s removed from off-trace pixels
    assert abs(np.median(out.data[:, 100:390, 14:28])) < 0.3
    if kind == "calints":  # the pipeline's own WAVELENGTH extension is used
        assert np.isclose(out.wavelength[257, 37], r.wavelength[257, 37])
    assert r.data is not out.data


def test_flat_field_from_crds_format_file(tmp_path):
    """A CRDS-layout FLAT file (full-frame 1024 x 1032 SCI) is cut to SLITLESSPRISM and divided."""
    from astropy.io import fits

    full = np.ones((1024, 1032), np.float32)
    # SLITLESSPRISM: SUBSTRT1 = 1, SUBSTRT2 = 529 (1-based) -> rows 528-943, columns 0-71 (0-based)
    full[528:944, :72] = 1.25
    full[528 + 200, 40] = 0.5
    prim = fits.PrimaryHDU()
    for k, v in dict(REFTYPE="FLAT", INSTRUME="MIRI", DETECTOR="MIRIMAGE", SUBARRAY="FULL", SUBSTRT1=1,
                     SUBSTRT2=1, SUBSIZE1=1032, SUBSIZE2=1024).items():
        prim.header[k] = v
    path = tmp_path / "miri_flat.fits"
    fits.HDUList([prim, fits.ImageHDU(full, name="SCI")]).writeto(path)
    r, _ = synth_rates(2, noise=False)
    r = r.replace(meta={"SUBARRAY": "SLITLESSPRISM", "SUBSTRT1": 1, "SUBSTRT2": 529, "SUBSIZE1": 72,
                        "SUBSIZE2": 416})
    out = run_stage2(r, {"flat_field": {"path": str(path)}, "background": {"skip": True},
                         "bad_pixels": {"skip": True}, "pca": {"skip": True}}).product
    np.testing.assert_allclose(out.data[:, 100, 30], r.data[:, 100, 30] / 1.25, rtol=1e-6)
    np.testing.assert_allclose(out.data[:, 200, 40], r.data[:, 200, 40] / 0.5, rtol=1e-6)


def test_pipeline_stage2_writes_hot_pixel_map_without_plots(tmp_path):
    """The hot-pixel map / deep frame are a Stage 2 product even with figures off."""
    from astropy.io import fits

    from tsoreduce import io
    from tsoreduce.pipeline import run_stage2_files

    r, _ = synth_rates(12, seed=8)
    r.data[:, 100, 20] += 500.0                      # a hot pixel off the trace
    src = io.write_rateints(tmp_path / "in_rateints.fits", r)
    cal = run_stage2_files([src], None, tmp_path / "s2", name="t", plot_dir=None, progress=False)
    assert Path(cal).exists() and not list((tmp_path / "s2").glob("*.png"))
    with fits.open(tmp_path / "s2" / "t_stage2_diagnostics.fits") as h:
        assert h["HOTPIX"].data[100, 20] == 1
        assert h[0].header["NREPSPA"] >= 12
        assert h["DEEP"].data.shape == (416, 72)


def test_flat_field_found_in_crds_cache(tmp_path, monkeypatch):
    """Without flat_field.path, a FLAT in $CRDS_PATH/references/jwst/miri is found and applied; with
    use_crds_cache false it is not."""
    from astropy.io import fits

    cache = tmp_path / "crds" / "references" / "jwst" / "miri"
    cache.mkdir(parents=True)
    prim = fits.PrimaryHDU()
    for k, v in dict(REFTYPE="FLAT", INSTRUME="MIRI", DETECTOR="MIRIMAGE", SUBARRAY="SLITLESSPRISM",
                     SUBSTRT1=1, SUBSTRT2=529, SUBSIZE1=72, SUBSIZE2=416).items():
        prim.header[k] = v
    fits.HDUList([prim, fits.ImageHDU(np.full((416, 72), 2.0, np.float32), name="SCI")]).writeto(
        cache / "jwst_miri_flat_0001.fits")
    monkeypatch.setenv("CRDS_PATH", str(tmp_path / "crds"))
    r, _ = synth_rates(2, noise=False)
    r = r.replace(meta={"INSTRUME": "MIRI", "DETECTOR": "MIRIMAGE", "EXP_TYPE": "MIR_LRS-SLITLESS",
                        "SUBARRAY": "SLITLESSPRISM", "SUBSTRT1": 1, "SUBSTRT2": 529, "SUBSIZE1": 72,
                        "SUBSIZE2": 416})
    quiet = {"background": {"skip": True}, "bad_pixels": {"skip": True},
             "pca": {"skip": True}}
    out = run_stage2(r, quiet).product
    np.testing.assert_allclose(out.data[:, 200, 30], r.data[:, 200, 30] / 2, rtol=1e-6)
    out2 = run_stage2(r, {**quiet, "flat_field": {"use_crds_cache": False}}).product
    np.testing.assert_allclose(out2.data[:, 200, 30], r.data[:, 200, 30], rtol=1e-6)


def _digest(rates):
    import hashlib

    h = hashlib.sha256()
    for a in (rates.data, rates.err, rates.dq, rates.var_poisson, rates.var_rnoise, rates.wavelength):
        h.update(b"-" if a is None else np.ascontiguousarray(a).tobytes())
    h.update(repr(sorted(rates.meta.items())).encode())
    return h.hexdigest()


@pytest.mark.parametrize("cfg, refs", [
    (None, None),
    ({"background": {"method": "slope"}, "pca": {"remove_components": [2]}}, {"flat": np.full((416, 72), 0.9)}),
])
def test_run_is_pure_and_returns_a_stage_result(cfg, refs):
    """run() never modifies its input (hash of every array and the meta before/after), also with a bad
    integration, a flat and PCA removal, and returns a StageResult whose product is new arrays."""
    from tsoreduce.contract import StageResult
    from tsoreduce.spectroscopic import run

    r, _ = synth_rates(16, seed=3)
    r.data[:, 50, 30] += 400.0  # a hot pixel
    r.data[2, 120, 40] += 5000.0  # a cosmic ray
    r.data[5] = np.nan  # a bad integration
    before = _digest(r)
    res = run(r, cfg, references=refs)
    assert _digest(r) == before
    assert isinstance(res, StageResult) and isinstance(res.product, RateData) and res.figures == []
    assert res.product.data is not r.data and res.product.dq is not r.dq
    assert not np.shares_memory(res.product.data, r.data) and not np.shares_memory(res.product.dq, r.dq)
    assert res.product.meta["S_TSOS2"] == "COMPLETE" and res.product.meta["NBADINT"] == 1
    assert res.product.dq[2, 120, 40] & DQ.OUTLIER


def test_run_memory_is_bounded(monkeypatch):
    """run() allocates the product's SCI and DQ, the float64 PCA matrix and slabs of at most BLOCK_BYTES
    (set to 1 MB here, so the 48-integration cube spans several blocks); it used to hold ~11 float32
    copies of the cube.  Peak of numpy allocations (tracemalloc) in units of one float32 cube: SCI + DQ
    = 2, PCA matrix (49 of 72 columns, float64) = 1.36, the rest must stay below 1.2."""
    import tracemalloc

    from tsoreduce.spectroscopic import common, run

    monkeypatch.setattr(common, "BLOCK_BYTES", 2**20)
    r, _ = synth_rates(48, seed=4)
    run(r, {"pca": {"n_components": 3}})  # imports scikit-learn, tqdm, ... outside the measurement
    tracemalloc.start()
    try:
        run(r, {"pca": {"n_components": 3}})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    cubes = peak / r.data.nbytes
    print(f"run() peak allocations: {peak / 1e6:.1f} MB = {cubes:.2f} float32 cubes of {r.data.shape}")
    assert cubes < 4.5


def test_pca_equals_exact_svd():
    """The Gram-matrix PCA (the integration x pixel matrix is never held) equals scikit-learn's exact
    SVD ('full'): explained variance ratios, scores and eigenimages, signs included."""
    from sklearn.decomposition import PCA

    r, _ = synth_rates(24, seed=9, shifts=0.05 * np.sin(np.arange(24)), white=1 - 0.005 * (np.arange(24) > 11))
    r.data[3, 200, 30] = np.nan  # filled with the pixel's median over time, as before
    _, res = pca_reconstruct(r, n_components=5)
    x = r.data[:, :, 12:61].astype(np.float64).reshape(24, -1)
    x = np.where(np.isfinite(x), x, np.nanmedian(x, axis=0))
    ref = PCA(5, svd_solver="full").fit(x)
    rel = np.abs(res.explained_variance_ratio / ref.explained_variance_ratio_ - 1).max()
    scores = ref.transform(x)
    ds = np.abs(res.timeseries.T - scores).max() / np.abs(scores).max()
    de = np.nanmax(np.abs(res.eigenimages[:, :, 12:61].reshape(5, -1) - ref.components_))
    print(f"PCA vs exact SVD: EVR rel {rel:.1e}, scores rel {ds:.1e}, eigenimages abs {de:.1e}")
    assert rel < 1e-8 and ds < 1e-8 and de < 1e-6
