"""Ramp fitting (tsoreduce.detector.fit_ramps): GLS slopes against known rates.

Injection-recovery on synthetic ramps with Poisson + read noise, built here with numpy so the truth is
exact (tolerances stated in each test)."""

import numpy as np
import pytest

from tsoreduce.datamodel import DQ, RampData
from tsoreduce.detector import fit_ramps

TG, GAIN, RN = 0.15904, 3.1, 6.0


def make_ramps(rate, nints, ngroups, seed=0, bias=12000.0):
    """Ramps (nints, ngroups, ny, nx) in DN with Poisson (electrons) + read noise; rate in DN/s."""
    rng = np.random.default_rng(seed)
    lam = (rate * TG * GAIN)[None, None] * np.ones((nints, ngroups, 1, 1))
    charge = np.cumsum(rng.poisson(lam), axis=1) / GAIN
    return charge + bias + rng.normal(0.0, RN, charge.shape)


def dense_gls(d, rn, s):
    """Reference: GLS slope of first differences with the full covariance matrix (numpy inverse)."""
    n = d.size
    cov = np.diag(np.full(n, 2 * rn**2 + s / GAIN)) - rn**2 * (np.eye(n, k=1) + np.eye(n, k=-1))
    w = np.linalg.solve(cov, np.ones(n))
    return w @ d / w.sum(), 1.0 / w.sum()


def test_matches_dense_gls_solution():
    rate = np.array([[30.0, 300.0, 3000.0]])
    raw = make_ramps(rate, 2, 15, seed=1)
    ramp = RampData(raw.astype(np.float32), meta={"TGROUP": TG})
    s = rate * TG
    out = fit_ramps(ramp, read_noise=RN, gain=GAIN, signal_per_group=s)
    for i in range(2):
        for x in range(3):
            d = np.diff(ramp.data[i, :, 0, x].astype(float))
            slope, var = dense_gls(d, RN, s[0, x])
            assert out.data[i, 0, x] == pytest.approx(slope / TG, rel=1e-5)
            assert out.err[i, 0, x] ** 2 == pytest.approx(var / TG**2, rel=1e-4)
            # the read + Poisson parts add up to the total variance
            assert out.var_poisson[i, 0, x] + out.var_rnoise[i, 0, x] == pytest.approx(var / TG**2, rel=1e-4)


def test_unbiased_and_calibrated_errors():
    """Bias < 0.1 % (rate-weighted over pixels) and pull width 1 +/- 0.05 over 300 x 576 ramps."""
    rng = np.random.default_rng(5)
    rate = np.exp(rng.uniform(np.log(50), np.log(5000), (8, 72)))
    nints, ngroups = 300, 20
    raw = make_ramps(rate, nints, ngroups, seed=6)
    gdq = np.zeros(raw.shape, np.uint32)
    gdq[:, 0] |= np.uint32(DQ.DO_NOT_USE)
    gdq[:, -1] |= np.uint32(DQ.DO_NOT_USE)
    ramp = RampData(raw.astype(np.float32), gdq, meta={"TGROUP": TG})
    out = fit_ramps(ramp, read_noise=RN, gain=GAIN)
    assert np.all(np.isfinite(out.data))
    mean = out.data.mean(axis=0)
    rel = mean / rate - 1.0
    # statistical precision of the mean for each pixel, for a fair bias test
    sig = out.err.mean(axis=0) / np.sqrt(nints) / rate
    w = 1.0 / sig**2
    bias = np.sum(w * rel) / np.sum(w)
    assert abs(bias) < 1e-3, bias
    # no pixel's mean deviates by more than 5 sigma of its own statistical error
    assert np.max(np.abs(rel / sig)) < 5.0
    pull = (out.data - rate) / out.err
    print(f"\nramp fit: weighted bias {bias:+.2e}, pull mean {np.mean(pull):+.3f}, width {np.std(pull):.3f}")
    assert abs(np.std(pull) - 1.0) < 0.05, np.std(pull)
    assert abs(np.mean(pull)) < 0.05


def test_segments_split_at_jumps_and_saturation():
    """A flagged jump splits the ramp: the step does not bias the slope; saturated groups are ignored."""
    rate = np.full((4, 72), 400.0)
    nints, ngroups = 200, 20
    raw = make_ramps(rate, nints, ngroups, seed=8)
    gdq = np.zeros(raw.shape, np.uint32)
    # a 2000 DN cosmic-ray step at group 9 in column 10 of every third integration, flagged JUMP_DET
    # (the per-pixel Poisson signal is a median over integrations, robust to a minority of hits)
    hit = np.arange(nints) % 3 == 0
    raw[hit, 9:, :, 10] += 2000.0
    gdq[hit, 9, :, 10] |= np.uint32(DQ.JUMP_DET)
    # column 20 saturates from group 12 on (values garbage afterwards)
    raw[:, 12:, :, 20] = 60000.0
    gdq[:, 12:, :, 20] |= np.uint32(DQ.SATURATED | DQ.DO_NOT_USE)
    ramp = RampData(raw.astype(np.float32), gdq, meta={"TGROUP": TG})
    out = fit_ramps(ramp, read_noise=RN, gain=GAIN)
    clean = out.data[:, :, 30]
    for col in (10, 20):
        r = out.data[:, :, col]
        assert abs(r.mean() / 400.0 - 1) < 5 * r.std() / np.sqrt(r.size) / 400.0
        # fewer usable differences -> larger error than a clean ramp
        rows = hit if col == 10 else slice(None)
        assert np.median(out.err[rows, :, col]) > np.median(out.err[rows, :, 30])
        pull = (r - 400.0) / out.err[:, :, col]
        assert abs(pull.std() - 1) < 0.08
    assert np.all(out.dq[hit, :, 10] & DQ.JUMP_DET)
    assert not np.any(out.dq[~hit, :, 10] & DQ.JUMP_DET)
    assert np.all(out.dq[:, :, 20] & DQ.SATURATED)
    assert not np.any(out.dq[:, :, 30] & (DQ.JUMP_DET | DQ.SATURATED))
    assert abs(clean.mean() / 400 - 1) < 5 * clean.std() / np.sqrt(clean.size) / 400


def test_no_usable_difference_gives_nan_and_do_not_use():
    raw = make_ramps(np.full((2, 3), 100.0), 3, 4)
    gdq = np.zeros(raw.shape, np.uint32)
    gdq[:, 1:, 0, 0] |= np.uint32(DQ.SATURATED | DQ.DO_NOT_USE)
    ramp = RampData(raw.astype(np.float32), gdq, meta={"TGROUP": TG})
    out = fit_ramps(ramp, read_noise=RN, gain=GAIN)
    assert np.all(np.isnan(out.data[:, 0, 0]))
    assert np.all(out.dq[:, 0, 0] & DQ.DO_NOT_USE)
    assert np.all(np.isfinite(out.data[:, 1, :]))
    assert out.units == "DN/s" and out.meta["S_RAMP"] == "COMPLETE"


def test_ngroups_two_and_wrong_noise_shape():
    raw = make_ramps(np.full((3, 5), 200.0), 400, 2, seed=3)
    ramp = RampData(raw.astype(np.float32), meta={"TGROUP": TG})
    out = fit_ramps(ramp, read_noise=RN, gain=GAIN)
    assert abs(out.data.mean() / 200 - 1) < 5 * out.data.std() / np.sqrt(out.data.size) / 200
    from tsoreduce.errors import ShapeError
    with pytest.raises(ShapeError, match="read_noise"):
        fit_ramps(ramp, read_noise=np.ones((4, 4)))


def test_input_not_mutated_and_preallocated_output():
    raw = make_ramps(np.full((2, 8), 100.0), 5, 6).astype(np.float32)
    ramp = RampData(raw.copy(), meta={"TGROUP": TG})
    before = ramp.data.copy(), ramp.groupdq.copy()
    buf = {"rate": np.empty((5, 2, 8), np.float32)}
    out = fit_ramps(ramp, out=buf)
    assert out.data is buf["rate"]
    np.testing.assert_array_equal(ramp.data, before[0])
    np.testing.assert_array_equal(ramp.groupdq, before[1])


def test_median_kernel_matches_numpy_and_reference_signal_is_robust():
    """The in-place selection behind poisson_signal_per_group equals np.median (odd/even n, ties), and
    the reference signal ignores a cosmic ray and a NaN in single integrations."""
    from tsoreduce.detector._select import median_inplace
    from tsoreduce.detector.rampfit import poisson_signal_per_group

    rng = np.random.default_rng(3)
    for n in (1, 2, 3, 4, 7, 8, 50, 201):
        for draw in (rng.normal(size=n), rng.integers(0, 4, n).astype(float)):
            assert median_inplace(draw.copy(), n) == np.median(draw)
    rate = np.full((2, 3), 400.0)
    data = make_ramps(rate, nints=41, ngroups=12, seed=4)
    data[5, 6:, 0, 0] += 5000.0                       # cosmic ray in one integration
    data[9, -2, 1, 1] = np.nan                         # NaN at the end group of one integration
    gdq = np.zeros(data.shape, np.uint32)
    gdq[:, 0] = DQ.DO_NOT_USE
    gdq[:, -1] = DQ.DO_NOT_USE
    s = poisson_signal_per_group(RampData(data, gdq, meta={"TGROUP": TG}))
    assert np.all(np.isfinite(s))
    # DN per group interval; 41-integration median: statistical error ~ 2 % of 400 * TG
    assert np.allclose(s, 400.0 * TG, rtol=0.05)
