"""Containers: shape validation, DQ bit values, selection and concatenation of segments."""

import numpy as np
import pytest

from tsoreduce.datamodel import (DQ, IntTimes, LightCurves, RampData, RateData, SpectraData,
                                 concatenate, dq_has)
from tsoreduce.errors import ShapeError


def _times(n, start=0):
    i = np.arange(start, start + n)
    return IntTimes(i + 1, 60000 + i * 1e-3, 60000 + (i + 0.5) * 1e-3, 60000 + (i + 1) * 1e-3)


def test_dq_bits_are_jwst_values():
    # JWST "Data Quality Flags" table
    assert (DQ.DO_NOT_USE, DQ.SATURATED, DQ.JUMP_DET, DQ.DROPOUT) == (1, 2, 4, 8)
    assert DQ.HOT == 2048 and DQ.NONLINEAR == 65536 and DQ.REFERENCE_PIXEL == 2 ** 31
    dq = np.array([0, 1, 5, 2 ** 31], np.uint32)
    assert dq_has(dq, DQ.JUMP_DET).tolist() == [False, False, True, False]
    assert dq_has(dq, DQ.DO_NOT_USE | DQ.REFERENCE_PIXEL).tolist() == [False, True, True, True]


def test_ramp_shapes_validated():
    r = RampData(np.zeros((2, 3, 4, 5)))
    assert r.groupdq.dtype == np.uint32 and r.pixeldq.shape == (4, 5) and r.ngroups == 3
    with pytest.raises(ShapeError, match="groupdq"):
        RampData(np.zeros((2, 3, 4, 5)), groupdq=np.zeros((2, 3, 4, 4)))
    with pytest.raises(ShapeError, match="4-D"):
        RampData(np.zeros((3, 4, 5)))
    with pytest.raises(ShapeError, match="int_times"):
        RampData(np.zeros((2, 3, 4, 5)), int_times=_times(3))


def test_rate_and_spectra_shapes_validated():
    with pytest.raises(ShapeError, match="wavelength"):
        RateData(np.zeros((2, 4, 5)), wavelength=np.zeros((5, 4)))
    s = SpectraData(np.ones((3, 7)), wavelength=np.arange(7.0), aux={"trace_x": [1, 2, 3]})
    assert s.nwave == 7 and s.err.shape == (3, 7)
    with pytest.raises(ShapeError, match="aux"):
        SpectraData(np.ones((3, 7)), aux={"trace_x": [1, 2]})
    with pytest.raises(ShapeError, match="flux"):
        LightCurves(np.arange(4.0), flux=np.ones((2, 5)))


def test_select_and_concatenate_segments():
    a = RateData(np.full((3, 4, 5), 1.0), int_times=_times(3), meta={"INTSTART": 1, "NINTS": 5})
    b = RateData(np.full((2, 4, 5), 2.0), int_times=_times(2, 3), meta={"INTSTART": 4, "NINTS": 5})
    c = concatenate([a, b])
    assert c.nints == 5 and c.meta["INTSTART"] == 1 and c.meta["INTEND"] == 5
    assert np.array_equal(c.int_times.integration_number, np.arange(1, 6))
    assert c.data[3:].min() == 2.0
    sub = c.select_integrations([0, 4])
    assert sub.nints == 2 and sub.int_times.integration_number.tolist() == [1, 5]
    with pytest.raises(ShapeError):
        concatenate([a, RateData(np.zeros((1, 4, 6)))])


def test_steps_do_not_share_arrays_after_copy():
    a = RateData(np.ones((2, 3, 4)))
    b = a.copy()
    b.data[0, 0, 0] = 5
    assert a.data[0, 0, 0] == 1
