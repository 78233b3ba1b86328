"""Stage 1 runner on simulated MIRI LRS ramps (tsoreduce.simulate): rates against the injected truth,
cosmic-ray recall against truth.cosmic_rays for both jump methods, config errors, segment-by-segment
processing of uncal files (tsoreduce.pipeline), figures, and the stage contract (a StageResult, the input
never modified).

Recall is counted over injected cosmic rays whose amplitude exceeds 6 sigma of the first-difference
noise sqrt(2 RN^2 + S/gain) (S = true signal per group) and that fall on a difference used by the ramp
fit (both groups usable: after the 12 dropped reset groups and before the last group)."""

import numpy as np
import pytest

from tsoreduce.datamodel import DQ
from tsoreduce.contract import StageResult
from tsoreduce.detector import CONFIG_SCHEMA, run, run_stage1
from tsoreduce.errors import ConfigError, ReferenceFileError

NINTS, NGROUPS, NDROP = 30, 20, 12
DETECTABLE_SIGMA = 6.0

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sim():
    from tsoreduce.simulate import LRSSimConfig, simulate_lrs
    return simulate_lrs(LRSSimConfig(nints=NINTS, ngroups=NGROUPS, seed=21, cosmic_ray_rate_cm2_s=60.0))


def refs_from_truth(truth):
    return {"linearity": truth.nonlinearity_coeffs, "saturation": truth.saturation_dn,
            "gain": truth.gain, "readnoise": truth.read_noise_dn}


def cr_scores(groupdq, truth, tgroup):
    cr = truth.cosmic_rays
    jump = (groupdq & np.uint32(DQ.JUMP_DET)) != 0
    hit = np.zeros_like(jump)
    hit[cr["integration"], cr["group"], cr["row"], cr["col"]] = True
    signal = (truth.rate_star + truth.rate_background + truth.dark[None]) * tgroup     # DN / group
    sig = np.sqrt(2 * truth.read_noise_dn[None] ** 2 + signal / truth.gain[None])
    s_cr = sig[cr["integration"], cr["row"], cr["col"]]
    usable = (cr["group"] - 1 >= NDROP) & (cr["group"] <= NGROUPS - 2)
    detectable = usable & (cr["amplitude_dn"] > DETECTABLE_SIGMA * s_cr)
    recall = jump[cr["integration"][detectable], cr["group"][detectable], cr["row"][detectable],
                  cr["col"][detectable]].mean()
    tested = jump[:, NDROP + 1:NGROUPS - 1]
    fp = np.count_nonzero(tested & ~hit[:, NDROP + 1:NGROUPS - 1]) / tested.size
    return recall, fp, int(detectable.sum())


@pytest.mark.parametrize("method,threshold", [("up_the_ramp", 4.0), ("time_domain", 5.0)])
def test_cosmic_ray_recall_on_simulation(sim, method, threshold, monkeypatch):
    """Recall >= 95 % of detectable cosmic rays and false positives <= 0.1 % of pixel-groups."""
    import tsoreduce.detector.rampfit as rf
    captured = {}
    real = rf.fit_ramps

    def spy(ramp, **kw):
        captured["groupdq"] = ramp.groupdq.copy()
        return real(ramp, **kw)

    monkeypatch.setattr("tsoreduce.detector.stage.rampfit.fit_ramps", spy)
    import tsoreduce.detector.jumps as jm
    real_fused = jm.detect_jumps_and_fit

    def spy_fused(ramp, **kw):
        flagged, rates = real_fused(ramp, **kw)
        captured["groupdq"] = flagged.groupdq.copy()
        return flagged, rates

    monkeypatch.setattr("tsoreduce.detector.stage.jumps.detect_jumps_and_fit", spy_fused)
    cfg = {"jump": {"method": method, method: {"threshold": threshold}}}
    seg = sim.segments[0]
    run_stage1(seg, cfg, references=refs_from_truth(sim.truth))
    recall, fp, n = cr_scores(captured["groupdq"], sim.truth, seg.meta["TGROUP"])
    print(f"{method}: recall {recall:.4f} of {n} detectable CRs (> {DETECTABLE_SIGMA} sigma), "
          f"false positives {fp:.2e} of pixel-groups")
    assert n >= 100
    assert recall >= 0.95
    assert fp <= 1e-3


def test_rates_match_truth(sim):
    """With the truth's reference arrays the rates of bright trace pixels are within 0.5 % of the
    injected rate (residual RSCD after the 12-group drop is ~ 0.1 %) and errors are calibrated."""
    seg = sim.segments[0]
    rates = run_stage1(seg, references=refs_from_truth(sim.truth)).product
    tr = sim.truth
    true = tr.rate_star + tr.rate_background + tr.dark[None]
    bright = tr.rate_star.mean(axis=0) > 300
    good = (rates.dq & np.uint32(DQ.JUMP_DET | DQ.DO_NOT_USE)) == 0
    ratio = np.median((rates.data / true)[:, bright])
    assert abs(ratio - 1) < 5e-3, ratio
    pull = ((rates.data - true) / rates.err)[good & bright[None]]
    assert 0.9 < np.std(pull) < 1.15
    assert rates.data.shape == (NINTS, 416, 72) and rates.units == "DN/s"
    assert rates.int_times is not None and len(rates.int_times) == NINTS
    for key in ("S_DQINIT", "S_EMICOR", "S_SATURA", "S_RSCD", "S_LINEAR", "S_JUMP", "S_RAMP"):
        assert rates.meta.get(key) == "COMPLETE", key
    assert np.all(rates.dq[:, :, :4] & np.uint32(DQ.REFERENCE_PIXEL))


def test_run_does_not_modify_its_input_and_returns_a_stage_result(sim):
    """The stage contract: ``run`` returns a StageResult (rateints, diagnostics, figures) and leaves
    every array and the meta of its input as they were (the steps work on a private copy)."""
    seg = sim.segments[0]
    before = seg.copy()
    res = run(seg, {"jump": {"method": "up_the_ramp"}}, references=refs_from_truth(sim.truth))
    assert run is run_stage1
    assert isinstance(res, StageResult) and res.figures == []
    assert res.product.data.shape == (NINTS, 416, 72)
    d = res.diagnostics
    print(f"\ndiagnostics: jump method {d['jump_method']}, {int(d['n_jump_pixels'].sum())} pixel-integrations "
          f"with a jump, EMI amplitudes {np.median(d['emi']['amplitude'], axis=0)} DN, {d['n_nan_rates']} NaN rates")
    assert d["jump_method"] == "up_the_ramp"
    assert d["n_jump_pixels"].shape == (NINTS,) and d["n_jump_pixels"].sum() > 0
    assert d["emi"]["amplitude"].shape[0] == NINTS
    for name in ("data", "groupdq", "pixeldq"):
        np.testing.assert_array_equal(getattr(seg, name), getattr(before, name), err_msg=name)
    assert seg.meta == before.meta


def test_rates_in_electrons(sim):
    """ramp_fit.units e-/s: rates and ERR are the DN/s values times the gain, variances times gain^2
    (here the truth's gain map), the pulls are unchanged and BUNIT says e-/s."""
    seg = sim.segments[0]
    refs = refs_from_truth(sim.truth)
    dn = run_stage1(seg, references=refs).product
    el = run_stage1(seg, {"ramp_fit": {"units": "e-/s"}}, references=refs).product
    g = np.asarray(sim.truth.gain, np.float32)
    ok = np.isfinite(dn.data)
    np.testing.assert_allclose(el.data[ok], (dn.data * g)[ok], rtol=1e-6)
    np.testing.assert_allclose(el.err[ok], (dn.err * g)[ok], rtol=1e-6)
    np.testing.assert_allclose(el.var_poisson[ok], (dn.var_poisson * g * g)[ok], rtol=1e-5)
    assert el.units == "e-/s" and el.meta["BUNIT"] == "e-/s" and dn.units == "DN/s"
    np.testing.assert_array_equal(el.dq, dn.dq)


def test_config_errors(sim):
    seg = sim.segments[0]
    with pytest.raises(ConfigError, match="unknown key"):
        run_stage1(seg, {"jumps": {}})
    with pytest.raises(ConfigError, match="not allowed"):
        run_stage1(seg, {"jump": {"method": "sigma"}})
    with pytest.raises(ConfigError, match="cannot be skipped"):
        run_stage1(seg, {"ramp_fit": {"skip": True}})
    with pytest.raises(ReferenceFileError, match="linearity"):
        run_stage1(seg, {"linearity": {"method": "reference"}, "references": {"use_crds_cache": False}})
    assert set(CONFIG_SCHEMA) >= {"dq_init", "emi", "saturation", "reset", "linearity", "dark", "jump",
                                  "ramp_fit"}


def test_segments_from_files_and_figures(tmp_path):
    """pipeline.run_stage1_files writes one rateints per segment, equal to ``run`` on each segment, and
    the figures of the first segment."""
    from tsoreduce.io import read_rateints, read_uncal
    from tsoreduce.pipeline import run_stage1_files
    from tsoreduce.simulate import LRSSimConfig, write_lrs_simulation
    cfg = LRSSimConfig(nints=16, ngroups=8, nsegments=2, seed=4)
    files = write_lrs_simulation(cfg, tmp_path / "sim")
    stage_cfg = {"reset": {"n_groups": 2}}
    written = run_stage1_files(sorted(files["uncal"]), stage_cfg, tmp_path / "out", plot_dir=tmp_path / "plots",
                               progress=False)
    assert len(written) == 2
    parts = [run(read_uncal(p), stage_cfg).product for p in sorted(files["uncal"])]
    for path, part in zip(written, parts):
        back = read_rateints(path)
        np.testing.assert_allclose(back.data, part.data)
        np.testing.assert_array_equal(back.dq, part.dq)
    for name in ("stage1_calibration.png", "stage1_emi.png", "stage1_emi_amplitudes.png", "stage1_jumps.png",
                 "stage1_rates.png", "stage1_ramp_fit.png"):
        assert (tmp_path / "plots" / name).stat().st_size > 1000


def test_chunk_plan_covers_every_integration_once_with_halos():
    from tsoreduce.pipeline import chunk_plan
    plan = chunk_plan(200, 100, {"memory": {"limit_gb": 1.0}})
    assert len(plan) > 1
    kept = np.concatenate([np.arange(a, b) for _, _, a, b in plan])
    np.testing.assert_array_equal(kept, np.arange(200))
    for ra, rb, ka, kb in plan:                      # window 15 -> 7 halo integrations where possible
        assert ra == max(ka - 7, 0) and rb == min(kb + 7, 200)
    # no halo for the up-the-ramp method; one chunk when the limit allows the whole file
    assert all(ra == ka and rb == kb for ra, rb, ka, kb in
               chunk_plan(200, 100, {"memory": {"chunk_integrations": 64}, "jump": {"method": "up_the_ramp"}}))
    assert chunk_plan(30, 20) == [(0, 30, 0, 30)]
    with pytest.raises(ConfigError, match="limit_gb"):
        chunk_plan(10, 10, {"memory": {"limit_gb": 0.1}})


@pytest.mark.parametrize("method", ["time_domain", "up_the_ramp"])
def test_chunked_segment_equals_whole_segment(tmp_path, method):
    """A file processed in chunks of 7 integrations gives the rateints of the one-piece run: jump flags
    identical for the time-domain method (halos), rates equal to << their errors (the per-pixel
    reference signal and noise are estimated per chunk)."""
    from tsoreduce.pipeline import run_stage1_segment
    from tsoreduce.io import read_uncal
    from tsoreduce.simulate import LRSSimConfig, write_lrs_simulation
    files = write_lrs_simulation(LRSSimConfig(nints=24, ngroups=10, seed=8, cosmic_ray_rate_cm2_s=60.0),
                                 tmp_path / "sim")
    path = files["uncal"][0]
    cfg = {"reset": {"n_groups": 2}, "jump": {"method": method}}
    whole = run_stage1(read_uncal(path), cfg).product
    chunked = run_stage1_segment(path, {**cfg, "memory": {"chunk_integrations": 7}})
    assert chunked.data.shape == whole.data.shape
    np.testing.assert_array_equal(chunked.int_times.mid_bjd_tdb, whole.int_times.mid_bjd_tdb)
    jw = (whole.dq & np.uint32(DQ.JUMP_DET)) != 0
    jc = (chunked.dq & np.uint32(DQ.JUMP_DET)) != 0
    assert np.count_nonzero(jw != jc) <= 1e-3 * jw.size, np.count_nonzero(jw != jc)
    ok = np.isfinite(whole.data) & np.isfinite(chunked.data) & ~jw & ~jc
    dev = np.abs(chunked.data - whole.data)[ok] / whole.err[ok]
    assert np.percentile(dev, 99) < 0.05, np.percentile(dev, 99)
    assert chunked.meta["INTSTART"] == whole.meta["INTSTART"] and chunked.meta["NINTS"] == whole.meta["NINTS"]


def test_full_stage1_at_two_groups():
    """NGROUPS = 2 through the whole default Stage 1 (time-domain jumps): DQ init and reset keep both
    groups, every science rate is finite, the integrations hit by a detectable cosmic ray carry
    JUMP_DET with a rate close to the truth (the difference replaced by its running median)."""
    from tsoreduce.simulate import LRSSimConfig, simulate_lrs
    sim2 = simulate_lrs(LRSSimConfig(nints=60, ngroups=2, seed=5, cosmic_ray_rate_cm2_s=400.0))
    seg = sim2.segments[0]
    rates = run_stage1(seg, references=refs_from_truth(sim2.truth)).product
    sci = rates.data[:, :, 4:]                                    # columns 0-3 are reference pixels
    assert np.all(np.isfinite(sci))
    tr = sim2.truth
    cr = tr.cosmic_rays
    tg = seg.meta["TGROUP"]
    signal = (tr.rate_star + tr.rate_background + tr.dark[None]) * tg
    sig = np.sqrt(2 * tr.read_noise_dn[None] ** 2 + signal / tr.gain[None])
    i, y, x = cr["integration"], cr["row"], cr["col"]
    det = cr["amplitude_dn"] > 8.0 * sig[i, y, x]
    assert det.sum() >= 30
    flagged = (rates.dq[i[det], y[det], x[det]] & np.uint32(DQ.JUMP_DET)) != 0
    print(f"\nNGROUPS=2 Stage 1: {flagged.mean():.4f} of {det.sum()} cosmic rays > 8 sigma flagged")
    assert flagged.mean() >= 0.95
    # the replaced rates: within 5 sigma of one difference of the true rate (a cosmic ray was > 8)
    true_rate = (tr.rate_star + tr.rate_background)[i[det], y[det], x[det]]
    err = sig[i[det], y[det], x[det]] / tg
    pull = (rates.data[i[det], y[det], x[det]] - true_rate)[flagged] / err[flagged]
    assert np.all(np.abs(pull) < 5.0)
    # method 'both' falls back to the time domain (an up-the-ramp flag would leave NaN slopes)
    both = run_stage1(seg, {"jump": {"method": "both"}}, references=refs_from_truth(sim2.truth)).product
    np.testing.assert_array_equal(both.data, rates.data)
