"""Stage 1 group-level steps: DQ init, saturation, reset drop, linearity (reference and self-calibrated),
dark.  Synthetic inputs with exact truth."""

import logging

import numpy as np
import pytest

from tsoreduce.datamodel import DQ, RampData
from tsoreduce.detector import (apply_linearity, dq_init, fit_ramps, flag_reset_groups, flag_saturation,
                                self_calibrate_linearity, subtract_dark)
from tsoreduce.errors import ReferenceFileError, ShapeError

TG = 0.15904
DNU = np.uint32(DQ.DO_NOT_USE)


def ramp_of(nints=3, ngroups=10, ny=6, nx=8, rate=100.0, bias=1000.0):
    g = np.arange(ngroups, dtype=float)[None, :, None, None]
    data = bias + rate * TG * (g + 1) * np.ones((nints, ngroups, ny, nx))
    return RampData(data.astype(np.float32), meta={"TGROUP": TG})


def test_dq_init_flags_first_last_and_reference_columns():
    r = ramp_of()
    out = dq_init(r)
    assert np.all(out.groupdq[:, 0] & DNU) and np.all(out.groupdq[:, -1] & DNU)
    assert not np.any(out.groupdq[:, 1:-1] & DNU)
    assert np.all(out.pixeldq[:, :4] & np.uint32(DQ.REFERENCE_PIXEL))
    assert not np.any(out.pixeldq[:, 4:])
    assert not np.any(r.groupdq)  # input untouched


def test_dq_init_keeps_groups_for_tiny_ramps(caplog):
    with caplog.at_level(logging.WARNING):
        out = dq_init(ramp_of(ngroups=3))
    assert not np.any(out.groupdq & DNU)
    assert "fewer than 2 usable" in caplog.text


def test_saturation_flags_group_and_later_and_grows():
    r = ramp_of(nints=2, ngroups=10, rate=100.0)
    data = r.data.copy()
    data[1, 6:, 3, 4] = 61000.0  # pixel (3,4) of integration 1 saturates at group 6
    out = flag_saturation(r.replace(data=data), saturation=60000.0, n_pix_grow=1)
    sat = (out.groupdq & np.uint32(DQ.SATURATED)) != 0
    assert np.all(sat[1, 6:, 3, 4]) and not np.any(sat[1, :6, 3, 4])
    assert np.all(out.groupdq[1, 6:, 3, 4] & DNU)
    # the 3x3 neighbourhood is flagged from the same group on, nothing else
    assert np.all(sat[1, 6:, 2:5, 3:6])
    assert sat.sum() == 9 * 4
    assert not np.any(sat[0])


def test_saturation_map_shape_and_nan_means_no_check():
    r = ramp_of()
    with pytest.raises(ShapeError):
        flag_saturation(r, saturation=np.ones((3, 3)))
    m = np.full(r.data.shape[2:], 100.0)  # everything "saturated" ...
    m[0, 0] = np.nan                      # ... except a pixel without a threshold
    out = flag_saturation(r, saturation=m, n_pix_grow=0)
    assert not np.any(out.groupdq[:, :, 0, 0] & np.uint32(DQ.SATURATED))
    assert out.pixeldq[0, 0] & np.uint32(DQ.NO_SAT_CHECK)
    assert np.all(out.groupdq[:, :, 1, 1] & np.uint32(DQ.SATURATED))


def test_reset_drop_and_clipping(caplog):
    r = dq_init(ramp_of(ngroups=20))
    out = flag_reset_groups(r, n_groups=12)
    plane = np.all(out.groupdq[0] & DNU, axis=(1, 2))
    assert plane[:12].all() and not plane[12:19].any() and plane[19]
    assert out.meta["NDROPRST"] == 12
    with caplog.at_level(logging.WARNING):
        out = flag_reset_groups(dq_init(ramp_of(ngroups=8)), n_groups=12)
    assert "dropping 5 instead" in caplog.text
    plane = np.all(out.groupdq[0] & DNU, axis=(1, 2))
    assert plane.tolist() == [True] * 5 + [False, False, True]


def test_linearity_reference_polynomial_recovers_linear_ramps():
    beta = 8e-7
    true = ramp_of(ngroups=12, rate=3000.0, bias=12000.0)
    t = true.data.astype(float)
    raw = (-1 + np.sqrt(1 + 4 * beta * t)) / (2 * beta)   # raw + beta raw^2 = true
    r = true.replace(data=raw.astype(np.float32))
    coeffs = np.zeros((3,) + raw.shape[2:])
    coeffs[1] = 1.0
    coeffs[2] = beta
    coeffs[2, 0, 0] = np.nan
    out = apply_linearity(r, coeffs)
    np.testing.assert_allclose(out.data[..., 1:, :], true.data[..., 1:, :], rtol=2e-6)
    assert out.pixeldq[0, 0] & np.uint32(DQ.NO_LIN_CORR)
    np.testing.assert_array_equal(out.data[:, :, 0, 0], r.data[:, :, 0, 0])
    assert np.all(r.data == raw.astype(np.float32))  # not in place by default
    with pytest.raises(ShapeError):
        apply_linearity(r, np.ones((3, 2, 2)))


def test_self_calibrated_linearity_measures_curvature():
    beta = 8e-7
    rng = np.random.default_rng(1)
    nints, ng, ny, nx = 20, 40, 30, 20
    rate = np.full((ny, nx), 5.0)
    rate[:, 8:12] = rng.uniform(3000, 6000, (ny, 4))
    g = np.arange(ng)[None, :, None, None]
    true = 12000 + rate * TG * (g + 1) + rng.normal(0, 6.0, (nints, ng, ny, nx))
    raw = (-1 + np.sqrt(1 + 4 * beta * true)) / (2 * beta)
    r = dq_init(RampData(raw.astype(np.float32), meta={"TGROUP": TG}))
    coeffs, info = self_calibrate_linearity(r, n_bright=100)
    assert coeffs is not None
    assert info["beta"] == pytest.approx(beta, rel=0.1)
    fixed = fit_ramps(apply_linearity(r, coeffs), read_noise=6.0)
    plain = fit_ramps(r, read_noise=6.0)
    b = rate > 1000
    err_fixed = np.abs(np.median(fixed.data, 0)[b] / rate[b] - 1).mean()
    err_plain = np.abs(np.median(plain.data, 0)[b] / rate[b] - 1).mean()
    assert err_plain > 0.02 and err_fixed < 0.003


def test_self_calibration_refuses_noise():
    r = dq_init(ramp_of(ngroups=4))
    coeffs, info = self_calibrate_linearity(r)
    assert coeffs is None and "usable groups" in info["reason"]


def test_dark_subtraction_first_and_later_integrations():
    r = ramp_of(nints=3, ngroups=5, ny=4, nx=4)
    dark = np.zeros((2, 6, 4, 4), np.float32)
    dark[0] = 10.0
    dark[1] = 3.0
    out = subtract_dark(r.replace(meta={**r.meta, "INTSTART": 1}), dark)
    np.testing.assert_allclose(out.data[0], r.data[0] - 10.0)
    np.testing.assert_allclose(out.data[1:], r.data[1:] - 3.0)
    # a later segment never sees the first-integration dark
    out = subtract_dark(r.replace(meta={**r.meta, "INTSTART": 101}), dark)
    np.testing.assert_allclose(out.data, r.data - 3.0)
    with pytest.raises(ReferenceFileError, match="groups"):
        subtract_dark(r, dark[:, :3])
    with pytest.raises(ReferenceFileError, match="shape"):
        subtract_dark(r, np.zeros((5, 3, 3)))
