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
    from tsoreduce.run_summary import read_spectrum
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


# ---- issue 15: runs that cannot corrupt each other or lose work --------------------------------

def test_products_honour_the_umask(fake, tmp_path):
    from tsoreduce._util import atomic_write_text
    old = os.umask(0o022)
    try:
        pipeline.run(_cfg(tmp_path), progress=False)
        atomic_write_text(tmp_path / "a.txt", "x")
        os.umask(0o027)
        atomic_write_text(tmp_path / "b.txt", "x")
    finally:
        os.umask(old)
    out = tmp_path / "out"
    for f in [out / "summary.json", out / "run_config.yaml", out / "stage1" / ".done.json",
              tmp_path / "a.txt"]:
        assert f.stat().st_mode & 0o777 == 0o644, (f, oct(f.stat().st_mode))
    assert (tmp_path / "b.txt").stat().st_mode & 0o777 == 0o640


def test_real_writers_honour_the_umask(tmp_path):
    from tsoreduce import io
    from tsoreduce.datamodel import LightCurves
    from tsoreduce.lightcurve.spectrum import write_table
    from astropy.table import Table
    old = os.umask(0o022)
    try:
        lc = LightCurves(time=np.arange(5.0), flux=np.ones((1, 5)), err=np.full((1, 5), 1e-3),
                         wavelength=np.array([7.0]))
        io.write_lightcurves(tmp_path / "lc.h5", lc)
        write_table(Table({"a": [1, 2]}), tmp_path / "t.ecsv")
    finally:
        os.umask(old)
    for f in ("lc.h5", "t.ecsv"):
        assert (tmp_path / f).stat().st_mode & 0o777 == 0o644, f


def test_one_atomic_write_implementation():
    """Every temp-file-and-rename write goes through tsoreduce/_util.py (no second copy to drift)."""
    pkg = Path(pipeline.__file__).parent
    offenders = []
    for f in pkg.rglob("*.py"):
        if f.name == "_util.py":
            continue
        text = f.read_text()
        for needle in ("mkstemp", "NamedTemporaryFile", "os.replace(", "os.rename("):
            if needle in text:
                offenders.append(f"{f.relative_to(pkg)}: {needle}")
    assert offenders == []


def test_atomic_write_failure_leaves_nothing(tmp_path):
    import errno
    from tsoreduce._util import atomic_write
    from tsoreduce.errors import OutputWriteError
    dst = tmp_path / "p.fits"
    dst.write_text("old")

    def half_then_enospc(tmp):
        Path(tmp).write_text("partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OutputWriteError) as info:
        atomic_write(dst, half_then_enospc)
    assert info.value.errno == errno.ENOSPC and str(dst) in str(info.value) and "ENOSPC" in str(info.value)
    with pytest.raises(ZeroDivisionError):
        atomic_write(dst, lambda tmp: 1 / 0)
    assert dst.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["p.fits"]


# the output_dir lock

def _hold_lock(out):
    """A subprocess holding the output_dir lock until its stdin closes."""
    import subprocess
    code = ("import sys; from tsoreduce._lock import OutputLock\n"
            f"with OutputLock({str(out)!r}, 'other.yaml'):\n"
            "    print('locked', flush=True); sys.stdin.read()\n")
    p = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert p.stdout.readline().strip() == "locked"
    return p


def test_second_run_on_same_output_dir_is_refused(fake, tmp_path):
    from tsoreduce.errors import OutputLockedError
    out = tmp_path / "out"
    out.mkdir()
    holder = _hold_lock(out)
    try:
        with pytest.raises(OutputLockedError, match=rf"in use by another tsoreduce run \(pid {holder.pid} "
                                                    r"on .* since .*other.yaml"):
            pipeline.run(_cfg(tmp_path), progress=False)
        assert fake == {} and not (out / "simulation").exists()
    finally:
        holder.stdin.close()
        holder.wait()
    pipeline.run(_cfg(tmp_path), progress=False)  # released: the run proceeds
    assert (out / "stage4" / ".done.json").exists()


def test_stale_lock_of_a_dead_run_is_taken_over_with_a_warning(fake, tmp_path, caplog):
    import socket
    import subprocess
    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (out / ".tsoreduce.lock").write_text(json.dumps(
        {"pid": dead.pid, "host": socket.gethostname(), "started": "2026-01-01T00:00:00"}))
    with caplog.at_level("WARNING", logger="tsoreduce"):
        pipeline.run(_cfg(tmp_path), progress=False)
    assert any("stale lock" in r.getMessage() and str(dead.pid) in r.getMessage() for r in caplog.records)
    info = json.loads((out / ".tsoreduce.lock").read_text())
    assert info["pid"] == os.getpid() and "released" in info


def test_lock_of_another_host_is_not_taken_over(fake, tmp_path):
    from tsoreduce.errors import OutputLockedError
    out = tmp_path / "out"
    out.mkdir()
    (out / ".tsoreduce.lock").write_text(json.dumps({"pid": 1, "host": "elsewhere", "started": "x"}))
    with pytest.raises(OutputLockedError, match="another host.*delete"):
        pipeline.run(_cfg(tmp_path), progress=False)


def test_dry_run_marks_conflicts(fake, tmp_path):
    pipeline.run(_cfg(tmp_path), progress=False)
    res = pipeline.run(_cfg(tmp_path, stage3={"nchannels": 3}), dry_run=True)
    assert [p.action for p in res["plan"]] == ["skip", "skip", "skip", "CONFLICT", "CONFLICT"]
    assert "[       CONFLICT] Stage 3" in res["text"] and "would be overwritten" in res["text"]
    assert "--force" in res["text"].splitlines()[-1]


def test_summary_full_precision():
    text = pipeline.format_summary({"output_dir": "o", "stages": {}, "numbers": {
        "white.t0": 60000.00232145, "white.t0_err": 1.234e-05}})
    assert "white.t0 = 60000.00232145" in text and "white.t0_err = 1.234e-05" in text


# uncal segments checked from their headers before Stage 1

@pytest.fixture(scope="module")
def segments(tmp_path_factory):
    from tsoreduce.simulate import LRSSimConfig, write_lrs_simulation
    d = tmp_path_factory.mktemp("segments")
    out = write_lrs_simulation(LRSSimConfig(nints=6, ngroups=4, nsegments=3, seed=5), d)
    return [Path(p) for p in out["uncal"]]


def _plan_uncal(tmp_path, files):
    cfg = validate_run_config({"name": "s", "output_dir": str(tmp_path / "out"),
                               "input": {"uncal": [str(f) for f in files]}, "stages": 1}, tmp_path)
    return pipeline.plan(cfg)


def _variant(tmp_path, src, name, **keys):
    import shutil
    from astropy.io import fits
    dst = tmp_path / name
    shutil.copy(src, dst)
    with fits.open(dst, mode="update") as h:
        for k, v in keys.items():
            h[0].header[k] = v
    return dst


def test_consistent_segments_pass(segments, tmp_path):
    assert [p.action for p in _plan_uncal(tmp_path, segments)] == ["run"]


@pytest.mark.parametrize("case", ["ngroups", "readpatt", "subarray", "same_file", "same_intstart", "gap",
                                  "exp_type", "mrs", "truncated"])
def test_inconsistent_segments_named_error_before_stage1(segments, tmp_path, case):
    from tsoreduce.errors import (DuplicateSegmentError, SegmentMismatchError, TruncatedFileError,
                                  WrongInstrumentError)
    s1, s2, s3 = segments
    if case == "ngroups":
        bad = _variant(tmp_path, s2, "b_uncal.fits", NGROUPS=8)
        files, exc, match = [s1, bad, s3], SegmentMismatchError, rf"NGROUPS = 8 in {bad} but 4 in {s1}"
    elif case == "readpatt":
        bad = _variant(tmp_path, s2, "b_uncal.fits", READPATT="SLOWR1")
        files, exc, match = [s1, bad, s3], SegmentMismatchError, "READPATT"
    elif case == "subarray":
        bad = _variant(tmp_path, s3, "b_uncal.fits", SUBARRAY="FULL")
        files, exc, match = [s1, s2, bad], SegmentMismatchError, "SUBARRAY"
    elif case == "same_file":
        files, exc, match = [s1, s2, s2, s3], DuplicateSegmentError, f"{s2} and {s2} are the same file"
    elif case == "same_intstart":
        copy = _variant(tmp_path, s2, "copy_uncal.fits")
        files, exc, match = [s1, s2, copy, s3], DuplicateSegmentError, f"{s2} and {copy} both start at INTSTART"
    elif case == "gap":
        files, exc, match = [s1, s3], SegmentMismatchError, "leave a gap"
    elif case == "exp_type":
        bad = _variant(tmp_path, s2, "b_uncal.fits", EXP_TYPE="MIR_LRS-FIXEDSLIT")
        files, exc, match = [s1, bad, s3], WrongInstrumentError, r"Hint: .*`input.uncal` in the run file"
    elif case == "mrs":
        bad = _variant(tmp_path, s1, "b_uncal.fits", EXP_TYPE="MIR_MRS")
        files, exc, match = [bad], WrongInstrumentError, r"input: \{mrs: \{cubes"
    else:
        import shutil
        bad = tmp_path / "t_uncal.fits"
        shutil.copy(s2, bad)
        os.truncate(bad, bad.stat().st_size - 5000)
        files, exc, match = [s1, bad, s3], TruncatedFileError, "cut short"
    with pytest.raises(exc, match=match) as info:
        _plan_uncal(tmp_path, files)
    print(f"\n{case}: {type(info.value).__name__}: {info.value}")
    assert "allowed_exp_types" not in str(info.value)
    assert not (tmp_path / "out").exists()


def test_truncated_uncal_said_once_on_the_command_line(segments, tmp_path, capsys):
    import shutil
    from tsoreduce import cli
    bad = tmp_path / "t_uncal.fits"
    shutil.copy(segments[0], bad)
    os.truncate(bad, bad.stat().st_size // 2 + 100)
    run = tmp_path / "r.yaml"
    run.write_text(f"name: t\noutput_dir: {tmp_path / 'o'}\ninput: {{uncal: {bad}}}\nstages: 1\n")
    assert cli.main([str(run), "-q", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.count("tsoreduce: error: TruncatedFileError") == 1 and err.count("cut short") == 1, err


# Stage 1 figures

def test_stage1_figures_say_what_they_show_and_do_not_overlap(segments, tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    from tsoreduce.plotting import detector as pd
    text = pipeline._segment_caption(segments[1], None)
    assert text.startswith("segment 2/3 (") and segments[1].name in text and "integrations 3-4 of 6" in text
    counts = np.zeros((416, 72), int)
    counts[100:120, 30:40] = 7
    with pd.figure_caption(text):
        fig = pd.plot_jump_map(counts, nints=2, path=tmp_path / "jumps.png")
    assert text in [t.get_text() for t in fig.texts]
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    cbar_ax = [a for a in fig.axes if a.get_label() == "<colorbar>"][0]
    label_box = cbar_ax.yaxis.label.get_window_extent(renderer)
    right = fig.axes[1]
    right_box = right.get_tightbbox(renderer)
    print(f"\ncolour-bar label x1 {label_box.x1:.1f} px, next panel (with its labels) x0 {right_box.x0:.1f} px")
    assert label_box.x1 < right_box.x0, "the colour-bar label overlaps the next panel"
    assert (tmp_path / "jumps.png").stat().st_size > 0


def test_integration_selections_checked_against_the_input_before_stage1(segments, tmp_path):
    """A baseline that selects no integration of the data stops the run at planning, with its key path
    (it used to stop when Stage 2 started, after Stage 1)."""
    cfg = validate_run_config({"name": "s", "output_dir": str(tmp_path / "out"),
                               "input": {"uncal": [str(f) for f in segments]}, "stages": "1-3",
                               "stage2": {"deep_frame": {"baseline_ints": [20, 30]}},
                               "stage3": {"lightcurves": {"baseline_ints": [0, 4]}}}, tmp_path)
    with pytest.raises(ConfigError, match=r"stage2.deep_frame.baseline_ints: .*selects no integration.*"
                                          r"the input has 6 integrations"):
        pipeline.plan(cfg)
    cfg["stage2"]["deep_frame"]["baseline_ints"] = [0, 4]
    assert [p.action for p in pipeline.plan(cfg)] == ["run"] * 3


# the one stage contract: no signature inspection, import errors as themselves

def test_pipeline_calls_stages_without_signature_inspection():
    """pipeline calls each stage with exactly the contract's arguments: no inspect.signature, no
    keyword filter (the retired ``_call`` / ``_OPTIONAL_KWARGS``)."""
    for module in ("pipeline", "run_plan", "run_summary"):
        src = (Path(pipeline.__file__).parent / f"{module}.py").read_text()
        for banned in ("inspect.signature", "import inspect", "_OPTIONAL_KWARGS", "def _call("):
            assert banned not in src, (module, banned)


@pytest.mark.parametrize("body,exc", [("def run(:\n", SyntaxError),
                                      ("raise ZeroDivisionError('raised while importing')\n",
                                       ZeroDivisionError),
                                      ("import tsoreduce_no_such_dependency_xyz\n", ConfigError)])
def test_stage_import_errors_surface_as_themselves(tmp_path, monkeypatch, body, exc):
    """An exception raised while importing a stage module reaches the caller with its own type (a
    broken stage is not a configuration error, exit 2); only a module that is not installed becomes a
    ConfigError, naming it."""
    from tsoreduce import config as C
    name = f"broken_stage_{exc.__name__.lower()}"
    (tmp_path / f"{name}.py").write_text(body)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.setitem(C.SECTION_MODULES, "stage1", (name, "a broken stage"))
    with pytest.raises(exc) as info:
        pipeline.run_stage1_files([tmp_path / "x_uncal.fits"], None, tmp_path / "out")
    print(f"\n{type(info.value).__name__}: {info.value}")
    if exc is ConfigError:
        assert "tsoreduce_no_such_dependency_xyz" in str(info.value)
    monkeypatch.delitem(sys.modules, name, raising=False)
    with pytest.raises(exc):
        C.stage_schema("stage1")


def test_stage1_and_pipeline_modules_in_no_import_cycle_even_through_function_level_imports():
    """The detector <-> detector.stage <-> plotting.detector cycle (closed by function-level imports
    until issue 18) is gone, and the pipeline modules close none."""
    import test_import_cycles as tic
    ours = {"tsoreduce.detector", "tsoreduce.detector.stage", "tsoreduce.detector.emi",
            "tsoreduce.plotting.detector", "tsoreduce.pipeline", "tsoreduce.run_plan",
            "tsoreduce.run_summary", "tsoreduce._stage1_chunks", "tsoreduce.execution", "tsoreduce.batch",
            "tsoreduce.cli"}
    cycles = [sorted(c) for c in tic._cycles(tic._graph(functions=True)) if c & ours]
    assert not cycles, cycles
