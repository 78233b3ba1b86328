"""Noise figures (tsoreduce.noise) against known white and red noise, and their place in the products."""

import numpy as np

from tsoreduce.noise import beta_factor, binning_curve, lightcurve_noise, p2p_scatter, residual_noise


def test_white_noise_at_the_quoted_error_gives_unit_ratios_and_beta():
    rng = np.random.default_rng(4)
    n, sig = 4000, 1e-3
    t = np.linspace(-1, 1, n)
    transit = 1 - 0.01 * (np.abs(t) < 0.3)  # a box transit: p2p must ignore it
    flux = transit + sig * rng.standard_normal(n)
    d = lightcurve_noise(flux, np.full(n, sig))
    r = residual_noise(flux, transit, np.full(n, sig), nfree=1)
    print(f"white: p2p/ERR {d['ratio']:.3f}, resid/ERR {r['ratio_resid']:.3f}, beta {r['beta']:.3f}")
    # 4000 points: rms ratio std 1/sqrt(2n) = 1.1 %, mad_std of differences ~ 1.8 %
    assert abs(d["ratio"] - 1) < 0.06 and abs(r["ratio_resid"] - 1) < 0.035
    assert abs(r["beta"] - 1) < 0.15 and abs(d["beta"] - 1) < 0.2
    sizes, rms, white = binning_curve(flux - transit)
    assert sizes[0] == 1 and np.isclose(rms[0], white[0])
    # white noise bins down as 1/sqrt(N): each binned rms within 4 of its own standard errors
    # (1/sqrt(2 (M - 1)) for M bins) of the expectation, wherever there are >= 40 bins
    m = (flux.size // sizes)
    use = m >= 40
    assert use.sum() >= 10
    assert np.all(np.abs(rms[use] / white[use] - 1) < 4 / np.sqrt(2 * (m[use] - 1)))


def test_red_noise_raises_beta_and_excess_noise_raises_the_ratio():
    rng = np.random.default_rng(5)
    n, sig = 4000, 1e-3
    red = np.convolve(rng.standard_normal(n + 99), np.ones(100) / 10.0, mode="valid")[:n] * sig
    resid = sig * rng.standard_normal(n) + red
    b = beta_factor(resid)
    print(f"red noise of equal rms per point: beta {b:.2f}")
    assert b > 2.0
    r = residual_noise(1.2 * sig * rng.standard_normal(n), np.zeros(n), np.full(n, sig))
    assert abs(r["ratio_resid"] - 1.2) < 0.04 and abs(p2p_scatter(np.arange(10.0)) - 0.0) < 1e-12


def test_stage3_light_curves_carry_noise_metadata_through_the_table(tmp_path):
    from tsoreduce.extraction import run_stage3
    from tsoreduce.io import read_lightcurves, write_lightcurves
    from tsoreduce.simulate import LRSSimConfig, simulate_lrs_rateints
    from tsoreduce.spectroscopic import run_stage2

    rates, _ = simulate_lrs_rateints(LRSSimConfig(nints=40, seed=2))
    rates.data[5] = np.nan
    cal = run_stage2(rates, {"pca": {"skip": True}}).product
    lc = run_stage3(cal, {"extraction": {"method": "box"}}).product.lightcurves
    back = read_lightcurves(write_lightcurves(tmp_path / "lc.ecsv", lc))
    n = back.meta["noise"]
    assert len(n["ratio"]) == back.nchan == len(n["expected"]) and "white" in n and "definitions" in n
    assert back.mask[5] and back.mask.sum() == 1 and back.meta["masked_integrations"] == [6]
    print("Stage 3 p2p/ERR per channel:", " ".join(f"{x:.2f}" for x in n["ratio"]))
    assert 0.7 < np.median(n["ratio"]) < 1.3


def test_run_summary_states_the_noise_figures_and_flagged_parameters(caplog):
    import logging
    from types import SimpleNamespace

    from tsoreduce.run_summary import result_numbers as _result_numbers

    def fit(label, ratio, beta, flags):
        return SimpleNamespace(label=label, median={"rp_rs": 0.1}, free=["rp_rs"], err_lower={"rp_rs": 0.01},
                               err_upper={"rp_rs": 0.01}, chi2_red=1.0, flags=flags,
                               noise={"expected_ppm": 500.0, "achieved_resid_ppm": 500.0 * ratio,
                                      "ratio_resid": ratio, "beta": beta})

    res = SimpleNamespace(white=fit("white", 1.05, 1.1, {"rp_rs": ""}),
                          channels=[fit("channel_00", 1.0, 1.0, {"rp_rs": ""}),
                                    fit("channel_01", 1.3, 1.4, {"rp_rs": "at_lower_bound"})])
    with caplog.at_level(logging.WARNING):
        nums = _result_numbers(res)
    assert nums["white.noise_ratio"] == 1.05 and nums["white.beta"] == 1.1
    assert nums["channels.noise_ratio_max"] == 1.3 and nums["channels.noise_ratio_median"] == 1.15
    assert nums["stage4.n_flagged_parameters"] == 1
    assert any("channel_01.rp_rs" in r.getMessage() for r in caplog.records)
