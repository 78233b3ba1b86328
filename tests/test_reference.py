"""Tests of tsoreduce.reference: constants, CRDS-format reference files (finding, loading, cutting to
the subarray, bad files) and the bundled wavelength solution against real pipeline products."""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from tsoreduce import io
from tsoreduce import instrument as inst
from tsoreduce import reference as ref
from tsoreduce.errors import ReferenceFileError

REPO = Path(__file__).parents[1]
DATA = REPO.parent / "shared" / "data"
SPECWCS = DATA / "miri_lrs_reference" / "jwst_miri_specwcs_0006.fits"
CALINTS = DATA / "mirisim_ngts10" / "ERS_NGTS10_2022_new_drift_041_calints.fits"
X1DINTS = DATA / "wasp39b_miri_lrs_x1dints" / "jw02783-o002_t001_miri_p750l-slitlessprism_x1dints.fits"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"shared real data not found at {DATA}")

SLITLESS = {"SUBARRAY": "SLITLESSPRISM", "SUBSTRT1": 1, "SUBSTRT2": 529, "SUBSIZE1": 72, "SUBSIZE2": 416}


def _coded(shape_yx, start1=1, start2=1, lead=()):
    """Array whose value encodes its full-frame (1-based) position: 1000*y + x (+ 1e6 * leading index)."""
    ny, nx = shape_yx
    y = np.arange(start2, start2 + ny)[:, None]
    x = np.arange(start1, start1 + nx)[None, :]
    base = (1000.0 * y + x).astype(np.float64)
    if not lead:
        return base
    k = np.arange(int(np.prod(lead))).reshape(lead + (1, 1))
    return base + 1e6 * k


def _make_ref(path, reftype, data, *, ext="SCI", window=None, dq=None, **keys):
    """Write a small CRDS-format MIRI reference file (primary keywords + one data extension)."""
    ph = fits.Header()
    ph["REFTYPE"] = reftype
    ph["INSTRUME"] = keys.pop("INSTRUME", "MIRI")
    ph["DETECTOR"] = "MIRIMAGE"
    ny, nx = data.shape[-2:]
    if window is None:
        window = (1, 1, nx, ny)
        ph["SUBARRAY"] = "FULL" if (ny, nx) == (1024, 1032) else "GENERIC"
    if window is not False:
        for k, v in zip(("SUBSTRT1", "SUBSTRT2", "SUBSIZE1", "SUBSIZE2"), window):
            ph[k] = v
    for k, v in keys.items():
        ph[k] = v
    hdus = [fits.PrimaryHDU(header=ph), fits.ImageHDU(data.astype(np.float32), name=ext)]
    if dq is not None:
        hdus.append(fits.ImageHDU(dq, name="DQ"))
    fits.HDUList(hdus).writeto(path)
    return Path(path)


# ------------------------------------------------------------------------------------ constants
def test_constants_match_sources():
    # SLITLESSPRISM clocking (jwst emicorr subarray_clocks): 28 row clocks, 15904 frame clocks
    assert inst.frame_ticks(416) == inst.FRAME_CLOCKS == 15904
    assert inst.TFRAME == pytest.approx(0.15904)
    # 390.625 Hz is exactly one period per 256 pixel-clock ticks (jwst emicorr docs)
    assert 1.0 / inst.EMI_FREQUENCIES["Hz390"] / inst.PIXEL_CLOCK == pytest.approx(256.0)
    # names and values of the jwst emicorr reference file / documentation
    assert inst.EMI_FREQUENCIES == {"Hz390": 390.625, "Hz218a": 218.52055, "Hz218b": 218.520470,
                                    "Hz218c": 218.520665, "Hz164": 164.9305, "Hz10": 10.039216}
    assert 2.5 < inst.GAIN < 4.5 and 4 < inst.READ_NOISE_DN < 8 and 5e4 < inst.SATURATION_DN < 7e4
    assert inst.SUBARRAY_SHAPE == (inst.SUBSIZE2, inst.SUBSIZE1) == (416, 72)


def test_reference_reexports_every_public_name():
    """``reference.X`` is the bundled wavelength tables and the CRDS loaders, each the same object as in
    its home module; the instrument constants live only in ``tsoreduce.instrument``."""
    from tsoreduce.reference import crds, specwcs
    for mod in (crds, specwcs):
        for name in mod.__all__:
            assert getattr(ref, name) is getattr(mod, name), name
    assert set(ref.__all__) == set(crds.__all__) | set(specwcs.__all__)
    assert not set(ref.__all__) & set(inst.__all__)


# ------------------------------------------------------------------------------------ loading
def test_full_frame_linearity_cut_to_slitlessprism(tmp_path):
    coeffs = _coded((1024, 1032), lead=(3,))
    dq = np.zeros((1024, 1032), np.uint32)
    dq[528 + 10, 20] = 2 ** 31 + 1  # full-frame (1-based) y = 539, x = 21 -> subarray (10, 20)
    p = _make_ref(tmp_path / "lin.fits", "LINEARITY", coeffs, ext="COEFFS", dq=dq)
    out = ref.load_linearity(p)
    assert out.shape == (3, 416, 72) and out.dtype == np.float64
    # subarray pixel (r, c) (0-based) is full-frame pixel (529 + r, 1 + c) in 1-based FITS terms
    np.testing.assert_array_equal(out, _coded((416, 72), start1=1, start2=529, lead=(3,)))
    lin, ldq = ref.load_linearity(p, SLITLESS, with_dq=True)
    assert ldq.shape == (416, 72) and ldq[10, 20] == 2 ** 31 + 1 and ldq.sum() == 2 ** 31 + 1
    # another subarray placement is honoured (e.g. a MASK1550-like window)
    other = {"SUBSTRT1": 1, "SUBSTRT2": 467, "SUBSIZE1": 288, "SUBSIZE2": 224}
    np.testing.assert_array_equal(ref.load_linearity(p, other)[0], _coded((224, 288), 1, 467))


def test_subarray_references_and_dark_4d(tmp_path):
    # a reference stored for a larger window that contains SLITLESSPRISM
    win = (1, 500, 100, 480)
    gain = _coded((480, 100), start1=1, start2=500)
    p = _make_ref(tmp_path / "gain.fits", "GAIN", gain, window=win)
    np.testing.assert_array_equal(ref.load_gain(p, SLITLESS), _coded((416, 72), 1, 529))
    # a reference stored exactly on SLITLESSPRISM is returned unchanged (also with no data meta)
    flat = _coded((416, 72), 1, 529)
    p = _make_ref(tmp_path / "flat.fits", "FLAT", flat, window=(1, 529, 72, 416), SUBARRAY="SLITLESSPRISM")
    np.testing.assert_array_equal(ref.load_flat(p), flat)
    f, fdq = ref.load_flat(p, with_dq=True)
    assert not fdq.any() and fdq.dtype == np.uint32
    # MIRI darks carry one cube per integration: (nints, ngroups, ny, nx)
    dark = _coded((1024, 1032), lead=(2, 3))
    p = _make_ref(tmp_path / "dark.fits", "DARK", dark)
    d = ref.load_dark(p, SLITLESS)
    assert d.shape == (2, 3, 416, 72)
    np.testing.assert_array_equal(d, _coded((416, 72), 1, 529, lead=(2, 3)))
    for reftype, loader in (("READNOISE", ref.load_readnoise), ("SATURATION", ref.load_saturation)):
        p = _make_ref(tmp_path / f"{reftype}.fits", reftype, np.full((1024, 1032), 7.0))
        assert loader(p, SLITLESS).shape == (416, 72)


def test_reference_errors(tmp_path):
    full = np.ones((1024, 1032))
    gain = _make_ref(tmp_path / "gain.fits", "GAIN", full)
    with pytest.raises(ReferenceFileError, match="REFTYPE is 'GAIN', expected 'FLAT'"):
        ref.load_flat(gain)
    # a window that does not contain SLITLESSPRISM (rows 529-944)
    p = _make_ref(tmp_path / "mask.fits", "FLAT", np.ones((224, 288)), window=(1, 600, 288, 224))
    with pytest.raises(ReferenceFileError, match="does not cover"):
        ref.load_flat(p, SLITLESS)
    # malformed: SUBSIZE disagrees with the array, wrong dimensionality, missing extension
    p = _make_ref(tmp_path / "bad_size.fits", "FLAT", np.ones((400, 72)), window=(1, 529, 72, 416))
    with pytest.raises(ReferenceFileError, match="SUBSIZE2 x SUBSIZE1 = 416 x 72"):
        ref.load_flat(p)
    p = _make_ref(tmp_path / "bad_dim.fits", "LINEARITY", full, ext="COEFFS")
    with pytest.raises(ReferenceFileError, match="expected"):
        ref.load_linearity(p)
    p = _make_ref(tmp_path / "no_coeffs.fits", "LINEARITY", np.ones((2, 1024, 1032)), ext="SCI")
    with pytest.raises(ReferenceFileError, match="COEFFS is missing"):
        ref.load_linearity(p)
    p = _make_ref(tmp_path / "nowin.fits", "FLAT", np.ones((300, 72)), window=False, SUBARRAY="ODD")
    with pytest.raises(ReferenceFileError, match="cannot place"):
        ref.load_flat(p)
    p = _make_ref(tmp_path / "nircam.fits", "FLAT", full, INSTRUME="NIRCAM")
    with pytest.raises(ReferenceFileError, match="INSTRUME"):
        ref.load_flat(p)
    # not FITS, truncated, absent
    txt = tmp_path / "flat.txt"
    txt.write_text("no FITS here\n" * 300)
    with pytest.raises(ReferenceFileError, match="not a readable FITS"):
        ref.load_flat(txt)
    raw = gain.read_bytes()
    cut = tmp_path / "cut.fits"
    cut.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ReferenceFileError, match="truncated|needs bytes"):
        ref.load_gain(cut)
    with pytest.raises(ReferenceFileError, match="does not exist"):
        ref.load_gain(tmp_path / "absent.fits")


# ------------------------------------------------------------------------------------ finding
def test_find_reference_explicit_path(tmp_path):
    p = _make_ref(tmp_path / "gain.fits", "GAIN", np.ones((416, 72)), window=(1, 529, 72, 416))
    assert ref.find_reference("gain", p) == p
    with pytest.raises(ReferenceFileError, match="expected 'DARK'"):
        ref.find_reference("dark", p)
    with pytest.raises(ReferenceFileError, match="does not exist"):
        ref.find_reference("gain", tmp_path / "nope.fits")


def test_find_reference_crds_cache(tmp_path, monkeypatch):
    cache = tmp_path / "crds" / "references" / "jwst" / "miri"
    cache.mkdir(parents=True)
    monkeypatch.delenv("CRDS_PATH", raising=False)
    assert ref.find_reference("gain") is None  # no cache configured: None, never a download
    monkeypatch.setenv("CRDS_PATH", str(tmp_path / "crds"))
    assert ref.find_reference("gain") is None  # cache without gain files
    small = np.ones((4, 4))
    _make_ref(cache / "jwst_miri_gain_0001.fits", "GAIN", np.ones((1024, 1032)))
    _make_ref(cache / "jwst_miri_gain_0002.fits", "GAIN", np.ones((1024, 1032)), P_EXP_TY="MIR_LRS-SLITLESS|MIR_IMAGE|")
    # newer by name but for other modes / places: skipped when the data's meta is given
    _make_ref(cache / "jwst_miri_gain_0003.fits", "GAIN", np.ones((1024, 1032)), P_EXP_TY="MIR_IMAGE|MIR_CORONCAL|")
    _make_ref(cache / "jwst_miri_gain_0004.fits", "GAIN", small, window=(1, 1, 4, 4))
    _make_ref(cache / "jwst_miri_gain_0005.fits", "GAIN", np.ones((1024, 1032)), READPATT="SLOW")
    _make_ref(cache / "jwst_miri_flat_0009.fits", "FLAT", np.ones((1024, 1032)))
    (cache / "jwst_miri_gain_0006.fits").write_text("corrupt")
    meta = dict(SLITLESS, EXP_TYPE="MIR_LRS-SLITLESS", READPATT="FASTR1", DETECTOR="MIRIMAGE")
    assert ref.find_reference("gain", meta=meta).name == "jwst_miri_gain_0002.fits"
    assert ref.find_reference("GAIN").name == "jwst_miri_gain_0005.fits"  # no meta: newest by name
    assert ref.find_reference("flat", meta=meta).name == "jwst_miri_flat_0009.fits"
    assert ref.find_reference("linearity", meta=meta) is None
    # the found file loads and is cut to the subarray
    assert ref.load_gain(ref.find_reference("gain", meta=meta), meta).shape == (416, 72)


# ------------------------------------------------------------------------------------ wavelengths
def test_bundled_table_shape_and_monotonic():
    assert ref.DEFAULT_WAVELENGTH_MAP == "specwcs_0009"
    for name in ("specwcs_0009", "specwcs_0006"):
        t = ref.specwcs_table(name)
        assert len(t) == 388 and t["row"][0] == 7 and t["row"][-1] == 394
        assert np.all(np.diff(t["wavelength"]) < 0)
        wmap = ref.default_wavelength_map(name=name)
        assert wmap.shape == (416, 72) and np.isnan(wmap[:7]).all() and np.isnan(wmap[395:]).all()
    # PROVENANCE.md: row 257 ~ 9.70 um in 0006; 0009 moved it by -0.015 um
    assert ref.wavelength_of_row(257, "specwcs_0006") == pytest.approx(9.6976, abs=1e-4)
    assert ref.wavelength_of_row(257) == pytest.approx(9.6823, abs=1e-4)
    assert ref.wavelength_map_label() == "jwst_miri_specwcs_0009.fits"
    assert 36 < ref.trace_x_center(200) < 38
    with pytest.raises(ReferenceFileError, match="specwcs_0009"):
        ref.specwcs_table("specwcs_0042")


def test_wavelength_outside_table_is_nan_not_clamped():
    """Rows outside the table (0-6, 395-415) are NaN in every bundled map, including just beyond each
    end and at fractional rows; the last table row keeps its own value (not the one before)."""
    for name in ("specwcs_0009", "specwcs_0006"):
        rows = np.array([0, 6, 6.5, 6.999, 394.001, 394.5, 395, 415])
        assert np.isnan(ref.wavelength_of_row(rows, name)).all()
        t = ref.specwcs_table(name)
        w = ref.wavelength_of_row([393, 394], name)
        np.testing.assert_allclose(w, np.asarray(t["wavelength"][-2:], float))
        assert w[1] < w[0]


@needs_data
def test_derive_script_reproduces_bundled_tables(tmp_path):
    spec = importlib.util.spec_from_file_location("derive_specwcs_table",
                                                  REPO / "scripts" / "derive_specwcs_table.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "specwcs.ecsv"
    assert mod.main([str(SPECWCS), "-o", str(out)]) == 0
    bundled = REPO / "tsoreduce" / "data" / "slitlessprism_specwcs_0006.ecsv"
    assert out.read_text() == bundled.read_text()
    with pytest.raises(SystemExit):  # refuses to replace without --force
        mod.main([str(SPECWCS), "-o", str(out)])
    out9 = tmp_path / "specwcs9.ecsv"
    assert mod.main(["--from-calints", str(CALINTS), "-o", str(out9)]) == 0
    assert out9.read_text() == (REPO / "tsoreduce" / "data" / "slitlessprism_specwcs_0009.ecsv").read_text()


@needs_data
def test_default_wavelength_map_vs_mirisim_calints():
    """The default map (specwcs_0009) reproduces the jwst 2.0.1 WAVELENGTH extension of the MIRISim
    calints (R_SPCWCS = jwst_miri_specwcs_0009.fits, CRDS jwst_1535) along the trace to < 5 nm over
    5-12 um (measured: 0 within float32 rounding, < 1e-6 um, on every row 7-394).  The 2022 map
    (specwcs_0006) differs by up to 0.36 um (0.144 um at row 382, 5.44 um)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", io.IntTimesReconstructedWarning)
        cal = io.read_calints(CALINTS)
    pipe = cal.wavelength.astype(float)
    rows = np.arange(416)
    xc = ref.trace_x_center(rows)
    j = np.floor(xc).astype(int)
    pipe_tr = (1 - (xc - j)) * pipe[rows, j] + (xc - j) * pipe[rows, j + 1]
    ours = ref.wavelength_of_row(rows)
    assert np.array_equal(np.isfinite(pipe_tr), np.isfinite(ours))  # same rows 7-394
    band = np.isfinite(pipe_tr) & (pipe_tr >= 5) & (pipe_tr <= 12)
    diff = np.abs(ours - pipe_tr)[band]
    old = np.abs(ref.wavelength_of_row(rows, "specwcs_0006") - pipe_tr)
    print(f"\ndefault map vs MIRISim calints WAVELENGTH, 5-12 um ({band.sum()} rows): max |diff| "
          f"{1e3 * diff.max():.2g} nm; specwcs_0006: max {1e3 * np.nanmax(old[band]):.0f} nm, "
          f"row 382 {old[382]:+.3f} um")
    assert diff.max() < 0.005
    assert np.nanmax(np.abs(ours - pipe_tr)) < 1e-4  # every row, not only 5-12 um
    assert old[382] > 0.1  # the old map really differs there (the test can fail)
    assert np.all(np.diff(pipe[7:395, 36]) < 0)  # both decrease with row


@needs_data
def test_specwcs_vs_flight_x1dints_wavelengths():
    """The flight WASP-39 x1dints (jwst 1.10.1, R_SPCWCS = specwcs_0006) has 388 wavelengths, one per
    row 7-394.  Measured: median |diff| 0.0012 um, max 0.025 um (the pipeline evaluates the wavelength
    at the traced position, not at the row centre of the table)."""
    spec = io.read_x1dints(X1DINTS)
    table = np.asarray(ref.specwcs_table("specwcs_0006")["wavelength"], float)
    assert spec.wavelength.shape == table.shape == (388,)
    diff = spec.wavelength - table
    assert np.median(np.abs(diff)) < 0.005
    assert np.max(np.abs(diff)) < 0.05
