"""Execution backends and batch mode on a dask LocalCluster of 2 worker processes: products identical
to the serial run (hashes of every data array and table column, emcee included), a worker killed in
the middle of a unit -> the unit is re-run and the map completes, a batch with one corrupt input ->
the other exposures complete and the summary names the failure.  All on a tiny simulated exposure
(24 integrations x 6 groups in 2 segments, 4 channels, plots off)."""

from __future__ import annotations

import hashlib
import os
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))
import _exec_units  # noqa: E402

from tsoreduce import execution, pipeline
from tsoreduce.config import load_run_config, validate_run_config
from tsoreduce.errors import BackendUnavailableError, ConfigError


@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None, memory_limit="2GB") as c:
        yield c


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    from tsoreduce.simulate import LRSSimConfig, lrs
    d = tmp_path_factory.mktemp("sim")
    cfg = LRSSimConfig(nints=24, ngroups=6, nsegments=2, seed=7)
    out = lrs.write_lrs_simulation(cfg, d)
    return {"dir": d, "uncal": [str(p) for p in out["uncal"]],
            "references": {k: str(v) for k, v in out["references"].items()},
            "transit": cfg.transit_parameters()}


def _run_user(sim, out_dir, execution_section=None, method="emcee"):
    tp = sim["transit"]
    user = {
        "name": "tiny", "output_dir": str(out_dir), "plots": False,
        "input": {"uncal": sim["uncal"], "references": sim["references"]},
        "stage1": {"reset": {"n_groups": 1}},
        "stage3": {"lightcurves": {"bin_width": 2.0, "white_range": [5.0, 12.0]}},
        "stage4": {
            "systematics": {"ramp": "none", "polynomial_order": 1},
            "parameters": {"per": {"value": tp["period"], "prior": "fixed"},
                           "t0": {"value": tp["t0"], "prior": "fixed"},
                           "a_rs": {"value": tp["a_rs"], "prior": "fixed"},
                           "inc": {"value": tp["inc"], "prior": "fixed"},
                           "q1": {"value": 0.04, "prior": "fixed"}, "q2": {"value": 0.25, "prior": "fixed"},
                           "rp_rs": {"value": 0.1, "prior": "uniform", "bounds": [0.0, 0.3]}},
            "fitter": {"method": method, "nwalkers": 16, "nsteps": 40, "burn_in": 10}},
    }
    if execution_section is not None:
        user["execution"] = execution_section
    return user


def product_hashes(out_dir) -> dict:
    """sha256 of every data array (FITS extensions, HDF5 datasets) and table column (ECSV) under
    ``out_dir``: headers, logs and markers (dates, hosts) are left out."""
    from astropy.io import fits
    from astropy.table import Table
    import h5py

    out_dir = Path(out_dir)
    h = {}

    def digest(a):
        return hashlib.sha256(np.ascontiguousarray(np.asarray(a)).tobytes()).hexdigest()[:16]

    for f in sorted(out_dir.rglob("*")):
        if not f.is_file() or f.name.startswith("."):
            continue
        rel = str(f.relative_to(out_dir))
        if f.suffix == ".fits":
            with fits.open(f) as hdul:
                for ext in hdul:
                    if ext.data is not None:
                        h[f"{rel}[{ext.name}]"] = digest(ext.data)
        elif f.suffix == ".ecsv":
            t = Table.read(f, format="ascii.ecsv")
            for c in t.colnames:
                h[f"{rel}:{c}"] = digest(t[c])
        elif f.suffix == ".h5":
            with h5py.File(f) as hf:
                hf.visititems(lambda name, obj: h.__setitem__(f"{rel}/{name}", digest(obj[()]))
                              if isinstance(obj, h5py.Dataset) else None)
    return h


@pytest.mark.slow
def test_dask_products_identical_to_serial(sim, cluster, tmp_path):
    runs = {}
    for name, section in (("serial", None),
                          ("dask", {"backend": "dask", "scheduler": cluster.scheduler_address})):
        cfg = validate_run_config(_run_user(sim, tmp_path / name, section), tmp_path)
        t0 = time.perf_counter()
        pipeline.run(cfg, progress=False)
        runs[name] = (product_hashes(tmp_path / name), time.perf_counter() - t0)
        print(f"{name}: {runs[name][1]:.1f} s, {len(runs[name][0])} arrays/columns hashed")
    ref = runs["serial"][0]
    assert any("rateints" in k for k in ref) and any("chains.h5" in k for k in ref)
    assert any("channel_fits.ecsv" in k for k in ref)
    for name in ("dask",):
        got = runs[name][0]
        assert got.keys() == ref.keys(), name
        diff = [k for k in ref if ref[k] != got[k]]
        assert not diff, f"{name} differs from serial in {diff}"
        log_text = (tmp_path / name / "run.log").read_text()
        # the units' log records came back from the workers into run.log
        assert log_text.count("Stage 1: wrote") == 2
        assert "fitting 4 channels on the" in log_text
    # an interrupted Stage 1 on dask resumes: the segment already written is kept, the other re-made
    cfg = validate_run_config(_run_user(sim, tmp_path / "dask", {"backend": "dask",
                                                                  "scheduler": cluster.scheduler_address}),
                              tmp_path)
    s1 = tmp_path / "dask" / "stage1"
    kept, lost = sorted(s1.glob("*_rateints.fits"))
    mtime = kept.stat().st_mtime_ns
    lost.unlink()
    (s1 / ".done.json").rename(s1 / ".running.json")
    plans = pipeline.plan(cfg, stages="1")
    assert plans[0].action == "resume" and plans[0].keep_existing
    pipeline.run(cfg, stages="1", progress=False)
    assert kept.stat().st_mtime_ns == mtime and lost.exists()
    again = product_hashes(tmp_path / "dask")
    assert all(again[k] == ref[k] for k in ref if k.startswith("stage1/"))
    # the backend is no part of any stage hash: the serial markers are valid for the dask run
    assert pipeline.stage_hashes(validate_run_config(_run_user(sim, tmp_path / "x"), tmp_path)) == \
        pipeline.stage_hashes(validate_run_config(_run_user(sim, tmp_path / "x", {"backend": "processes"}),
                                                  tmp_path))


def test_worker_killed_mid_unit_is_rerun_and_map_completes(cluster, tmp_path):
    from distributed import Client

    flag_dir = str(tmp_path)

    def unit(k):  # pickled by value (cloudpickle); the first attempt at unit 1 hangs until killed
        import os as _os
        import time as _time
        if k == 1:
            try:
                fd = _os.open(f"{flag_dir}/first-attempt.pid", _os.O_CREAT | _os.O_EXCL | _os.O_WRONLY)
            except FileExistsError:
                return (k * k, _os.getpid())
            _os.write(fd, str(_os.getpid()).encode())
            _os.close(fd)
            _time.sleep(120)
        return (k * k, _os.getpid())

    killed = {}

    def killer():
        pid_file = Path(flag_dir) / "first-attempt.pid"
        for _ in range(600):
            if pid_file.exists() and pid_file.read_text():
                killed["pid"] = int(pid_file.read_text())
                os.kill(killed["pid"], signal.SIGKILL)
                return
            time.sleep(0.05)

    with Client(cluster) as client:
        ex = execution.DaskExecutor(client=client)
        t = threading.Thread(target=killer)
        t.start()
        t0 = time.perf_counter()
        res = ex.map(unit, [0, 1, 2, 3], labels=[f"u{k}" for k in range(4)])
        t.join()
        print(f"killed worker pid {killed.get('pid')}; map completed in {time.perf_counter() - t0:.1f} s")
    assert [r[0] for r in res] == [0, 1, 4, 9]
    assert "pid" in killed and res[1][1] != killed["pid"]  # unit 1 finished on another worker process


def test_processes_backend_reruns_units_after_a_worker_died(tmp_path, caplog):
    ex = execution.ProcessesExecutor(2, lost_worker_retries=1)
    try:
        with caplog.at_level("WARNING", logger="tsoreduce.execution"):
            res = ex.map(_exec_units.die_once, [(str(tmp_path), k) for k in range(4)])
        assert [r[0] for r in res] == [0, 1, 4, 9]
        died = int((tmp_path / "died.pid").read_text())
        assert res[1][1] != died and "a worker process died" in caplog.text
        with pytest.raises(ValueError, match="unit 2 is bad"):  # a unit's own exception, its own type
            ex.map(_exec_units.fail, [1, 2][1:])
        out = ex.map(_exec_units.fail, [3], return_exceptions=True)
        assert isinstance(out[0], ValueError)
    finally:
        ex.close()


@pytest.mark.slow
def test_batch_with_one_corrupt_input_completes_the_others(sim, cluster, tmp_path):
    from tsoreduce import batch

    bad = tmp_path / "bad"
    bad.mkdir()
    for src in sim["uncal"]:
        (bad / Path(src).name).write_bytes(Path(src).read_bytes())
    victim = bad / Path(sim["uncal"][1]).name
    os.truncate(victim, victim.stat().st_size // 2)  # an interrupted download
    shared = _run_user(sim, tmp_path / "unused", method="lsq")
    for k in ("name", "output_dir", "input"):
        shared.pop(k)
    good_input = {"uncal": sim["uncal"], "references": sim["references"]}
    doc = {"output_dir": str(tmp_path / "batch"), **shared,
           "exposures": [{"name": "visit1", "input": good_input},
                         {"name": "visit2", "input": {"uncal": [str(p) for p in sorted(bad.iterdir())]}},
                         {"name": "visit3", "input": good_input}]}
    path = tmp_path / "archive.yaml"
    path.write_text(yaml.safe_dump(doc))
    rc = batch.main([str(path), "--backend", "dask", "--scheduler", cluster.scheduler_address,
                     "--no-progress"])
    assert rc == 1  # one exposure failed
    from astropy.table import Table
    t = Table.read(tmp_path / "batch" / "batch_summary.ecsv", format="ascii.ecsv")
    print(batch.format_table([dict(zip(t.colnames, r)) for r in t]))
    rows = {r["name"]: r for r in t}
    assert rows["visit2"]["status"] == "failed"
    assert "TruncatedFileError" in rows["visit2"]["error"] and victim.name in rows["visit2"]["error"]
    for name in ("visit1", "visit3"):
        r = rows[name]
        assert r["status"] == "ok" and r["nchannels"] == 4
        assert (tmp_path / "batch" / name / "stage4" / "spectrum.ecsv").exists()
        assert np.isfinite(r["white_depth_ppm"]) and r["white_depth_err_ppm"] > 0
        assert np.isfinite(r["white_p2p_ppm"])
    # same inputs, same settings: identical white-light depth from two exposures on two workers
    assert rows["visit1"]["white_depth_ppm"] == rows["visit3"]["white_depth_ppm"]
    # the truncated file is caught by the up-front uncal header checks, before any of its work
    blog = (tmp_path / "batch" / "batch.log").read_text()
    assert "visit2 failed" in blog or "visit2 not run: TruncatedFileError" in blog


def test_dask_backend_without_distributed_is_a_named_config_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    with pytest.raises(BackendUnavailableError, match=r"pip install 'tsoreduce\[dask\]'"):
        execution.validate_config({"backend": "dask"})
    user = {"name": "t", "input": {"lightcurves": str(tmp_path / "lc.h5")}, "stages": [4],
            "execution": {"backend": "dask"}}
    with pytest.raises(ConfigError, match="execution.backend"):
        validate_run_config(user, tmp_path, check_files=False)


def test_execution_section_checked_before_any_work(tmp_path):
    with pytest.raises(ConfigError, match="execution.scheduler"):
        execution.validate_config({"backend": "processes", "scheduler": "tcp://10.0.0.1:8786"})
    with pytest.raises(ConfigError, match="execution.workers"):
        execution.validate_config({"backend": "processes", "workers": 0})
    with pytest.raises(ConfigError, match="execution.backnd"):
        execution.validate_config({"backnd": "dask"})
    assert execution.validate_config(None)["backend"] == "serial"
    assert isinstance(execution.current(), execution.SerialExecutor)


def test_batch_refuses_two_exposures_in_one_folder_and_isolates_bad_configs(tmp_path):
    from tsoreduce import batch

    for f in ("x.h5", "y.h5"):
        (tmp_path / f).write_bytes(b"")
    same = str(tmp_path / "same")
    doc = {"output_dir": str(tmp_path / "b"), "stages": [4],
           "exposures": [{"name": "a", "input": {"lightcurves": "x.h5"}, "output_dir": same},
                         {"name": "b", "input": {"lightcurves": "y.h5"}, "output_dir": same}]}
    path = tmp_path / "b.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match="would both write into"):
        batch.load_batch([path])
    # a missing input or a bad key stops that exposure only, before any work
    doc["exposures"] = [{"name": "a", "input": {"lightcurves": "missing.h5"}},
                        {"name": "b", "input": {"lightcurves": "y.h5"}, "stage4": {"bogus": 1}}]
    path.write_text(yaml.safe_dump(doc))
    exps, batch_dir, _ = batch.load_batch([path])
    assert batch_dir == tmp_path / "b" and [e.name for e in exps] == ["a", "b"]
    assert "no file matches" in exps[0].error and "stage4.bogus" in exps[1].error
    rows = batch.run_batch(exps, batch_dir, progress=False)
    assert [r["status"] for r in rows] == ["failed", "failed"]
    assert "ConfigError" in rows[0]["error"]
    assert "2 failed" in batch.format_table(rows)


def test_cli_dispatches_batch(capsys):
    from tsoreduce import cli
    with pytest.raises(SystemExit) as exc:
        cli.main(["batch", "--help"])
    assert exc.value.code == 0 and "exposures" in capsys.readouterr().out
    assert cli.main(["batch", "/nonexistent/run.yaml"]) == 2
