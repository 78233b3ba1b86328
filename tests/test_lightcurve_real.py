"""Stage 4 on real JWST MIRI LRS data: the WASP-107b white light curve (GO 1280; Eureka! reduction).

The stage4 section of runs/wasp107b_white.yaml is used as is, with short chains for CI time.
"""

import copy
from pathlib import Path

import numpy as np
import pytest
import yaml

from tsoreduce.io import read_lightcurves
from tsoreduce.lightcurve import fit_white

ROOT = Path(__file__).parents[1]
DATA = ROOT.parent / "shared" / "data"
W107 = DATA / "wasp107b_miri_lrs" / "wasp107b_miri_lrs_white_lightcurve.ecsv"


def _cfg(**fitter):
    cfg = yaml.safe_load((ROOT / "runs" / "wasp107b_white.yaml").read_text())["stage4"]
    cfg = copy.deepcopy(cfg)
    cfg["fitter"].update(fitter)
    return cfg


@pytest.mark.slow
def test_wasp107b_white_emcee_recovers_lsq_precision():
    if not W107.exists():
        pytest.skip(f"real data not available at {W107}")
    lc = read_lightcurves(W107)
    lsq = fit_white(lc, _cfg(method="lsq"))
    mc = fit_white(lc, _cfg(method="emcee", nwalkers=24, nsteps=200, burn_in=100))
    rp, rp_err = lsq.median["rp_rs"], lsq.err_lower["rp_rs"]
    # the short chain recovers Rp/Rs to the precision of the least-squares fit
    assert abs(mc.median["rp_rs"] - rp) < rp_err
    sig = 0.5 * (mc.err_lower["rp_rs"] + mc.err_upper["rp_rs"])
    assert 0.5 < sig / rp_err < 2.0
    # and the physics is that of WASP-107b (Rp/Rs ~ 0.14-0.15, a/Rs ~ 18, near-central transit)
    assert 0.13 < rp < 0.16
    assert 15 < mc.median["a_rs"] < 21 and mc.median["inc"] > 88.5
    assert 59963.95 < mc.median["t0"] < 59963.99
    # MIRI's settling ramp is detected and the residuals are close to the propagated errors
    assert lsq.median["ramp_tau1"] < 0.2 and abs(lsq.median["ramp_amp1"]) > 3 * lsq.err_lower["ramp_amp1"]
    assert 0.9 < mc.median["err_mult"] < 1.3
    assert np.isfinite(mc.tau).all()
