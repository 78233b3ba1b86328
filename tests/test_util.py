"""The small shared utilities of tsoreduce._util: robust scatter, the NaN-warning filter and the
dataclass field documentation (atomic writes are tested in test_faults.py / test_pipeline.py)."""

import dataclasses
import warnings

import numpy as np
import pytest
from astropy.stats import mad_std

from tsoreduce import _util


def test_robust_std_recovers_sigma_despite_outliers():
    rng = np.random.default_rng(5)
    x = rng.normal(3.0, 2.0, 20000)
    x[:400] = 1e4                                         # 2 % wild outliers
    s = _util.robust_std(x)
    print(f"\nrobust_std of N(3, 2) with 2 % outliers at 1e4: {s:.4f} (np.std {np.std(x):.1f})")
    assert s == pytest.approx(2.0, rel=0.05)              # 20000 points: ~1 % scatter, +2 % bias
    assert np.std(x) > 100                                # what a plain std would say
    assert _util.MAD_TO_SIGMA == pytest.approx(mad_std(np.array([-1.0, 1.0])))


def test_robust_std_axis_and_nan():
    a = np.array([[1.0, 2.0, np.nan, 4.0], [np.nan] * 4])
    out = _util.robust_std(a, axis=1)
    assert out.shape == (2,) and np.isfinite(out[0]) and np.isnan(out[1])


def test_quiet_nan_warnings_silences_and_restores():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with _util.quiet_nan_warnings():
            np.nanmedian(np.full(3, np.nan))
        assert not caught
        np.nanmedian(np.full(3, np.nan))                 # filter restored outside the block
        assert any(issubclass(w.category, RuntimeWarning) for w in caught)


def test_document_fields_writes_numpydoc_parameters():
    validate = pytest.importorskip("numpydoc.validate")

    @_util.document_fields
    @dataclasses.dataclass
    class Cfg:
        """A configuration.

        Raises
        ------
        ValueError
            Never.
        """

        nints: int = _util.field_doc(5, "integrations", min=1)
        rate: float = _util.field_doc(0.25, "rate, DN/s")

    doc = Cfg.__doc__
    assert doc.index("Parameters") < doc.index("Raises")
    assert "nints : int, default 5\n    integrations" in doc
    assert dataclasses.fields(Cfg)[0].metadata["min"] == 1
    import sys
    import types
    mod = types.ModuleType("tsoreduce_doc_probe")
    Cfg.__module__ = mod.__name__
    mod.Cfg = Cfg
    sys.modules[mod.__name__] = mod
    try:
        errors = [c for c, _ in validate.validate(f"{mod.__name__}.Cfg")["errors"]]
    finally:
        del sys.modules[mod.__name__]
    assert not {"PR01", "PR02", "GL08"} & set(errors)
