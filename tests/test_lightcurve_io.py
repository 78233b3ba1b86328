"""Light-curve tables: tsoreduce ECSV/HDF5 round trip, overwrite protection, readers of the real tables."""

from pathlib import Path

import numpy as np
import pytest

from tsoreduce.datamodel import LightCurves
from tsoreduce.errors import OverwriteError, ProductError
from tsoreduce.io import read_lightcurves, write_lightcurves

DATA = Path(__file__).parents[1].parent / "shared" / "data"
W107 = DATA / "wasp107b_miri_lrs" / "wasp107b_miri_lrs_white_lightcurve.ecsv"
W43 = DATA / "wasp43b_miri_lrs" / "wasp43b_miri_lrs_lightcurves.h5"


def _lc(nchan=4, n=50):
    rng = np.random.default_rng(0)
    flux = 1 + 1e-3 * rng.standard_normal((nchan, n))
    flux[1, 5] = np.nan
    mask = np.zeros(n, bool)
    mask[:3] = True
    wl = np.linspace(5.5, 11.5, nchan)
    return LightCurves(time=60000 + np.arange(n) * 1e-4, flux=flux, err=np.full((nchan, n), 1e-3), wavelength=wl,
                       wavelength_lower=wl - 0.5, wavelength_upper=wl + 0.5, white_flux=flux.mean(0),
                       white_err=np.full(n, 5e-4), mask=mask,
                       regressors={"trace_x": rng.standard_normal(n), "trace_width": rng.standard_normal(n)},
                       meta={"target": "TEST-1b", "nested": {"a": 1}})


@pytest.mark.parametrize("suffix", [".ecsv", ".h5"])
def test_round_trip(tmp_path, suffix):
    lc = _lc()
    p = write_lightcurves(tmp_path / f"lc{suffix}", lc)
    back = read_lightcurves(p)
    for k in ("time", "flux", "err", "wavelength", "wavelength_lower", "wavelength_upper", "white_flux",
              "white_err", "mask"):
        np.testing.assert_array_equal(getattr(back, k), getattr(lc, k), err_msg=k)
    assert back.regressors.keys() == lc.regressors.keys()
    for k in lc.regressors:
        np.testing.assert_array_equal(back.regressors[k], lc.regressors[k])
    assert back.meta["target"] == "TEST-1b" and back.meta["_source_path"] == str(p)
    # never overwrite an existing file silently, and never the file just read
    with pytest.raises(OverwriteError):
        write_lightcurves(p, lc)
    with pytest.raises(OverwriteError):
        write_lightcurves(p, back, overwrite=True)
    write_lightcurves(p, lc, overwrite=True)
    assert not [f for f in tmp_path.iterdir() if ".tmp" in f.name]


def test_round_trip_white_only(tmp_path):
    lc = LightCurves(time=np.arange(10.0), white_flux=np.ones(10), white_err=np.ones(10))
    back = read_lightcurves(write_lightcurves(tmp_path / "w.ecsv", lc))
    assert back.nchan == 0 and np.all(back.white_flux == 1)


def test_bad_files(tmp_path):
    with pytest.raises(ProductError, match="not found"):
        read_lightcurves(tmp_path / "missing.ecsv")
    bad = tmp_path / "bad.ecsv"
    bad.write_text("# %ECSV 1.0\n# ---\n# datatype:\n# - {name: a, datatype: float64}\n# schema: astropy-2.0\na\n1.0\n")
    with pytest.raises(ProductError, match="unrecognised"):
        read_lightcurves(bad)
    with pytest.raises(ValueError):
        write_lightcurves(tmp_path / "x.txt", _lc())


def test_read_eureka_wasp107b():
    if not W107.exists():
        pytest.skip(f"real data not available at {W107}")
    lc = read_lightcurves(W107)
    assert lc.nints == 4096 and lc.nchan == 0
    assert 59963.79 < lc.time[0] < lc.time[-1] < 59964.2
    assert np.nanmedian(np.diff(lc.time)) * 86400 == pytest.approx(6.52, abs=0.05)
    assert set(lc.regressors) == {"trace_x", "trace_width"}
    assert lc.meta["white_wavelength_lower"] == 5.0 and lc.meta["white_wavelength_upper"] == 10.5


def test_read_sparta_wasp43b():
    if not W43.exists():
        pytest.skip(f"real data not available at {W43}")
    lc = read_lightcurves(W43)
    assert lc.nints == 9216 and lc.nchan == 14
    assert lc.mask.sum() == 790
    np.testing.assert_allclose(lc.wavelength_lower, np.arange(5.0, 12.0, 0.5))
    assert (lc.time[-1] - lc.time[0]) * 24 == pytest.approx(26.5, abs=0.2)
    assert np.all(np.isnan(lc.flux[:, lc.mask]))
    # the published file's centroid/width columns are NaN: no usable regressors
    assert lc.regressors == {}


def test_units_written(tmp_path):
    """Flux, errors and white light carry their unit (dimensionless when normalised, the spectral unit
    otherwise); wavelengths in um, time in days, trace regressors in pixels."""
    import h5py
    from astropy.table import Table

    lc = _lc()
    t = Table.read(write_lightcurves(tmp_path / "n.ecsv", lc), format="ascii.ecsv")
    assert t["time"].unit == "d" and t["reg_trace_x"].unit == "pix"
    assert t["flux"].unit.physical_type == "dimensionless" and t["white_err"].unit.physical_type == "dimensionless"
    lc.meta["flux_units"] = "Jy"
    t = Table.read(write_lightcurves(tmp_path / "j.ecsv", lc), format="ascii.ecsv")
    assert t["flux"].unit == "Jy" and t["err"].unit == "Jy" and t["white_flux"].unit == "Jy"
    with h5py.File(write_lightcurves(tmp_path / "j.h5", lc), "r") as f:
        assert f["flux"].attrs["units"] == "Jy" and f["white_err"].attrs["units"] == "Jy"
        assert f["wavelength"].attrs["units"] == "um" and f["regressors/trace_width"].attrs["units"] == "pix"
    assert read_lightcurves(tmp_path / "j.ecsv").flux.shape == lc.flux.shape
