"""Pipeline machinery: plan, dry run, resume after interruption, skip, --force, overwrite protection,
provenance, log and summary -- with tiny stand-in stages (tests/_fake_stages.py); the end-to-end
runs with the real stages are at the bottom."""

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import _fake_stages  # noqa: E402

from tsoreduce import pipeline  # noqa: E402
from tsoreduce.config import validate_run_config  # noqa: E402
from tsoreduce.errors import ConfigError, OverwriteError  # noqa: E402


@pytest.fixture
def fake(monkeypatch):
    calls = _fake_stages.install(monkeypatch)
    monkeypatch.setattr(pipeline, "_compare_with_truth", lambda *a, **k: ([], {}))
    return calls


def _cfg(tmp_path, **over):
    user = {"name": "t", "output_dir": str(tmp_path / "out"),
            "input": {"simulate": {"nints": 6, "nsegments": 2}}, "stage1": {"drop_groups": 0}}
    user.update(over)
    return validate_run_config(user, tmp_path)


def test_full_run_products_markers_and_numbers(fake, tmp_path):
    cfg = _cfg(tmp_path)
    summary = pipeline.run(cfg, progress=False)
    out = tmp_path / "out"
    assert fake == {"simulate": 1, "stage1": 2, "stage2": 1, "stage3": 1, "stage4": 1}
    for d in ("simulation", "stage1", "stage2", "stage3", "stage4"):
        assert (out / d / ".done.json").exists() and not (out / d / ".running.json").exists()
    assert sorted(p.name for p in (out / "stage1").glob("*_rateints.fits")) == [
        "sim-seg001_rateints.fits", "sim-seg002_rateints.fits"]
    assert (out / "stage2" / "t_calints.fits").exists()
    assert (out / "stage3" / "t_lightcurves.h5").exists()
    assert (out / "run.log").read_text().count("Stage 1: wrote") == 2
    assert (out / "stage1" / "figures" / "stage1_fig.png").exists()
    # the transit (1 % of the 100-DN pixels, 95 DN above a background of 5) survives the fake chain
    assert summary["numbers"]["spectrum.median_depth_ppm"] == pytest.approx(1e4 * 100 / 95, rel=0.01)
    assert summary["numbers"]["white.rp_rs"] == 0.1
    assert json.loads((out / "summary.json").read_text())["name"] == "t"
    # provenance: config hash and version reach the product writer
    prov = _fake_stages.read_provenance(out / "stage2" / "t_calints.fits")
    assert prov["config_hash"] == pipeline.stage_hashes(cfg)[2] and prov["version"]
    assert "stage2" in prov["config"]
    text = pipeline.format_summary(summary)
    assert "Stage 4" in text and "spectrum.nchannels = 2" in text


def test_rerun_skips_and_force_recomputes(fake, tmp_path):
    cfg = _cfg(tmp_path)
    pipeline.run(cfg, progress=False)
    fake.clear()
    s = pipeline.run(cfg, progress=False)
    assert fake == {} and {v["action"] for v in s["stages"].values()} == {"skip"}
    s = pipeline.run(cfg, stages="2-4", force=True, progress=False)
    assert fake == {"stage2": 1, "stage3": 1, "stage4": 1}
    assert [v["action"] for v in s["stages"].values()] == ["rerun (--force)"] * 3


def test_changed_config_refuses_without_force(fake, tmp_path):
    pipeline.run(_cfg(tmp_path), progress=False)
    cfg2 = _cfg(tmp_path, stage3={"nchannels": 3})
    fake.clear()
    with pytest.raises(OverwriteError, match="stage3.*--force"):
        pipeline.run(cfg2, progress=False)
    assert fake == {}  # stopped before any work
    s = pipeline.run(cfg2, force=True, stages="3-4", progress=False)
    assert fake == {"stage3": 1, "stage4": 1} and s["numbers"]["spectrum.nchannels"] == 3


def test_stale_downstream_after_upstream_rerun(fake, tmp_path):
    cfg = _cfg(tmp_path)
    pipeline.run(cfg, progress=False)
    pipeline.run(cfg, stages="2", force=True, progress=False)
    # stage 3 was made from the previous stage-2 product: not "done" any more, and not overwritten silently
    with pytest.raises(OverwriteError, match="older upstream"):
        pipeline.run(cfg, stages="3-4", progress=False)
    assert pipeline.plan(cfg, "3-4", force=True)[0].action == "rerun (--force)"


def test_interrupted_run_resumes(monkeypatch, tmp_path):
    calls = _fake_stages.install(monkeypatch, fail_stage2_once=True)
    monkeypatch.setattr(pipeline, "_compare_with_truth", lambda *a, **k: ([], {}))
    cfg = _cfg(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        pipeline.run(cfg, progress=False)
    out = tmp_path / "out"
    assert (out / "stage1" / ".done.json").exists() and (out / "stage2" / ".running.json").exists()
    # a half-finished stage 1: remove its marker and one segment, keep the other
    (out / "stage1" / ".done.json").unlink()
    (out / "stage1" / ".running.json").write_text(json.dumps(
        {"config_hash": pipeline.stage_hashes(cfg)[1]}))
    (out / "stage1" / "sim-seg002_rateints.fits").unlink()
    calls.clear()
    plans = pipeline.plan(cfg)
    assert [p.action for p in plans] == ["skip", "resume", "resume", "run", "run"]
    assert plans[1].keep_existing and not plans[2].keep_existing
    pipeline.run(cfg, progress=False)
    assert calls == {"stage1": 1, "stage2": 1, "stage3": 1, "stage4": 1}  # only the missing segment


def test_dry_run_writes_nothing(fake, tmp_path):
    cfg = _cfg(tmp_path)
    res = pipeline.run(cfg, dry_run=True)
    assert not (tmp_path / "out").exists() and fake == {}
    assert [p.action for p in res["plan"]] == ["run"] * 5
    assert "Stage 3 extraction" in res["text"] and str(tmp_path / "out") in res["text"]


def test_start_later_needs_finished_upstream(fake, tmp_path):
    cfg = _cfg(tmp_path)
    with pytest.raises(ConfigError, match="run stage 2 first"):
        pipeline.plan(cfg, "3-4")
    pipeline.run(cfg, stages="0-2" if False else "1-2", progress=False)
    assert [p.action for p in pipeline.plan(cfg, "3-4")] == ["run", "run"]


def test_inputs_never_overwritten(fake, tmp_path):
    # a rateints input sitting in what would be the stage2 output directory of this run
    out = tmp_path / "out"
    (out / "stage1").mkdir(parents=True)
    f = out / "stage1" / "x_rateints.fits"
    _fake_stages._write(f, object())
    cfg = validate_run_config({"name": "t", "output_dir": str(out), "input": {"rateints": str(f)},
                               "stages": "2-4"}, tmp_path)
    cfg2 = validate_run_config({"name": "t", "output_dir": str(out),
                                "input": {"uncal": str(f)}}, tmp_path)
    with pytest.raises(OverwriteError, match="inputs are never overwritten"):
        pipeline.plan(cfg2)
    pipeline.plan(cfg)  # stage1/ is not written by a run starting at stage 2


def test_product_names():
    assert pipeline._product_name("/a/jw01-seg001_uncal.fits", "rateints") == "jw01-seg001_rateints.fits"
    assert pipeline._product_name("x_rateints.fits", "calints") == "x_calints.fits"


def test_mrs_branch_replaces_stage3(fake, tmp_path):
    cfg = validate_run_config({"name": "m", "output_dir": str(tmp_path / "o"),
                               "input": {"mrs": {"cubes": "cubes/*_s3d.fits"}}}, tmp_path)
    assert cfg["stages"] == [3, 4] and cfg["input"]["mrs"]["cubes"] == str(tmp_path / "cubes/*_s3d.fits")
    s = pipeline.run(cfg, progress=False)
    assert fake == {"mrs": 1, "stage4": 1}
    assert s["numbers"]["spectrum.nchannels"] == 3
    assert s["numbers"]["spectrum.median_depth_ppm"] == pytest.approx(2000, rel=1e-6)


# ---- end to end with the real stages -------------------------------------------------------------

REPO = Path(__file__).parents[1]


@pytest.mark.slow
def test_reduced_demo_end_to_end_recovers_injected_spectrum(tmp_path):
    """runs/demo.yaml with a smaller simulation (60 integrations x 15 groups, 2 segments) and a
    least-squares Stage 4: uncal -> spectrum must recover the injected spectrum within its errors,
    write provenance, and skip everything on a re-run."""
    import yaml
    from astropy.io import fits

    from tsoreduce.config import load_run_config
    from tsoreduce.pipeline_truth import read_spectrum
    from tsoreduce.simulate import LRSSimConfig

    user = yaml.safe_load((REPO / "runs" / "demo.yaml").read_text())
    sim = user["input"]["simulate"]
    for k in ("t0_bjd_tdb", "period_days", "a_rs", "inc_deg"):
        sim.pop(k)
    sim.update(nints=60, ngroups=15, nsegments=2)
    tp = LRSSimConfig(**{k: v for k, v in sim.items()}).transit_parameters()
    dur = LRSSimConfig(**sim).series_duration_days
    user["stage4"]["parameters"].update(
        per={"value": tp["period"], "prior": "fixed"},
        t0={"value": tp["t0"], "prior": "uniform", "bounds": [tp["t0"] - 0.1 * dur, tp["t0"] + 0.1 * dur]},
        a_rs={"value": tp["a_rs"], "prior": "normal", "mean": tp["a_rs"], "sigma": 0.3},
        inc={"value": tp["inc"], "prior": "uniform", "bounds": [80.0, 90.0]})
    user["stage4"]["fitter"] = {"method": "lsq"}
    user["output_dir"] = str(tmp_path / "demo")
    path = tmp_path / "demo.yaml"
    path.write_text(yaml.safe_dump(user))
    cfg = load_run_config(path)
    summary = pipeline.run(cfg, progress=False)

    out = tmp_path / "demo"
    rate = sorted((out / "stage1").glob("*_rateints.fits"))
    assert len(rate) == 2
    hdr = fits.getheader(rate[0])
    assert hdr["TSOVER"] and hdr["TSOCFGH"] == pipeline.stage_hashes(cfg)[1]
    assert not any(k.startswith("HIERARCH") or len(k) > 8 for k in hdr)
    spec = read_spectrum(out / "stage4" / "spectrum.ecsv")
    inj = read_spectrum(out / "stage4" / "injected_spectrum.ecsv")
    for col in ("wavelength", "wavelength_lower", "wavelength_upper"):
        np.testing.assert_allclose(np.asarray(inj[col], float), np.asarray(spec[col], float))
    assert str(inj["transit_depth"].unit) == "ppm"
    # Stage 4 provenance: package version, the stage-4 hash and the configuration text
    assert spec.meta["tsoreduce_version"] and spec.meta["config_hash"] == pipeline.stage_hashes(cfg)[4]
    assert "stage4:" in spec.meta["config"]
    assert (out / "stage4" / "figures" / "recovered_vs_injected.png").exists()
    n = summary["numbers"]
    # recovered vs injected: chi2 within its expected spread for n channels (mean n, sd sqrt(2n))
    assert n["truth.nchannels"] == len(spec) >= 5
    assert n["truth.chi2"] < n["truth.nchannels"] + 4 * np.sqrt(2 * n["truth.nchannels"]), n
    # white-light Rp/Rs within 3 sigma of the injected continuum (0.12; the feature adds < 0.001)
    assert abs(n["white.rp_rs"] - 0.1205) < 3 * n["white.rp_rs_err"] + 0.002, n
    again = pipeline.run(cfg, progress=False)
    assert {s["action"] for s in again["stages"].values()} == {"skip"}
