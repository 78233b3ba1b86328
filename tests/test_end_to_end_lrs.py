"""End-to-end LRS check: simulator uncal ramps -> Stage 1 -> Stage 2 -> Stage 3 -> light-curve table ->
Stage 4 least-squares fit, recovering the injected transmission spectrum in 0.5-um bins (5-12 um).

Acceptance (stated for 14 bins):
* every bin within 3 sigma of the injected depth -- with 14 independent bins a 1-sigma requirement on
  each would fail by chance with probability 1 - 0.683^14 = 99.5 %, and 3 sigma on all of them fails
  by chance 3.7 % of the time;
* at least half of the bins within 1 sigma (68 % expected);
* the reduced chi^2 of the bin residuals below 2 (the quoted errors are honest);
* the white-light depth within 2 sigma of the injected flux-weighted 5-12 um depth.
The orbit and limb darkening are fixed to the injected values (the test is about the reduction, not the
fitter); Rp/Rs, a linear baseline in time and a linear trace-position term are fitted per channel.
"""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("seed", [3, 5])
def test_uncal_to_spectrum_recovers_injected_depths(tmp_path, seed):
    sim = pytest.importorskip("tsoreduce.simulate")
    detector = pytest.importorskip("tsoreduce.detector")
    lightcurve = pytest.importorskip("tsoreduce.lightcurve")
    from tsoreduce import io
    from tsoreduce.extraction import run_stage3
    from tsoreduce.simulate.truth import depth_offsets
    from tsoreduce.spectroscopic import run_stage2

    # settling is off so the simple (linear baseline) model is the right one; every detector effect
    # Stage 1 must handle (nonlinearity, reset/RSCD, EMI, cosmic rays, saturation, drift) is on;
    # the dark is off because its reference is a per-group ramp that the rate-level truth does not carry
    # seeds 3 and 5: the two that failed after the move to specwcs_0009, kept rather than replaced.
    # With the bright rows of that map at the very end of the table, the optimal-extraction profile fit
    # took in the dark row after them and rang (tests/test_profile_blue_edge.py): seed 5's 5.25 / 5.75 um
    # channels then scattered 2.86x / 1.78x their ERR (the noise-budget assertion below failed); with the
    # fix 0.97 / 1.04.  Seeds 3-17 with the fix (current simulator noise streams): fraction within 1 sigma
    # 0.57-0.93, chi^2 0.48-1.25 except seed 10 (2.22, from the 10-11.5 um bins); 5-6 um mean z -0.44,
    # rms 0.96 over 30 bin-seeds.
    cfg = sim.LRSSimConfig(nints=60, ngroups=30, seed=seed, settling=False, dark=False)
    s = sim.simulate_lrs(cfg)
    truth = s.truth
    refs = {"linearity": truth.nonlinearity_coeffs, "gain": truth.gain,
            "readnoise": truth.read_noise_dn, "saturation": truth.saturation_dn}
    rates = detector.run(s.segments[0], None, references=refs).product
    cal, diag = (s2res := run_stage2(rates)).product, s2res.diagnostics
    p = run_stage3(cal).product  # the deep frame: the median of all integrations, as Stage 2's
    spectra, lc = p.x1dints, p.lightcurves
    assert lc.nchan == 14

    # through the light-curve table on disk, as the pipeline does
    path = io.write_lightcurves(tmp_path / "lightcurves.ecsv", lc)
    lc = io.read_lightcurves(path)

    T = truth.transit
    config = {
        "limb_darkening": {"parametrisation": "u"},
        "systematics": {"ramp": "none", "polynomial_order": 1, "decorrelate": ["trace_x"]},
        "supersample_factor": int(T["supersample"]), "exposure_time": float(T["exp_time_days"]) * 86400,
        "clip_sigma": None,
        "parameters": {"t0": T["t0"], "per": T["period"], "a_rs": T["a_rs"], "inc": T["inc"],
                       "ecc": 0.0, "w": 90.0, "u1": T["u1"], "u2": T["u2"],
                       "rp_rs": {"value": 0.12, "prior": "uniform", "bounds": [0.0, 0.3]}},
        "fitter": {"method": "lsq"}, "n_processes": 1,
    }
    res = lightcurve.run(lc, config).product
    inj, offset, err = depth_offsets(res.spectrum, truth)
    z = offset / err
    report = "\n".join(f"{w:5.2f} um: {i + o:8.0f} +- {e:5.0f} ppm, injected {i:8.0f}, z = {zz:+.2f}"
                       for w, o, e, i, zz in zip(lc.wavelength, offset, err, inj, z))
    print(report)  # shown with pytest -s
    assert np.all(np.abs(z) < 3), report
    assert np.mean(np.abs(z) < 1) >= 0.5, report
    assert np.mean(z**2) < 2, report

    white_inj = float(truth.injected_spectrum([5.0, 12.0])["transit_depth"][0])
    w_rp = res.white.median["rp_rs"]
    w_err = 0.5 * (res.white.err_lower["rp_rs"] + res.white.err_upper["rp_rs"])
    w_depth, w_derr = 1e6 * w_rp**2, 2e6 * w_rp * w_err
    assert abs(w_depth - white_inj) < 2 * w_derr, (w_depth, w_derr, white_inj)

    # noise budget: the residual scatter of every fit against the propagated ERR (60 points: the std of
    # a sample rms is 1/sqrt(120) = 9 %, so 1.3x is a > 3-sigma excess) and the Stage 3 p2p figures
    ratios = [c.noise["ratio_resid"] for c in res.channels]
    s3 = lc.meta["noise"]
    print("Stage 4 residual / ERR per channel:", " ".join(f"{r:.2f}" for r in ratios),
          f"white {res.white.noise['ratio_resid']:.2f}; Stage 3 p2p / ERR:",
          " ".join(f"{r:.2f}" for r in s3["ratio"]), f"white {s3['white']['ratio']:.2f}")
    assert 0.85 < np.median(ratios) < 1.12 and max(ratios) < 1.35, ratios
    assert 0.7 < res.white.noise["ratio_resid"] < 1.35
    assert 0.85 < np.median(s3["ratio"]) < 1.2, s3["ratio"]
