"""Stage 4 obeys the stage contract: ``run`` is pure (writes nothing without ``plot_dir``, leaves its
input and config untouched), refuses reference files, and the file-level runner writes exactly the
tables ``run`` returned (plus the run's provenance)."""

import copy

import numpy as np
import pytest
from astropy.table import Table
from astropy.units import cds

from tsoreduce.contract import StageResult
from tsoreduce.lightcurve import FitProducts, run, run_stage4
from tsoreduce.pipeline import run_stage4_files
from test_lightcurve_fitting import _stage_cfg, _synthetic_lc


@pytest.fixture(scope="module")
def small():
    lc, truth, rps = _synthetic_lc(nchan=2)
    cfg = _stage_cfg(truth)
    cfg["n_processes"] = 1
    return lc, cfg, rps


def test_run_is_pure_and_returns_the_tables(small, tmp_path, monkeypatch):
    lc, cfg, rps = small
    monkeypatch.chdir(tmp_path)  # a stray relative write would land here
    before = {k: np.array(v, copy=True) for k, v in (("time", lc.time), ("flux", lc.flux), ("err", lc.err),
                                                      ("white", lc.white_flux))}
    meta, cfg0 = copy.deepcopy(lc.meta), copy.deepcopy(cfg)
    res = run(lc, cfg)
    assert run is run_stage4
    assert isinstance(res, StageResult) and isinstance(res.product, FitProducts)
    assert list(tmp_path.iterdir()) == [] and res.figures == []
    for k, v in before.items():
        got = {"time": lc.time, "flux": lc.flux, "err": lc.err, "white": lc.white_flux}[k]
        np.testing.assert_array_equal(got, v)
    assert lc.meta == meta and cfg == cfg0
    p = res.product
    assert list(p.tables) == ["spectrum", "white_fit", "channel_fits"] and len(p.channels) == 2
    z = (p.spectrum["rp_rs"] - rps) / p.spectrum["rp_rs_err_lower"]
    print("rp_rs pulls", np.round(np.asarray(z), 2), "diagnostics", res.diagnostics)
    assert np.all(np.abs(z) < 3)
    assert res.diagnostics["n_channels_fitted"] == 2 and res.diagnostics["flagged_parameters"] == []
    with pytest.raises(ValueError, match="no reference files"):
        run(lc, cfg, references={"specwcs": "x.fits"})


def test_files_runner_writes_the_run_tables_with_provenance(small, tmp_path):
    lc, cfg, _ = small
    prov = {"config_hash": "abc123", "config": "stage4: {}\n"}
    p = run_stage4_files(lc, cfg, tmp_path, plot=False, provenance=prov, progress=False)
    fresh = run(lc, cfg).product
    for key, t in fresh.tables.items():
        with cds.enable():
            disk = Table.read(tmp_path / f"{key}.ecsv")
        assert disk.meta["config_hash"] == "abc123" and "config_hash" not in t.meta
        assert disk.colnames == t.colnames and len(disk) == len(t)
        for c in t.colnames:
            if t[c].dtype.kind == "f":
                np.testing.assert_array_equal(np.asarray(disk[c]), np.asarray(t[c]))
    assert set(p.files) == {"spectrum", "white_fit", "channel_fits", "chains"}


def test_joint_run_has_the_same_shape(tmp_path, monkeypatch):
    """Several visits: run_joint returns a StageResult whose FitProducts holds the joint fit and its
    tables; nothing is written; the file-level runner writes exactly those tables."""
    from test_lightcurve_joint import _config, _simulate

    from tsoreduce.lightcurve import run_joint

    entries, truth = _simulate(3)
    cfg = _config()
    monkeypatch.chdir(tmp_path)
    res = run_joint(entries, cfg)
    assert isinstance(res, StageResult) and res.product.joint is not None and res.figures == []
    assert list(tmp_path.iterdir()) == []
    assert list(res.product.tables) == ["white_fit", "visits"] and res.diagnostics["n_visits"] == 3
    jr = res.product.joint
    pull = (jr.median["a_rs"] - truth["a_rs"]) / jr.err_lower["a_rs"]
    print(f"joint a_rs {jr.median['a_rs']:.3f} +- {jr.err_lower['a_rs']:.3f} (truth {truth['a_rs']}), pull {pull:.2f}")
    assert abs(pull) < 4
    p = run_stage4_files(entries, cfg, tmp_path / "out", plot=False, progress=False)
    assert sorted(f.name for f in (tmp_path / "out").iterdir()) == ["visits.ecsv", "white_fit.ecsv"]
    assert p.joint is not None and set(p.files) == {"white_fit", "visits"}
