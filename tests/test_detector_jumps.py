"""Jump detection (up the ramp and time domain) on synthetic ramps with known cosmic rays.

Recall is counted for cosmic rays above a detectability threshold of 6 sigma of the first-difference
noise sqrt(2 RN^2 + S/gain) that fall on a usable difference; false positives are flagged groups without
an injected cosmic ray, as a fraction of all usable pixel-groups."""

import numpy as np
import pytest

from tsoreduce.datamodel import DQ, RampData
from tsoreduce.detector import detect_jumps_time_domain, detect_jumps_up_the_ramp

TG, GAIN, RN = 0.15904, 3.1, 6.0
DETECTABLE_SIGMA = 6.0


def make_ramps_with_crs(nints, ngroups, ny, nx, ncr, seed=0, rate=None):
    rng = np.random.default_rng(seed)
    if rate is None:
        rate = np.exp(rng.uniform(np.log(5), np.log(5000), (ny, nx)))
    lam = (rate * TG * GAIN)[None, None] * np.ones((nints, ngroups, 1, 1))
    raw = np.cumsum(rng.poisson(lam), axis=1) / GAIN + 12000 + rng.normal(0, RN, (nints, ngroups, ny, nx))
    ci = rng.integers(0, nints, ncr)
    cg = rng.integers(1, ngroups, ncr)
    cy = rng.integers(0, ny, ncr)
    cx = rng.integers(0, nx, ncr)
    amp = np.exp(rng.uniform(np.log(10), np.log(3000), ncr))
    for i, g, y, x, a in zip(ci, cg, cy, cx, amp):
        raw[i, g:, y, x] += a
    gdq = np.zeros(raw.shape, np.uint32)
    gdq[:, 0] |= np.uint32(DQ.DO_NOT_USE)
    gdq[:, -1] |= np.uint32(DQ.DO_NOT_USE)
    ramp = RampData(raw.astype(np.float32), gdq, meta={"TGROUP": TG})
    return ramp, rate, (ci, cg, cy, cx, amp)


def score(out, rate, crs, first_usable=1, last_usable=None):
    ci, cg, cy, cx, amp = crs
    nints, ng = out.data.shape[:2]
    last = ng - 2 if last_usable is None else last_usable
    jump = (out.groupdq & np.uint32(DQ.JUMP_DET)) != 0
    truth = np.zeros_like(jump)
    truth[ci, cg, cy, cx] = True
    sig = np.sqrt(2 * RN**2 + rate * TG / GAIN)
    usable = (cg - 1 >= first_usable) & (cg <= last)
    detectable = usable & (amp > DETECTABLE_SIGMA * sig[cy, cx])
    recall = jump[ci[detectable], cg[detectable], cy[detectable], cx[detectable]].mean()
    n_pixel_groups = nints * (last - first_usable) * jump.shape[2] * jump.shape[3]
    fp = np.count_nonzero(jump & ~truth) / n_pixel_groups
    return recall, fp, int(detectable.sum())


@pytest.fixture(scope="module")
def crdata():
    return make_ramps_with_crs(60, 12, 48, 72, 1500, seed=11)


def test_up_the_ramp_recall_and_false_positives(crdata):
    ramp, rate, crs = crdata
    out = detect_jumps_up_the_ramp(ramp, threshold=4.0, read_noise=RN, gain=GAIN)
    recall, fp, n = score(out, rate, crs)
    print(f"up-the-ramp: recall {recall:.4f} of {n} CRs > {DETECTABLE_SIGMA} sigma, FP {fp:.2e}")
    assert n > 300
    assert recall >= 0.95
    assert fp <= 1e-3
    assert out.meta["S_JUMP"] == "COMPLETE"
    assert not np.any(ramp.groupdq & np.uint32(DQ.JUMP_DET))  # input untouched


def test_time_domain_recall_and_false_positives(crdata):
    ramp, rate, crs = crdata
    out = detect_jumps_time_domain(ramp, threshold=5.0, window=15, read_noise=RN, gain=GAIN)
    recall, fp, n = score(out, rate, crs)
    print(f"time domain: recall {recall:.4f} of {n} CRs > {DETECTABLE_SIGMA} sigma, FP {fp:.2e}")
    assert recall >= 0.95
    assert fp <= 1e-3


def test_time_domain_does_not_flag_bright_steady_pixels():
    """MR-LRS03: a bright trace pixel (near the top of the MIRI range) without cosmic rays stays clean,
    even with a slow flux change (transit-like 2 % dip) across the integrations."""
    nints, ng = 80, 8
    rate = np.full((6, 72), 20.0)
    rate[:, 30:40] = 12000.0  # ramps of ~ 15000 DN over 8 groups
    ramp, _, _ = make_ramps_with_crs(nints, ng, 6, 72, 0, seed=2, rate=rate)
    dip = 1 - 0.02 * np.exp(-0.5 * ((np.arange(nints) - 40) / 10.0) ** 2)
    data = ramp.data.astype(float)
    data = 12000 + (data - 12000) * dip[:, None, None, None]
    ramp = ramp.replace(data=data.astype(np.float32))
    out = detect_jumps_time_domain(ramp, threshold=5.0, read_noise=RN, gain=GAIN)
    bright = (out.groupdq[:, :, :, 30:40] & np.uint32(DQ.JUMP_DET)) != 0
    assert bright.sum() <= 2  # expectation ~ 0.03 at 5 sigma


def test_time_domain_ignores_bright_pixel_curvature_that_trips_up_the_ramp():
    """MR-LRS03, the case that matters: bright trace pixels whose ramps keep a residual curvature
    (uncorrected non-linearity of a few per cent, identical in every integration).  The up-the-ramp
    test, comparing each difference with the ramp's mean, flags these groups as jumps; the
    time-domain test compares a group difference with the same difference in other integrations
    and leaves them clean."""
    nints, ng = 80, 8
    rate = np.full((6, 72), 20.0)
    rate[:, 30:40] = 12000.0
    ramp, _, _ = make_ramps_with_crs(nints, ng, 6, 72, 0, seed=2, rate=rate)
    data = ramp.data.astype(float)
    data[:, :, :, 30:40] -= 3e-6 * (data[:, :, :, 30:40] - 12000.0) ** 2   # ~4 % at 15000 DN
    ramp = ramp.replace(data=data.astype(np.float32))
    jump = np.uint32(DQ.JUMP_DET)
    td = detect_jumps_time_domain(ramp, threshold=5.0, read_noise=RN, gain=GAIN)
    utr = detect_jumps_up_the_ramp(ramp, threshold=4.0, read_noise=RN, gain=GAIN)
    n_td = int(((td.groupdq[:, :, :, 30:40] & jump) != 0).sum())
    n_utr = int(((utr.groupdq[:, :, :, 30:40] & jump) != 0).sum())
    assert n_utr > 10, "the case no longer exercises the failure of the up-the-ramp test"
    assert n_td <= 2


def test_time_domain_works_for_two_groups():
    """NGROUPS = 2: one difference per integration.  A cosmic ray is found in the time domain (recall
    >= 95 %, false positives <= 0.1 %), the difference is replaced by its running median so the
    integration keeps a slope (JUMP_DET marks group 0, hence the rateints DQ), and the input is not
    modified."""
    from tsoreduce.detector import fit_ramps
    ramp, rate, crs = make_ramps_with_crs(100, 2, 20, 72, 400, seed=4)
    ramp = ramp.replace(groupdq=np.zeros_like(ramp.groupdq))  # both groups usable
    before = ramp.data.copy()
    out = detect_jumps_time_domain(ramp, threshold=5.0, read_noise=RN, gain=GAIN)
    np.testing.assert_array_equal(ramp.data, before)
    assert not np.any(out.groupdq[:, 1] & np.uint32(DQ.JUMP_DET))
    # score on the integration marker (group 0) instead of the rewritten group 1
    shifted = np.zeros_like(out.groupdq)
    shifted[:, 1] = out.groupdq[:, 0]
    marked = out.replace(groupdq=shifted)
    recall, fp, n = score(marked, rate, crs, first_usable=0, last_usable=1)
    print(f"\nNGROUPS=2 time domain: recall {recall:.4f} of {n}, FP {fp:.2e}")
    assert n > 50
    assert recall >= 0.95 and fp <= 1e-3
    rates = fit_ramps(out, read_noise=RN, gain=GAIN)
    ci, cg, cy, cx, amp = crs
    hit = amp > DETECTABLE_SIGMA * np.sqrt(2 * RN**2 + rate[cy, cx] * TG / GAIN)
    assert np.all(np.isfinite(rates.data[ci[hit], cy[hit], cx[hit]]))
    hit &= (out.groupdq[ci, 0, cy, cx] & np.uint32(DQ.JUMP_DET)) != 0          # the ones found
    assert np.all(rates.dq[ci[hit], cy[hit], cx[hit]] & np.uint32(DQ.JUMP_DET))
    # the replaced rates are the local median rate: within 5 sigma of one difference of the truth,
    # while the cosmic rays were > 6 sigma
    pull = (rates.data[ci[hit], cy[hit], cx[hit]] - rate[cy[hit], cx[hit]]) * TG \
        / np.sqrt(2 * RN**2 + rate[cy[hit], cx[hit]] * TG / GAIN)
    assert np.all(np.abs(pull) < 5.0) and abs(np.median(pull)) < 0.3


def test_neighbour_flagging():
    ramp, rate, _ = make_ramps_with_crs(4, 10, 9, 9, 0, seed=5, rate=np.full((9, 9), 50.0))
    data = ramp.data.copy()
    data[1, 5:, 4, 4] += 5000.0
    ramp = ramp.replace(data=data)
    out = detect_jumps_up_the_ramp(ramp, threshold=4.0, flag_4_neighbors=True, read_noise=RN, gain=GAIN)
    j = (out.groupdq[1, 5] & np.uint32(DQ.JUMP_DET)) != 0
    assert j[4, 4] and j[3, 4] and j[5, 4] and j[4, 3] and j[4, 5]
    assert not j[3, 3]
    assert not np.any(out.groupdq & np.uint32(1 << 30))  # scratch bit cleared


def test_fused_jump_and_fit_equals_separate_steps(crdata):
    from tsoreduce.detector import detect_jumps_and_fit, fit_ramps
    ramp, rate, crs = crdata
    sep_flags = detect_jumps_up_the_ramp(ramp, threshold=4.0, read_noise=RN, gain=GAIN)
    sep = fit_ramps(sep_flags, read_noise=RN, gain=GAIN)
    fused_flags, fused = detect_jumps_and_fit(ramp, threshold=4.0, read_noise=RN, gain=GAIN)
    np.testing.assert_array_equal(fused_flags.groupdq, sep_flags.groupdq)
    np.testing.assert_array_equal(fused.dq, sep.dq)
    np.testing.assert_allclose(fused.data, sep.data, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(fused.err, sep.err, rtol=1e-5)


def _reference_time_domain(ramp, threshold, window, floor_factor=1.0):
    """Plain-numpy statement of the method (slow): per pixel and group difference, the running median
    over the usable integrations (window shifted at the ends), the MAD pooled over the pixel's
    residuals (every residual when there are < 4096), flags where |residual| > threshold * sigma."""
    g0, g1 = 1, ramp.ngroups - 2
    out = np.zeros(ramp.groupdq.shape, bool)
    d = np.diff(ramp.data.astype(float), axis=1)
    bad = ((ramp.groupdq[:, :-1] | ramp.groupdq[:, 1:]) & np.uint32(DQ.DO_NOT_USE | DQ.SATURATED)) != 0
    for y in range(ramp.data.shape[2]):
        for x in range(ramp.data.shape[3]):
            res, meds, where = [], [], []
            for g in range(g0, g1):
                idx = np.flatnonzero(~bad[:, g, y, x] & np.isfinite(d[:, g, y, x]))
                v = d[idx, g, y, x]
                n = v.size
                if n < 3:
                    continue
                w = min(window, n)
                starts = np.clip(np.arange(n) - w // 2, 0, n - w)
                m = np.array([np.median(v[s:s + w]) for s in starts])
                res += list(v - m)
                meds += list(m)
                where += [(i, g + 1) for i in idx]
            assert len(res) < 4096
            res = np.array(res)
            s = max(np.mean(meds), 0.0)
            sig = max(1.4826 * np.median(np.abs(res)), floor_factor * np.sqrt(2 * RN**2 + s / GAIN))
            for r, (i, g) in zip(res, where):
                if abs(r) > threshold * sig:
                    out[i, g, y, x] = True
    return out


def test_time_domain_kernel_matches_plain_numpy_statement():
    """The vectorised running medians (all columns at once) and the per-pixel fallback (columns with a
    saturated or NaN difference) flag exactly what the plain statement of the method flags."""
    ramp, rate, crs = make_ramps_with_crs(40, 8, 3, 72, 60, seed=21)
    gdq = ramp.groupdq.copy()
    gdq[5:9, 6:, 1, 10] |= np.uint32(DQ.SATURATED)            # a few saturated ramps: fallback path
    data = ramp.data.copy()
    data[12, 4, 2, 30] = np.nan                                  # a NaN read: fallback path
    data[20, 5:, 2, 30] += 400.0                                 # ... and a cosmic ray on that pixel
    ramp = ramp.replace(data=data, groupdq=gdq)
    got = (detect_jumps_time_domain(ramp, threshold=5.0, window=7, read_noise=RN, gain=GAIN).groupdq
           & np.uint32(DQ.JUMP_DET)) != 0
    want = _reference_time_domain(ramp, 5.0, 7)
    assert want.sum() >= 30 and want[20, 5, 2, 30]
    np.testing.assert_array_equal(got, want)
