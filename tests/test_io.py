"""Tests of tsoreduce.io.fits_products: JWST layouts, lossless round trips, real products, bad inputs."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from tsoreduce import io
from tsoreduce.datamodel import DQ, IntTimes, RampData, RateData, SpectraData, dq_has
from tsoreduce.errors import (EmptyDataError, ShapeError, MissingExtensionError, OverwriteError, ProductError,
                              TruncatedFileError, WrongInstrumentError, WrongSubarrayError)
from tsoreduce.io import IntTimesMissingWarning, IntTimesReconstructedWarning

DATA = Path(__file__).parents[1].parent / "shared" / "data"
MIRISIM = DATA / "mirisim_ngts10"
RATEINTS = MIRISIM / "ERS_NGTS10_2022_new_drift_041_rateints.fits"
CALINTS = MIRISIM / "ERS_NGTS10_2022_new_drift_041_calints.fits"
X1DINTS = DATA / "wasp39b_miri_lrs_x1dints" / "jw02783-o002_t001_miri_p750l-slitlessprism_x1dints.fits"

needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"shared real data not found at {DATA}")

NROWS, NCOLS = 416, 72


def _times(n, start=1, t0=60000.0):
    num = np.arange(start, start + n)
    st = t0 + (num - 1) * 16.064 / 86400
    return IntTimes(num, st, st + 8 / 86400, st + 16 / 86400, st - 0.003, st - 0.003 + 8 / 86400,
                    st - 0.003 + 16 / 86400)


META = {"NGROUPS": 6, "NINTS": 3, "TFRAME": 0.15904, "TGROUP": 0.15904, "READPATT": "FASTR1",
        "EXPSTART": 59999.5, "TARG_RA": 217.3266, "TARG_DEC": -3.4445, "TARGNAME": "WASP-39",
        "EXSEGNUM": 1, "EXSEGTOT": 1, "LONGKEYWORD": 12.25, "_private": "not written"}


def _ramp(rng, nints=3, ngroups=6, start=1, meta=None):
    data = rng.normal(1000.0, 30.0, (nints, ngroups, NROWS, NCOLS)).astype(np.float32)
    gdq = np.zeros(data.shape, np.uint32)
    gdq[0, 2, 10, 20] = DQ.JUMP_DET
    gdq[1, 4:, 200, 36] = DQ.SATURATED
    pdq = np.zeros((NROWS, NCOLS), np.uint32)
    pdq[:, :4] = DQ.REFERENCE_PIXEL  # bit 31: checks the unsigned round trip
    pdq[5, 5] = DQ.DEAD | DQ.DO_NOT_USE
    m = dict(META, INTSTART=start, INTEND=start + nints - 1, NGROUPS=ngroups)
    m.update(meta or {})
    return RampData(data, gdq, pdq, None, _times(nints, start), m)


def _rate(rng, nints=3, units="DN/s", wavelength=True):
    shape = (nints, NROWS, NCOLS)
    dq = np.zeros(shape, np.uint32)
    dq[:, :, :4] = DQ.REFERENCE_PIXEL | DQ.NON_SCIENCE
    dq[1, 100, 40] = DQ.JUMP_DET
    wave = np.linspace(14, 4, NROWS, dtype=np.float32)[:, None].repeat(NCOLS, 1) if wavelength else None
    return RateData(rng.normal(50, 3, shape), rng.uniform(1, 2, shape), dq,
                    rng.uniform(0, 1, shape), rng.uniform(0, 1, shape), wave, _times(nints),
                    dict(META), units)


def _spectra(rng, nints=4, nwave=50, units="DN/s"):
    return SpectraData(rng.normal(1e4, 10, (nints, nwave)), rng.uniform(1, 2, (nints, nwave)),
                       np.where(rng.random((nints, nwave)) < 0.1, DQ.DO_NOT_USE | DQ.REFERENCE_PIXEL, 0),
                       np.linspace(14, 5, nwave), _times(nints),
                       {"trace_x": rng.normal(36, 0.1, nints), "trace_width": rng.normal(1.2, 0.01, nints)},
                       dict(META), units)


def _same_times(a: IntTimes, b: IntTimes):
    for name in ("integration_number", "start_bjd_tdb", "mid_bjd_tdb", "end_bjd_tdb",
                 "start_mjd_utc", "mid_mjd_utc", "end_mjd_utc"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert a.reconstructed == b.reconstructed


def _same_meta(written: dict, read: dict):
    for k, v in written.items():
        if k.startswith("_"):
            assert k not in read or k == "_source_path"
        else:
            assert read[k] == v, k


# ---------------------------------------------------------------------------------- round trips
def test_uncal_round_trip_and_layout(tmp_path):
    rng = np.random.default_rng(1)
    ramp = _ramp(rng)
    path = io.write_uncal(tmp_path / "x_uncal.fits", ramp, provenance={"version": "test", "config": "a: 1\nb: 2"})
    with fits.open(path) as h:
        assert [x.name for x in h] == ["PRIMARY", "SCI", "PIXELDQ", "GROUPDQ", "INT_TIMES", "ASDF"]
        assert h[0].header["DATAMODL"] == "RampModel"
        # no HIERARCH cards: long meta keys live in the ASDF tree
        assert all(len(k) <= 8 for k in h[0].header) and "LONGKEYWORD" not in h[0].header
        assert h["SCI"].data.dtype == np.dtype(">f4") and h["SCI"].data.shape == (3, 6, NROWS, NCOLS)
        assert h["GROUPDQ"].data.dtype == np.uint8
        assert h["PIXELDQ"].data.dtype == np.uint32
        assert h["SCI"].header["BUNIT"] == "DN"
        assert tuple(h["INT_TIMES"].columns.names) == io.INT_TIMES_COLUMNS
        for key in ("INSTRUME", "DETECTOR", "EXP_TYPE", "SUBARRAY", "READPATT", "NGROUPS", "NINTS",
                    "NFRAMES", "TFRAME", "TGROUP", "INTSTART", "INTEND", "EXSEGNUM", "EXSEGTOT", "TELESCOP"):
            assert key in h[0].header, key
        assert "_private" not in h[0].header
        assert "config: b: 2" in str(h[0].header["HISTORY"])
    back = io.read(path)
    assert isinstance(back, RampData)
    np.testing.assert_array_equal(back.data, ramp.data)
    np.testing.assert_array_equal(back.groupdq, ramp.groupdq)
    np.testing.assert_array_equal(back.pixeldq, ramp.pixeldq)
    assert back.err is None
    _same_times(back.int_times, ramp.int_times)
    _same_meta(ramp.meta, back.meta)
    assert back.meta["_source_path"] == str(path.resolve())
    assert back.meta["TSO VERSION"] == "test" and back.meta["LONGKEYWORD"] == 12.25


def test_uncal_integration_range_reads_only_those(tmp_path):
    """read_uncal(integrations=(a, b)) returns integrations a..b-1 of the file (data, GROUPDQ, ERR,
    INT_TIMES, INTSTART/INTEND) -- used by Stage 1 to process a segment in chunks."""
    rng = np.random.default_rng(7)
    ramp = _ramp(rng, nints=5, ngroups=4)
    ramp = ramp.replace(data=np.round(ramp.data), err=np.full(ramp.data.shape, 2.0, np.float32))
    path = io.write_uncal(tmp_path / "r_uncal.fits", ramp)
    with fits.open(path) as h:                        # flight-like uint16 SCI (BZERO scaling)
        h["SCI"].data = np.asarray(ramp.data, np.uint16)
        h.writeto(tmp_path / "r16_uncal.fits")
    for p in (path, tmp_path / "r16_uncal.fits"):
        full = io.read_uncal(p)
        part = io.read_uncal(p, integrations=(1, 4))
        np.testing.assert_array_equal(part.data, full.data[1:4])
        np.testing.assert_array_equal(part.groupdq, full.groupdq[1:4])
        np.testing.assert_array_equal(part.err, full.err[1:4])
        np.testing.assert_array_equal(part.int_times.mid_bjd_tdb, full.int_times.mid_bjd_tdb[1:4])
        start = full.meta["INTSTART"]
        assert (part.meta["INTSTART"], part.meta["INTEND"]) == (start + 1, start + 3)
    with pytest.raises(ShapeError, match="outside"):
        io.read_uncal(path, integrations=(3, 9))
    with pytest.raises(ShapeError, match="outside"):
        io.read_uncal(path, integrations=(2, 2))


def test_uncal_uint16_sci_err_and_wide_groupdq(tmp_path):
    rng = np.random.default_rng(2)
    ramp = _ramp(rng, nints=2, ngroups=3)
    ramp = ramp.replace(data=np.round(ramp.data), err=np.full(ramp.data.shape, 3.0, np.float32))
    gdq = ramp.groupdq.copy()
    gdq[0, 0, 0, 0] = DQ.UNRELIABLE_ERROR | DQ.JUMP_DET  # 256 does not fit GROUPDQ's byte -> GDQ_HIGH
    ramp = ramp.replace(groupdq=gdq)
    path = io.write_uncal(tmp_path / "w_uncal.fits", ramp)
    with fits.open(path) as h:
        assert h["GROUPDQ"].data.dtype == np.uint8 and h["GROUPDQ"].data[0, 0, 0, 0] == DQ.JUMP_DET
        assert h["GDQ_HIGH"].data[0, 0, 0, 0] == DQ.UNRELIABLE_ERROR and h[0].header["GDQHIGH"] == 1
        assert "ERR" in h
    back = io.read_uncal(path)
    np.testing.assert_array_equal(back.groupdq, gdq)
    np.testing.assert_array_equal(back.err, ramp.err)
    # flight uncal SCI is uint16: accepted and converted to float32 DN
    with fits.open(path) as h:
        h["SCI"].data = np.asarray(ramp.data, np.uint16)
        h.writeto(tmp_path / "u16_uncal.fits")
    with fits.open(tmp_path / "u16_uncal.fits") as h:
        assert h["SCI"].data.dtype.kind == "u"
    back16 = io.read_uncal(tmp_path / "u16_uncal.fits")
    assert back16.data.dtype == np.float32
    np.testing.assert_array_equal(back16.data, ramp.data)


@pytest.mark.parametrize("kind", ["rateints", "calints"])
def test_rate_round_trip(tmp_path, kind):
    rng = np.random.default_rng(3)
    rate = _rate(rng, units="MJy/sr" if kind == "calints" else "DN/s", wavelength=kind == "calints")
    path = getattr(io, f"write_{kind}")(tmp_path / f"x_{kind}.fits", rate)
    with fits.open(path) as h:
        names = [x.name for x in h]
        assert names[:6] == ["PRIMARY", "SCI", "ERR", "DQ", "VAR_POISSON", "VAR_RNOISE"]
        assert "INT_TIMES" in names and (("WAVELENGTH" in names) == (kind == "calints"))
        assert h["SCI"].header["BUNIT"] == rate.units
        assert h["DQ"].data.dtype == np.uint32
    back = io.read(path)
    assert isinstance(back, RateData) and back.units == rate.units
    for name in ("data", "err", "dq", "var_poisson", "var_rnoise"):
        np.testing.assert_array_equal(getattr(back, name), getattr(rate, name), err_msg=name)
    if kind == "calints":
        np.testing.assert_array_equal(back.wavelength, rate.wavelength)
    else:
        assert back.wavelength is None
    assert back.meta[io.fits_products.PRODUCT_KEYWORD] == kind
    _same_times(back.int_times, rate.int_times)
    _same_meta(rate.meta, back.meta)


def test_x1dints_round_trip(tmp_path):
    rng = np.random.default_rng(4)
    spec = _spectra(rng, units="Jy")
    path = io.write_x1dints(tmp_path / "s_x1dints.fits", spec)
    with fits.open(path) as h:
        assert [x.name for x in h] == ["PRIMARY", "EXTRACT1D", "INT_TIMES", "TSO_AUX", "ASDF"]
        assert h[0].header["DATAMODL"] == "TSOMultiSpecModel"
        tab = h["EXTRACT1D"]
        assert tab.data.shape == (4,) and tab.data["FLUX"].shape == (4, 50)
        assert tab.columns["FLUX"].unit == "Jy" and tab.columns["WAVELENGTH"].unit == "um"
        assert tab.columns.names[:4] == ["INT_NUM", "WAVELENGTH", "FLUX", "FLUX_ERROR"]
        np.testing.assert_array_equal(tab.data["INT_NUM"], spec.int_times.integration_number)
        np.testing.assert_array_equal(tab.data["TDB-MID"], spec.int_times.mid_bjd_tdb)
    back = io.read(path)
    assert isinstance(back, SpectraData) and back.units == "Jy"
    for name in ("data", "err", "dq", "wavelength"):
        np.testing.assert_array_equal(getattr(back, name), getattr(spec, name), err_msg=name)
    assert set(back.aux) == set(spec.aux)
    for k in spec.aux:
        np.testing.assert_array_equal(back.aux[k], spec.aux[k])
    _same_times(back.int_times, spec.int_times)
    _same_meta(spec.meta, back.meta)
    # per-integration wavelengths (2-D) also survive
    wave2 = spec.wavelength[None, :] + 0.01 * np.arange(4)[:, None]
    p2 = io.write_x1dints(tmp_path / "s2_x1dints.fits", spec.replace(wavelength=wave2, units="DN/s"))
    back2 = io.read_x1dints(p2)
    np.testing.assert_array_equal(back2.wavelength, wave2)
    assert back2.units == "DN/s"


def test_x1dints_single_table_layout(tmp_path):
    """jwst >= 1.17 writes one EXTRACT1D table with a row per integration and vector columns."""
    rng = np.random.default_rng(13)
    nints, nwave = 3, 40
    flux = rng.normal(0.01, 1e-4, (nints, nwave))
    wave = np.tile(np.linspace(14, 5, nwave), (nints, 1))
    dq = np.zeros((nints, nwave), np.uint32)
    dq[1, 5] = DQ.DO_NOT_USE
    cols = [fits.Column(name="WAVELENGTH", format=f"{nwave}D", unit="um", array=wave),
            fits.Column(name="FLUX", format=f"{nwave}D", unit="Jy", array=flux),
            fits.Column(name="FLUX_ERROR", format=f"{nwave}D", unit="Jy", array=flux * 0.01),
            fits.Column(name="DQ", format=f"{nwave}J", bzero=2147483648, array=dq)]
    ph = fits.Header({"INSTRUME": "MIRI", "EXP_TYPE": "MIR_LRS-SLITLESS", "DATAMODL": "TSOMultiSpecModel"})
    fits.HDUList([fits.PrimaryHDU(header=ph), io.int_times.int_times_hdu(_times(nints)),
                  fits.BinTableHDU.from_columns(cols, name="EXTRACT1D")]).writeto(tmp_path / "new_x1dints.fits")
    spec = io.read(tmp_path / "new_x1dints.fits")
    assert isinstance(spec, SpectraData) and spec.data.shape == (nints, nwave) and spec.units == "Jy"
    np.testing.assert_array_equal(spec.data, flux)
    np.testing.assert_array_equal(spec.dq, dq)
    np.testing.assert_array_equal(spec.wavelength, wave[0])


def test_read_autodetects_without_suffix(tmp_path):
    rng = np.random.default_rng(5)
    io.write_rateints(tmp_path / "a.fits", _rate(rng, wavelength=False))
    io.write_x1dints(tmp_path / "b.fits", _spectra(rng))
    assert io.product_type(tmp_path / "a.fits") == "rateints"
    assert io.product_type(tmp_path / "b.fits") == "x1dints"
    # strip our TSOPROD/DATAMODL keywords: the HDU structure still decides
    for name, kind in (("a.fits", "rateints"), ("b.fits", "x1dints")):
        with fits.open(tmp_path / name) as h:
            del h[0].header["TSOPROD"]
            del h[0].header["DATAMODL"]
            h.writeto(tmp_path / ("bare_" + name))
        assert io.product_type(tmp_path / ("bare_" + name)) == kind


def test_products_without_times_wavelength_and_ascii_headers(tmp_path):
    rng = np.random.default_rng(12)
    rate = _rate(rng, wavelength=False).replace(int_times=None)
    prov = {"config": "wavelength: 5\u201312 \u00b5m  # range\n\tbins: 10", "version": "0.1.0",
            "config_hash": "0123456789abcdef" * 4, "stage": 2, "extra": {"nested": 1}}
    p = io.write_rateints(tmp_path / "nt_rateints.fits", rate, provenance=prov)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a product written without times reads back quietly
        back = io.read_rateints(p)
    assert back.int_times is None and back.wavelength is None
    hist = "\n".join(fits.getheader(p)["HISTORY"])
    assert "\\u2013" in hist and "\\xb5m" in hist and "bins: 10" in hist  # escaped, never lost
    assert "extra: {'nested': 1}" in hist
    meta = io.read_rateints(p).meta
    # a long single-line value stays one keyword (FITS long-string CONTINUE cards)
    assert meta["TSO CONFIG_HASH"] == "0123456789abcdef" * 4
    assert meta["TSO STAGE"] == 2 and meta["TSO VERSION"] == "0.1.0"
    spec = _spectra(rng).replace(wavelength=None)
    back = io.read_x1dints(io.write_x1dints(tmp_path / "nw_x1dints.fits", spec))
    assert back.wavelength is None
    # a foreign file with an empty INT_TIMES and no EXPSTART: warned, times None
    with fits.open(p) as h:
        del h["INT_TIMES"].header["TIMENONE"]
        del h[0].header["EXPSTART"]
        h.writeto(tmp_path / "foreign_rateints.fits")
    with pytest.warns(IntTimesMissingWarning, match="EXPSTART"):
        assert io.read_rateints(tmp_path / "foreign_rateints.fits").int_times is None


# ---------------------------------------------------------------------------------- overwrite / atomic
def test_overwrite_rules_and_atomicity(tmp_path, monkeypatch):
    rng = np.random.default_rng(6)
    rate = _rate(rng)
    path = io.write_rateints(tmp_path / "r_rateints.fits", rate)
    with pytest.raises(OverwriteError):
        io.write_rateints(path, rate)
    io.write_rateints(path, rate, overwrite=True)
    back = io.read_rateints(path)
    with pytest.raises(OverwriteError, match="read from"):
        io.write_rateints(path, back, overwrite=True)
    # a failing write leaves the existing file untouched and no temporary file behind
    before = path.read_bytes()

    def boom(self, *a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(fits.HDUList, "writeto", boom)
    with pytest.raises(RuntimeError):
        io.write_rateints(path, rate, overwrite=True)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["r_rateints.fits"]


# ---------------------------------------------------------------------------------- segments
def test_read_segments_orders_by_intstart(tmp_path):
    rng = np.random.default_rng(7)
    segs = [_ramp(rng, nints=2, ngroups=4, start=s, meta={"NINTS": 6}) for s in (1, 3, 5)]
    # names deliberately out of time order: seg001 holds integrations 5-6
    for name, seg in zip(("seg002", "seg003", "seg001"), segs):
        io.write_uncal(tmp_path / f"jw_{name}_uncal.fits", seg)
    joined = io.read_segments(str(tmp_path / "jw_seg*_uncal.fits"))
    np.testing.assert_array_equal(joined.int_times.integration_number, np.arange(1, 7))
    np.testing.assert_array_equal(joined.data, np.concatenate([s.data for s in segs]))
    assert joined.meta["INTSTART"] == 1 and joined.meta["INTEND"] == 6 and joined.meta["NINTS"] == 6
    out = io.write_uncal(tmp_path / "joined_uncal.fits", joined)
    assert io.read_uncal(out).nints == 6
    with pytest.raises(OverwriteError):
        io.write_uncal(tmp_path / "jw_seg001_uncal.fits", joined, overwrite=True)


def test_segment_with_whole_exposure_int_times(tmp_path):
    """A segment may carry the exposure's whole INT_TIMES table: rows INTSTART..INTEND are selected."""
    rng = np.random.default_rng(14)
    seg = _ramp(rng, nints=2, ngroups=4, start=3, meta={"NINTS": 6})
    p = io.write_uncal(tmp_path / "s2_uncal.fits", seg)
    whole = _times(6)
    with fits.open(p) as h:
        h["INT_TIMES"] = io.int_times.int_times_hdu(whole)
        h.writeto(tmp_path / "whole_uncal.fits")
    back = io.read_uncal(tmp_path / "whole_uncal.fits")
    np.testing.assert_array_equal(back.int_times.integration_number, [3, 4])
    np.testing.assert_array_equal(back.int_times.mid_bjd_tdb, whole.mid_bjd_tdb[2:4])
    assert not back.int_times.reconstructed
    # a table that does not hold this segment's integrations: rebuilt from EXPSTART, with a warning
    with fits.open(p) as h:
        h["INT_TIMES"] = io.int_times.int_times_hdu(_times(3, start=10))
        h.writeto(tmp_path / "other_uncal.fits")
    with pytest.warns(IntTimesReconstructedWarning):
        t = io.read_uncal(tmp_path / "other_uncal.fits").int_times
    np.testing.assert_array_equal(t.integration_number, [3, 4])
    # EXPSTART + 2 cycles of (4 groups + 1 reset) frames
    assert (t.start_mjd_utc[0] - META["EXPSTART"]) * 86400 == pytest.approx(2 * 5 * 0.15904, abs=1e-4)


def test_read_segments_rejects_inconsistent(tmp_path):
    rng = np.random.default_rng(8)
    a = _ramp(rng, nints=2, ngroups=4, start=1)
    io.write_uncal(tmp_path / "a_uncal.fits", a)
    io.write_uncal(tmp_path / "b_uncal.fits", _ramp(rng, nints=2, ngroups=5, start=3))
    with pytest.raises(ProductError, match="NGROUPS"):
        io.read_segments([tmp_path / "a_uncal.fits", tmp_path / "b_uncal.fits"])
    io.write_uncal(tmp_path / "c_uncal.fits", _ramp(rng, nints=2, ngroups=4, start=3,
                                                     meta={"EXP_TYPE": "MIR_IMAGE"}))
    with pytest.raises(ProductError, match="EXP_TYPE"):
        io.read_segments([tmp_path / "a_uncal.fits", tmp_path / "c_uncal.fits"], allowed_exp_types=None)
    io.write_uncal(tmp_path / "d_uncal.fits", _ramp(rng, nints=2, ngroups=4, start=2))
    with pytest.raises(ProductError, match="overlapping"):
        io.read_segments([tmp_path / "a_uncal.fits", tmp_path / "d_uncal.fits"])
    with pytest.raises(ProductError, match="no file matches"):
        io.read_segments(str(tmp_path / "nothing*.fits"))
    io.write_rateints(tmp_path / "e_rateints.fits", _rate(rng))
    with pytest.raises(ProductError, match="different product types"):
        io.read_segments([tmp_path / "a_uncal.fits", tmp_path / "e_rateints.fits"])


# ---------------------------------------------------------------------------------- bad inputs
@pytest.fixture
def good_rateints(tmp_path):
    return io.write_rateints(tmp_path / "good_rateints.fits", _rate(np.random.default_rng(9), wavelength=False))


def _edit(src, dst, fn):
    with fits.open(src) as h:
        fn(h)
        h.writeto(dst)
    return dst


def test_bad_instrument_and_exp_type(tmp_path, good_rateints):
    p = _edit(good_rateints, tmp_path / "nircam_rateints.fits",
              lambda h: h[0].header.__setitem__("INSTRUME", "NIRCAM"))
    with pytest.raises(WrongInstrumentError, match="INSTRUME = 'NIRCAM'") as e:
        io.read(p)
    assert e.value.path == str(p)
    p = _edit(good_rateints, tmp_path / "noinst_rateints.fits", lambda h: h[0].header.remove("INSTRUME"))
    with pytest.raises(WrongInstrumentError, match="no INSTRUME"):
        io.read_rateints(p)
    p = _edit(good_rateints, tmp_path / "img_rateints.fits",
              lambda h: h[0].header.__setitem__("EXP_TYPE", "MIR_IMAGE"))
    with pytest.raises(WrongInstrumentError, match="EXP_TYPE = 'MIR_IMAGE'"):
        io.read_rateints(p)
    assert io.read_rateints(p, allowed_exp_types=["MIR_IMAGE"]).meta["EXP_TYPE"] == "MIR_IMAGE"
    assert io.read_rateints(p, allowed_exp_types=None).nints == 3


def test_bad_subarray(tmp_path, good_rateints):
    def cut(h):
        for name in ("SCI", "ERR", "DQ", "VAR_POISSON", "VAR_RNOISE"):
            h[name].data = h[name].data[:, :256]
    p = _edit(good_rateints, tmp_path / "small_rateints.fits", cut)
    with pytest.raises(WrongSubarrayError, match="256 rows x 72 columns"):
        io.read_rateints(p)
    assert io.read_rateints(p, expected_shape=None).data.shape == (3, 256, 72)
    p = _edit(good_rateints, tmp_path / "sub_rateints.fits",
              lambda h: h[0].header.__setitem__("SUBARRAY", "FULL"))
    with pytest.raises(WrongSubarrayError, match="SUBARRAY = 'FULL'"):
        io.read_rateints(p)
    p = _edit(good_rateints, tmp_path / "flat_rateints.fits",
              lambda h: setattr(h["SCI"], "data", h["SCI"].data[0]))
    with pytest.raises(WrongSubarrayError, match="expected 3-D"):
        io.read_rateints(p)
    with pytest.raises(WrongSubarrayError, match="2-D"):
        io.read(p)


def test_missing_extensions(tmp_path, good_rateints):
    p = _edit(good_rateints, tmp_path / "nodq_rateints.fits", lambda h: h.pop(h.index_of("DQ")))
    with pytest.raises(MissingExtensionError, match="DQ is absent"):
        io.read_rateints(p)
    p = _edit(good_rateints, tmp_path / "nosci_rateints.fits", lambda h: h.pop(h.index_of("SCI")))
    with pytest.raises(MissingExtensionError, match="SCI is absent"):
        io.read_rateints(p)
    x1d = io.write_x1dints(tmp_path / "s_x1dints.fits", _spectra(np.random.default_rng(10)))

    def drop_tables(h):
        while "EXTRACT1D" in h:
            h.pop(h.index_of("EXTRACT1D"))
    p = _edit(x1d, tmp_path / "notab_x1dints.fits", drop_tables)
    with pytest.raises(MissingExtensionError, match="EXTRACT1D is absent"):
        io.read_x1dints(p)


def test_truncated_file(tmp_path, good_rateints):
    raw = good_rateints.read_bytes()
    for frac in (0.001, 0.5, 0.97):  # inside the primary header, in SCI, in a later extension
        p = tmp_path / f"cut{frac}_rateints.fits"
        p.write_bytes(raw[: int(len(raw) * frac)])
        with pytest.raises(TruncatedFileError) as e:
            io.read_rateints(p)
        assert str(p) in str(e.value)


def test_empty_and_not_fits(tmp_path, good_rateints):
    p = _edit(good_rateints, tmp_path / "nan_rateints.fits",
              lambda h: h["SCI"].data.__setitem__(Ellipsis, np.nan))
    with pytest.raises(EmptyDataError, match="SCI is NaN"):
        io.read_rateints(p)
    spec = _spectra(np.random.default_rng(11))
    p = io.write_x1dints(tmp_path / "nan_x1dints.fits", spec.replace(data=np.full(spec.data.shape, np.nan)))
    with pytest.raises(EmptyDataError, match="FLUX"):
        io.read_x1dints(p)
    txt = tmp_path / "notes_rateints.fits"
    txt.write_text("this is not a FITS file\n" * 200)
    with pytest.raises(ProductError, match="not a readable FITS"):
        io.read(txt)
    with pytest.raises(ProductError, match="no such file"):
        io.read(tmp_path / "absent_uncal.fits")


# ---------------------------------------------------------------------------------- real products
@needs_data
def test_real_mirisim_rateints_and_calints():
    for path, kind in ((RATEINTS, "rateints"), (CALINTS, "calints")):
        # MIRISim writes TARG_RA = TARG_DEC = 0 as placeholders: no barycentric correction is claimed
        with pytest.warns(IntTimesReconstructedWarning, match="EXPSTART.*WITHOUT barycentric"):
            prod = io.read(path)
        assert isinstance(prod, RateData) and prod.data.shape == (4, 416, 72)
        assert prod.units == "DN/s" and prod.dq.dtype == np.uint32
        # the DQ extension is int32 + BZERO on disk: bit 31 (REFERENCE_PIXEL) marks columns 0-3 only
        assert dq_has(prod.dq[:, :, :4], DQ.REFERENCE_PIXEL).all()
        assert not dq_has(prod.dq[:, :, 4:], DQ.REFERENCE_PIXEL).any()
        assert prod.var_poisson is not None and prod.var_rnoise is not None
        assert (prod.wavelength is not None) == (kind == "calints")
        t = prod.int_times
        assert t.reconstructed
        np.testing.assert_array_equal(t.integration_number, [1847, 1848, 1849, 1850])
        # 300 groups x TFRAME with no reset frames (NRESETS = 0): 47.712 s cadence
        np.testing.assert_allclose(np.diff(t.mid_mjd_utc) * 86400, 47.712, atol=1e-3)
        # in BJD_TDB an integration lasts 47.712 s x (1 - v_radial/c): Earth's ~30 km/s gives ~5 ms
        np.testing.assert_allclose((t.end_bjd_tdb - t.start_bjd_tdb) * 86400, 47.712, atol=0.01)


@needs_data
def test_real_mirisim_calints_rewrite_round_trip(tmp_path):
    with pytest.warns(IntTimesReconstructedWarning):
        cal = io.read_calints(CALINTS)
    out = io.write_calints(tmp_path / "copy_calints.fits", cal)
    with warnings.catch_warnings():
        warnings.simplefilter("error", IntTimesReconstructedWarning)  # times are now stored
        back = io.read_calints(out)
    for name in ("data", "err", "dq", "var_poisson", "var_rnoise", "wavelength"):
        np.testing.assert_array_equal(getattr(back, name), getattr(cal, name), err_msg=name)
    _same_times(back.int_times, cal.int_times)


@needs_data
def test_real_wasp39_x1dints():
    spec = io.read(X1DINTS)
    assert isinstance(spec, SpectraData) and spec.data.shape == (10, 388) and spec.units == "Jy"
    assert spec.wavelength.shape == (388,)
    assert 13.9 < spec.wavelength[0] < 14.1 and np.all(np.diff(spec.wavelength) < 0)
    assert not spec.int_times.reconstructed
    with fits.open(X1DINTS) as h:
        np.testing.assert_array_equal(spec.int_times.mid_bjd_tdb, h["INT_TIMES"].data["int_mid_BJD_TDB"])
        np.testing.assert_array_equal(spec.data[3], h["EXTRACT1D", 4].data["FLUX"])
    white = np.nansum(spec.data, axis=1)
    # the first integration of a MIRI exposure is ~2.5-3 % faint (PROVENANCE.md)
    assert 0.96 < white[0] / np.median(white[1:]) < 0.985
    assert spec.meta["NGROUPS"] == 100 and spec.meta["READPATT"] == "FASTR1"


@needs_data
def test_time_reconstruction_matches_flight_int_times():
    """The header-keyword reconstruction against the real INT_TIMES of the WASP-39 x1dints.

    Measured: UTC starts agree to < 0.01 s; BJD_TDB mid-times to 0.86 s (the geocentre-vs-L2
    light-time difference that the keyword-only method cannot know).
    """
    spec = io.read_x1dints(X1DINTS)
    with pytest.warns(IntTimesReconstructedWarning):
        rec = io.reconstruct_int_times(spec.meta, spec.nints, path=X1DINTS)
    t = spec.int_times
    np.testing.assert_array_equal(rec.integration_number, t.integration_number)
    assert np.max(np.abs(rec.start_mjd_utc - t.start_mjd_utc)) * 86400 < 0.05
    assert np.max(np.abs(rec.end_mjd_utc - t.end_mjd_utc)) * 86400 < 0.05
    assert np.max(np.abs(rec.mid_bjd_tdb - t.mid_bjd_tdb)) * 86400 < 5.0
    # without a target direction no barycentric correction is possible: ~166 s off for WASP-39
    meta = {k: v for k, v in spec.meta.items() if k not in ("TARG_RA", "TARG_DEC")}
    with pytest.warns(IntTimesReconstructedWarning, match="WITHOUT barycentric"):
        bad = io.reconstruct_int_times(meta, spec.nints)
    assert np.max(np.abs(bad.mid_bjd_tdb - t.mid_bjd_tdb)) * 86400 > 100


def test_products_open_with_stsci_datamodels(tmp_path):
    """Our products open with the STScI pipeline's own data models (stdatamodels, as used by jwst) as
    their proper model, without a warning, and every array and table column -- DQ included, columns
    mapped by position as stdatamodels does -- equals what we wrote."""
    dm = pytest.importorskip("stdatamodels.jwst.datamodels")
    from tsoreduce.io._jwst_layout import TSO_SPECTABLE

    rng = np.random.default_rng(9)
    ramp = _ramp(rng, nints=2, ngroups=4)
    rate = _rate(rng, units="DN/s", wavelength=False)
    cal = _rate(rng, units="MJy/sr", wavelength=True)
    spec = _spectra(rng, units="DN/s")
    with warnings.catch_warnings():
        warnings.simplefilter("error")        # a schema validation or FITS warning fails the test
        with dm.open(io.write_uncal(tmp_path / "a_uncal.fits", ramp)) as m:
            assert type(m) is dm.RampModel and m.data.dtype.newbyteorder("=") == np.float32
            np.testing.assert_array_equal(m.data, ramp.data)
            np.testing.assert_array_equal(m.groupdq, ramp.groupdq)
            np.testing.assert_array_equal(m.pixeldq, ramp.pixeldq)
            assert m.meta.exposure.ngroups == 4 and m.meta.exposure.nsamples == 1
            assert m.meta.exposure.drop_frames1 == 0 and m.meta.exposure.nresets_at_start == 0
        for kind, prod in (("rateints", rate), ("calints", cal)):
            with dm.open(getattr(io, f"write_{kind}")(tmp_path / f"a_{kind}.fits", prod)) as m:
                assert type(m) is dm.CubeModel and m.data.shape == (3, NROWS, NCOLS)
                for name in ("data", "err", "dq", "var_poisson", "var_rnoise"):
                    np.testing.assert_array_equal(getattr(m, name), getattr(prod, name), err_msg=name)
                if prod.wavelength is not None:
                    np.testing.assert_array_equal(m.wavelength, prod.wavelength)
                assert m.meta.bunit_data == prod.units and m.meta.wcsinfo.dispersion_direction == 2
                np.testing.assert_array_equal(m.int_times["int_mid_BJD_TDB"], prod.int_times.mid_bjd_tdb)
                assert m.meta.subarray.name == "SLITLESSPRISM" and m.meta.exposure.type == "MIR_LRS-SLITLESS"
        with dm.open(io.write_x1dints(tmp_path / "a_x1dints.fits", spec)) as m:
            assert type(m) is dm.TSOMultiSpecModel and len(m.spec) == 1
            tab = m.spec[0].spec_table
            assert list(tab.dtype.names) == [c[0] for c in TSO_SPECTABLE]
            assert [tab.dtype[c[0]].base.kind + str(tab.dtype[c[0]].base.itemsize) for c in TSO_SPECTABLE] \
                == [c[1][0] + c[1][1] for c in TSO_SPECTABLE]
            np.testing.assert_array_equal(tab["FLUX"], spec.data)
            np.testing.assert_array_equal(tab["FLUX_ERROR"], spec.err)
            np.testing.assert_array_equal(tab["DQ"], spec.dq)
            np.testing.assert_array_equal(tab["WAVELENGTH"], np.tile(spec.wavelength, (spec.nints, 1)))
            np.testing.assert_array_equal(tab["INT_NUM"], spec.int_times.integration_number)
            np.testing.assert_array_equal(tab["MJD-AVG"], spec.int_times.mid_mjd_utc)
            np.testing.assert_array_equal(tab["TDB-MID"], spec.int_times.mid_bjd_tdb)
            assert tab.columns["FLUX"].unit == "DN/s" and m.spec[0].dispersion_direction == 2


def test_keyword_paths_match_the_stsci_schemas():
    """Every header keyword -> data-model attribute of our ASDF ``meta`` tree, and the HDU it is written
    in, is what the installed jwst schemas say (``fits_keyword`` / ``fits_hdu``): the hand-kept table
    cannot drift from stdatamodels unnoticed."""
    dm = pytest.importorskip("stdatamodels.jwst.datamodels")
    from tsoreduce.io._jwst_layout import KEYWORD_PATHS

    schema: dict = {}

    def walk(node, path):
        if not isinstance(node, dict):
            return
        if "fits_keyword" in node:
            schema.setdefault(path, set()).add((node["fits_keyword"], node.get("fits_hdu", "PRIMARY")))
        for comb in ("allOf", "anyOf", "oneOf"):
            for sub in node.get(comb) or []:
                walk(sub, path)
        for k, sub in (node.get("properties") or {}).items():
            walk(sub, f"{path}.{k}" if path else k)

    for model in (dm.RampModel, dm.CubeModel, dm.TSOMultiSpecModel):
        walk(model().schema, "")
    wrong = {k: (hdu, path, sorted(schema.get(path, ()))) for k, (hdu, path) in KEYWORD_PATHS.items()
             if (k, hdu) not in schema.get(path, set())}
    assert not wrong


def test_uncal_scaled_int_sci_with_blank_and_mismatched_groupdq(tmp_path):
    """Integer SCI with BSCALE/BZERO and BLANK: scaled values, BLANK -> NaN (astropy's convention);
    a GROUPDQ with another number of integrations than SCI is a named error, not a silent slice."""
    rng = np.random.default_rng(5)
    ramp = _ramp(rng, nints=3, ngroups=4)
    path = io.write_uncal(tmp_path / "b_uncal.fits", ramp)
    raw = np.arange(np.prod(ramp.data.shape), dtype=np.int16).reshape(ramp.data.shape) % 1000
    raw[1, 2, 3, 4] = -32768
    with fits.open(path) as h:
        sci = fits.ImageHDU(raw, h["SCI"].header, name="SCI")
        sci.header["BSCALE"], sci.header["BZERO"], sci.header["BLANK"] = 2.0, 100.0, -32768
        h["SCI"] = sci
        h.writeto(tmp_path / "blank_uncal.fits")
    back = io.read_uncal(tmp_path / "blank_uncal.fits", integrations=(1, 3))
    want = raw[1:3].astype(np.float32) * 2 + 100
    want[0, 2, 3, 4] = np.nan
    np.testing.assert_array_equal(back.data, want)
    with fits.open(path) as h:
        h["GROUPDQ"] = fits.ImageHDU(np.zeros((2,) + ramp.data.shape[1:], np.uint8), name="GROUPDQ")
        h.writeto(tmp_path / "mismatch_uncal.fits")
    with pytest.raises(ProductError, match="GROUPDQ"):
        io.read_uncal(tmp_path / "mismatch_uncal.fits")
