"""Interoperation with the STScI pipeline (jwst / stdatamodels, installed beside tsoreduce for tests):
products written by jwst survive ours and come back readable by jwst with values and DQ intact, the
flight (older-layout) x1dints converts to jwst's current layout, and jwst steps run on our files by
path (``Step.call(path)``) with the simulator's reference files as overrides.

CRDS cannot be reached here: the ``offline_stpipe`` fixture sets STPIPE_DISABLE_CRDS_STEPPARS and
replaces stpipe's two CRDS context look-ups, in these tests only (the package never touches stpipe).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from tsoreduce import io
from tsoreduce.datamodel import DQ, IntTimes, SpectraData

dm = pytest.importorskip("stdatamodels.jwst.datamodels")

DATA = Path(__file__).parents[1].parent / "shared" / "data"
X1DINTS = DATA / "wasp39b_miri_lrs_x1dints" / "jw02783-o002_t001_miri_p750l-slitlessprism_x1dints.fits"


def _int_times(n, t0=60000.0):
    rec = np.zeros(n, dtype=[("integration_number", ">i4"), ("int_start_MJD_UTC", ">f8"),
                             ("int_mid_MJD_UTC", ">f8"), ("int_end_MJD_UTC", ">f8"),
                             ("int_start_BJD_TDB", ">f8"), ("int_mid_BJD_TDB", ">f8"),
                             ("int_end_BJD_TDB", ">f8")])
    rec["integration_number"] = np.arange(1, n + 1)
    start = t0 + np.arange(n) * 16.064 / 86400
    for i, name in enumerate(rec.dtype.names[1:]):
        rec[name] = start + (i % 3) * 8.032 / 86400 + (0.0008 if i >= 3 else 0.0)
    return rec


def _lrs_meta(model, nints):
    model.meta.instrument.name = "MIRI"
    model.meta.instrument.detector = "MIRIMAGE"
    model.meta.exposure.type = "MIR_LRS-SLITLESS"
    model.meta.subarray.name = "SLITLESSPRISM"
    model.meta.exposure.nints = nints
    model.meta.exposure.ngroups = 5
    model.meta.exposure.integration_start = 1
    model.meta.exposure.integration_end = nints


def _jwst_x1dints(path, nints=4, nwave=30):
    """An x1dints written by jwst's own code (make_tso_specmodel, as extract_1d does)."""
    pytest.importorskip("jwst")
    from asdf.tags.core.ndarray import asdf_datatype_to_numpy_dtype
    from jwst.datamodels.utils.tso_multispec import make_tso_specmodel

    rng = np.random.default_rng(21)
    cols = dm.SpecModel().schema["properties"]["spec_table"]["datatype"]
    dtype = np.dtype([(c["name"], asdf_datatype_to_numpy_dtype(c["datatype"])) for c in cols])
    specs = []
    for i in range(nints):
        tab = np.zeros(nwave, dtype)
        tab["WAVELENGTH"] = np.linspace(12.0, 5.0, nwave)
        tab["FLUX"] = rng.normal(500.0, 5.0, nwave)
        tab["FLUX_ERROR"] = rng.uniform(1.0, 2.0, nwave)
        tab["DQ"] = np.where(rng.random(nwave) < 0.2, DQ.DO_NOT_USE | DQ.OTHER_BAD_PIXEL, 0)
        tab["DQ"][0] = DQ.REFERENCE_PIXEL  # bit 31: the unsigned path
        s = dm.SpecModel()
        s.spec_table = tab
        specs.append(s)
    tso = make_tso_specmodel(specs)
    times = _int_times(nints)
    for col, src in (("MJD-BEG", "int_start_MJD_UTC"), ("MJD-AVG", "int_mid_MJD_UTC"),
                     ("MJD-END", "int_end_MJD_UTC"), ("TDB-BEG", "int_start_BJD_TDB"),
                     ("TDB-MID", "int_mid_BJD_TDB"), ("TDB-END", "int_end_BJD_TDB")):
        tso.spec_table[col] = times[src]
    tso.spec_table.columns["FLUX"].unit = "DN/s"
    model = dm.TSOMultiSpecModel()
    _lrs_meta(model, nints)
    model.int_times = times
    model.spec.append(tso)
    model.save(str(path))
    return model


def test_jwst_x1dints_through_ours_back_to_jwst(tmp_path):
    """jwst-written x1dints -> our reader -> our writer -> jwst: FLUX, FLUX_ERROR, DQ, WAVELENGTH,
    INT_NUM and the per-row times equal; the table keeps jwst's column order."""
    src = _jwst_x1dints(tmp_path / "jwst_x1dints.fits")
    ours = io.read(tmp_path / "jwst_x1dints.fits")
    t = src.spec[0].spec_table
    assert isinstance(ours, SpectraData) and ours.data.shape == (4, 30) and ours.units == "DN/s"
    np.testing.assert_array_equal(ours.data, t["FLUX"])
    np.testing.assert_array_equal(ours.dq, t["DQ"])
    np.testing.assert_array_equal(ours.int_times.mid_bjd_tdb, src.int_times["int_mid_BJD_TDB"])
    out = io.write_x1dints(tmp_path / "ours_x1dints.fits", ours)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with dm.open(out) as m:
            assert type(m) is dm.TSOMultiSpecModel
            back = m.spec[0].spec_table
            assert back.dtype.names == t.dtype.names
            for col in ("INT_NUM", "WAVELENGTH", "FLUX", "FLUX_ERROR", "DQ", "MJD-AVG", "TDB-BEG",
                        "TDB-MID", "TDB-END"):
                np.testing.assert_array_equal(back[col], t[col], err_msg=col)
            np.testing.assert_array_equal(m.int_times["int_mid_BJD_TDB"], src.int_times["int_mid_BJD_TDB"])
            m.save(str(tmp_path / "resaved_x1dints.fits"))     # no HIERARCH / VerifyWarning on saving
    again = io.read(tmp_path / "resaved_x1dints.fits")
    np.testing.assert_array_equal(again.data, ours.data)
    np.testing.assert_array_equal(again.dq, ours.dq)


def test_jwst_cube_and_ramp_through_ours_back_to_jwst(tmp_path):
    """jwst-written CubeModel (rateints) and RampModel (uncal) -> ours -> jwst keep data and DQ."""
    rng = np.random.default_rng(22)
    cube = dm.CubeModel((3, 416, 72))
    _lrs_meta(cube, 3)
    cube.data = rng.normal(100.0, 5.0, (3, 416, 72)).astype(np.float32)
    cube.err = rng.uniform(1, 2, (3, 416, 72)).astype(np.float32)
    cube.dq = np.where(rng.random((3, 416, 72)) < 0.05, DQ.JUMP_DET | DQ.DO_NOT_USE, 0).astype(np.uint32)
    cube.dq[:, :, :4] |= np.uint32(DQ.REFERENCE_PIXEL)
    cube.int_times = _int_times(3)
    cube.save(str(tmp_path / "j_rateints.fits"))
    ramp = dm.RampModel((2, 5, 416, 72))
    _lrs_meta(ramp, 2)
    ramp.data = rng.normal(1000.0, 10.0, (2, 5, 416, 72)).astype(np.float32)
    ramp.groupdq[0, 3, 10, 10] = DQ.JUMP_DET
    ramp.groupdq[1, 2:, 20, 30] = DQ.SATURATED | DQ.DO_NOT_USE
    ramp.pixeldq[:, :4] = np.uint32(DQ.REFERENCE_PIXEL)
    ramp.int_times = _int_times(2)
    ramp.save(str(tmp_path / "j_uncal.fits"))

    rate = io.read_rateints(tmp_path / "j_rateints.fits")
    r = io.read_uncal(tmp_path / "j_uncal.fits")
    p_rate = io.write_rateints(tmp_path / "o_rateints.fits", rate)
    p_ramp = io.write_uncal(tmp_path / "o_uncal.fits", r)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with dm.open(p_rate) as m:
            assert type(m) is dm.CubeModel
            for name in ("data", "err", "dq"):
                np.testing.assert_array_equal(getattr(m, name), getattr(cube, name), err_msg=name)
        with dm.open(p_ramp) as m:
            assert type(m) is dm.RampModel
            for name in ("data", "groupdq", "pixeldq"):
                np.testing.assert_array_equal(getattr(m, name), getattr(ramp, name), err_msg=name)


def test_provenance_and_long_keys_survive_a_jwst_resave(tmp_path):
    """Provenance and meta keys too long for a FITS keyword live in the ASDF tree (no HIERARCH cards):
    jwst keeps them when it opens and saves our file, and our reader restores them."""
    from tsoreduce.datamodel import RateData

    rate = RateData(np.ones((2, 416, 72), np.float32), meta={"A_LONG_KEYWORD": 5})
    p = io.write_rateints(tmp_path / "p_rateints.fits", rate, provenance={"stage": 1, "config_hash": "abc"})
    with fits.open(p) as h:
        assert not any(len(k) > 8 for k in h[0].header)
        assert h[0].header["TSOSTAGE"] == 1 and h[0].header["TSOCFGH"] == "abc"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with dm.open(p) as m:
            m.save(str(tmp_path / "resaved_rateints.fits"))
    back = io.read(tmp_path / "resaved_rateints.fits")
    assert back.meta["A_LONG_KEYWORD"] == 5
    assert back.meta["TSO STAGE"] == 1 and back.meta["TSO CONFIG_HASH"] == "abc"


@pytest.mark.skipif(not X1DINTS.is_file(), reason=f"flight x1dints not found at {X1DINTS}")
def test_flight_old_layout_x1dints_becomes_current_layout(tmp_path):
    """The flight WASP-39 x1dints (one EXTRACT1D per integration, jwst < 1.17) read by us and written
    in the current layout opens in jwst as a TSOMultiSpecModel with the same fluxes, DQ and times."""
    spec = io.read(X1DINTS)
    out = io.write_x1dints(tmp_path / "w39_x1dints.fits", spec)
    with fits.open(X1DINTS) as h:
        flux4 = np.array(h["EXTRACT1D", 4].data["FLUX"])
        dq4 = np.array(h["EXTRACT1D", 4].data["DQ"])
    with dm.open(out) as m:
        assert type(m) is dm.TSOMultiSpecModel
        tab = m.spec[0].spec_table
        assert tab["FLUX"].shape == (10, 388) and tab.columns["FLUX"].unit == "Jy"
        np.testing.assert_array_equal(tab["FLUX"][3], flux4)
        np.testing.assert_array_equal(tab["DQ"][3], dq4)
        np.testing.assert_array_equal(tab["TDB-MID"], spec.int_times.mid_bjd_tdb)
    back = io.read(out)
    np.testing.assert_array_equal(back.data, spec.data)
    np.testing.assert_array_equal(back.dq, spec.dq)


# ------------------------------------------------------------------------------ jwst steps by path
@pytest.fixture
def offline_stpipe(monkeypatch, tmp_path):
    """stpipe without CRDS: no parameter-reference look-up, no context query (tests only)."""
    pytest.importorskip("jwst")
    from stpipe import crds_client

    monkeypatch.setenv("STPIPE_DISABLE_CRDS_STEPPARS", "True")
    monkeypatch.setenv("CRDS_SERVER_URL", "https://crds.invalid")
    monkeypatch.setenv("CRDS_PATH", str(tmp_path / "no_crds"))
    monkeypatch.setattr(crds_client, "get_context_used", lambda observatory: "offline")
    monkeypatch.setattr(crds_client, "get_svn_version", lambda: "offline")


@pytest.fixture(scope="module")
def small_simulation(tmp_path_factory):
    from tsoreduce.simulate import LRSSimConfig, write_lrs_simulation

    return write_lrs_simulation(LRSSimConfig(nints=4, ngroups=6, seed=11), tmp_path_factory.mktemp("sim"))


def test_jwst_steps_run_on_our_files_by_path(offline_stpipe, small_simulation, tmp_path):
    """``Step.call(path)`` on our products: dq_init with the simulator's MASK on our uncal (the
    reference columns get REFERENCE_PIXEL, nothing else changes; jwst's saved output reads back with
    ours), and white_light on our x1dints (the white flux is the sum of our fluxes)."""
    from jwst.dq_init import DQInitStep
    from jwst.white_light import WhiteLightStep

    uncal = small_simulation["uncal"][0]
    mask = small_simulation["jwst_references"]["mask"]
    ramp = io.read_uncal(uncal)
    res = DQInitStep.call(str(uncal), override_mask=str(mask), save_results=True,
                          output_dir=str(tmp_path))
    assert type(res).__name__ == "RampModel" and res.meta.cal_step.dq_init == "COMPLETE"
    want = ramp.pixeldq.copy()
    want[:, :4] |= np.uint32(DQ.REFERENCE_PIXEL)
    np.testing.assert_array_equal(res.pixeldq, want)
    np.testing.assert_array_equal(res.groupdq, ramp.groupdq)
    np.testing.assert_array_equal(res.data, ramp.data)
    saved = sorted(tmp_path.glob("*dqinitstep*.fits"))
    assert len(saved) == 1
    again = io.read_uncal(saved[0])
    np.testing.assert_array_equal(again.pixeldq, want)
    np.testing.assert_array_equal(again.data, ramp.data)

    rng = np.random.default_rng(23)
    nints = 5
    times = IntTimes(np.arange(1, 6), *(60000.0 + np.arange(5)[None, :] * 1e-4
                                                          + np.arange(6)[:, None] * 1e-5))
    spec = SpectraData(rng.normal(1e3, 1, (nints, 40)), np.ones((nints, 40)), None,
                       np.linspace(12, 5, 40), times, meta={"NINTS": nints})
    x1d = io.write_x1dints(tmp_path / "o_x1dints.fits", spec)
    # the band is given: its default comes from a WAVELENGTHRANGE reference (CRDS)
    wl = WhiteLightStep.call(str(x1d), min_wavelength=4.0, max_wavelength=13.0)
    np.testing.assert_allclose(np.asarray(wl["whitelight_flux"]), spec.data.sum(axis=1), rtol=1e-12)
    np.testing.assert_array_equal(np.asarray(wl["MJD_UTC"]), times.mid_mjd_utc)
    np.testing.assert_array_equal(np.asarray(wl["BJD_TDB"]), times.mid_bjd_tdb)
