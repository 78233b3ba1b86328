"""The shipped real-input runs (runs/*.yaml) go through the pipeline as `python run_tso.py` would run
them: the files load and validate, their input data in ../shared/data are found, and the products
are written.  Stage 4 uses least squares here (the shipped emcee settings take minutes; their
results are in docs/validation.md); the MIRISim run is unchanged."""

from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table

from tsoreduce import pipeline
from tsoreduce.config import load_run_config

RUNS = Path(__file__).parents[1] / "runs"
DATA = Path(__file__).parents[1].parent / "shared" / "data"

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not DATA.is_dir(), reason=f"shared real data not found at {DATA}")]


def _white(out):
    t = Table.read(out / "stage4" / "white_fit.ecsv")
    return {r["name"]: (float(r["median"]), float(r["err_upper"])) for r in t}


def test_wasp107b_white_run(tmp_path):
    cfg = load_run_config(RUNS / "wasp107b_white.yaml", output_dir=tmp_path / "w107")
    cfg["stage4"]["fitter"]["method"] = "lsq"
    summary = pipeline.run(cfg, progress=False)
    w = _white(tmp_path / "w107")
    # the Eureka! fit of this very light curve: Rp/Rs 0.14324 +- 0.00010, a/Rs 17.97 +- 0.04
    assert abs(w["rp_rs"][0] - 0.14324) < 5 * 0.0001
    assert abs(w["a_rs"][0] - 17.97) < 5 * 0.04
    assert (tmp_path / "w107" / "stage4" / "spectrum.ecsv").exists()
    assert summary["stages"]


def test_wasp43b_phasecurve_run(tmp_path):
    cfg = load_run_config(RUNS / "wasp43b_phasecurve.yaml", output_dir=tmp_path / "w43")
    cfg["stage4"]["fitter"]["method"] = "lsq"
    cfg["stage4"]["channels"] = [0, 13]
    pipeline.run(cfg, progress=False)
    out = tmp_path / "w43" / "stage4"
    w = _white(tmp_path / "w43")
    # white-light eclipse depth near the ~5600 ppm of Bell et al. 2024, transit Rp/Rs ~ 0.157
    assert 5300e-6 < w["fp"][0] < 5900e-6
    assert 0.150 < w["rp_rs"][0] < 0.165
    from astropy.units import cds
    with cds.enable():
        spec = Table.read(out / "spectrum.ecsv")
    assert len(spec) == 2 and "eclipse_depth" in spec.colnames
    assert np.all(np.isfinite(np.asarray(spec["eclipse_depth"], float)))


def test_mirisim_ngts10_run(tmp_path):
    cfg = load_run_config(RUNS / "mirisim_ngts10.yaml", output_dir=tmp_path / "ngts10")
    pipeline.run(cfg, progress=False)
    out = tmp_path / "ngts10"
    assert list((out / "stage2").glob("*_calints.fits"))
    x1d = list((out / "stage3").glob("*_x1dints.fits"))
    assert x1d
    from tsoreduce import io
    spec = io.read(x1d[0])
    assert spec.data.shape[0] == 4 and np.isfinite(spec.data).mean() > 0.5
