"""Files of an LRS simulation: uncal segments, truth (.npz), injected spectrum (ECSV) and CRDS-format
reference files in the jwst pipeline's conventions that match the truth (linearity, dark, gain,
readnoise, saturation, mask).

Private helpers of :mod:`tsoreduce.simulate.lrs` (public entry points: ``write_lrs_simulation`` and
``load_lrs_truth``).  Every file is written atomically (temporary file in the target folder, then
``os.replace``) and an existing file is never replaced unless ``overwrite=True``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from .. import instrument as inst
from .. import reference as ref
from .._util import atomic_write
from ..datamodel import DQ
from ..errors import OverwriteError, ReferenceFileError
from ._lrs_types import LRSTruth

log = logging.getLogger(__name__)

#: default bins of the injected-spectrum table: 5-12 um in 0.5 um (the binning of Bell et al. 2024)
DEFAULT_SPECTRUM_EDGES_UM = tuple(np.round(np.arange(5.0, 12.0001, 0.5), 3))

_ARRAY_FIELDS = ("wavelength", "rp_rs", "star_spectrum", "trace_x", "trace_sigma", "trace_width_scale",
                 "rate_star", "rate_background", "transit_lc", "settling", "white_flux", "times_bjd_tdb",
                 "cosmic_rays", "nonlinearity_coeffs", "dark", "bias", "gain", "read_noise_dn",
                 "saturation_dn")
_DICT_FIELDS = ("transit", "rscd", "config")
#: reference files written next to a simulation (CRDS REFTYPE, lower case)
REFTYPES = ("linearity", "dark", "gain", "readnoise", "saturation", "mask")
#: those our Stage 1 reads (the mask is for jwst's dq_init; our dq_init marks the same columns itself)
STAGE1_REFTYPES = ("linearity", "dark", "gain", "readnoise", "saturation")


def _check_new(path: Path, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise OverwriteError(f"{path}: file exists; pass overwrite=True to replace it")


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (np.floating, np.integer, np.bool_)):
        return obj.item()
    return obj


def save_truth(truth, path, *, overwrite: bool = False) -> Path:
    """Write an :class:`LRSTruth` to ``path`` (``.npz``: arrays as-is, dicts as JSON strings)."""
    path = Path(path)
    _check_new(path, overwrite)
    arrays = {name: np.asarray(getattr(truth, name)) for name in _ARRAY_FIELDS}
    for key in ("frequencies", "amplitudes", "phases"):
        arrays[f"emi_{key}"] = np.asarray(truth.emi[key], float)
    for name in _DICT_FIELDS:
        arrays[f"json_{name}"] = np.array(json.dumps(_jsonable(getattr(truth, name))))
    arrays["format"] = np.array("tsoreduce LRS truth v1")

    def write(tmp):
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)

    return atomic_write(path, write)


def load_truth(path):
    """Read a truth ``.npz`` written by :func:`save_truth`; returns :class:`LRSTruth`.

    Raises :class:`FileNotFoundError` if absent and ``ValueError`` if it is not an LRS truth file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: truth file does not exist")
    with np.load(path, allow_pickle=False) as z:
        if "format" not in z.files or not str(z["format"]).startswith("tsoreduce LRS truth"):
            raise ValueError(f"{path}: not a tsoreduce LRS truth file")
        kw = {name: z[name] for name in _ARRAY_FIELDS}
        kw["emi"] = {key: z[f"emi_{key}"] for key in ("frequencies", "amplitudes", "phases")}
        for name in _DICT_FIELDS:
            kw[name] = json.loads(str(z[f"json_{name}"]))
    return LRSTruth(**kw)


# ------------------------------------------------------------------------------------------------
# CRDS-format reference files
# ------------------------------------------------------------------------------------------------
def _ref_primary(reftype: str, description: str, meta: dict):
    from astropy.io import fits

    h = fits.Header()
    h["REFTYPE"] = reftype
    h["INSTRUME"] = "MIRI"
    h["DETECTOR"] = "MIRIMAGE"
    h["SUBARRAY"] = inst.SUBARRAY_NAME
    h["SUBSTRT1"] = inst.SUBSTRT1
    h["SUBSTRT2"] = inst.SUBSTRT2
    h["SUBSIZE1"] = inst.SUBARRAY_SHAPE[1]
    h["SUBSIZE2"] = inst.SUBARRAY_SHAPE[0]
    h["READPATT"] = "FAST"
    h["EXP_TYPE"] = "MIR_LRS-SLITLESS"
    h["PEDIGREE"] = "SIMULATION"
    h["USEAFTER"] = "2022-01-01T00:00:00"
    h["AUTHOR"] = "tsoreduce.simulate"
    h["DESCRIP"] = description[:68]
    for k in ("NGROUPS", "SIMSEED"):
        if k in meta:
            h[k] = meta[k]
    h.add_history("Matches the truth of a tsoreduce LRS simulation exactly.")
    return h


def _dq_def(dq):
    """The DQ_DEF table of jwst reference files (stdatamodels ``dq_def`` schema): one row per flag used
    in ``dq`` (DO_NOT_USE always listed), named with the JWST mnemonic."""
    from astropy.io import fits

    used = int(np.bitwise_or.reduce(np.asarray(dq, np.uint32).ravel())) | int(DQ.DO_NOT_USE)
    flags = [f for f in DQ if f.value and used & int(f.value)]
    bits = np.array([int(f.value).bit_length() - 1 for f in flags], np.int32)
    return fits.BinTableHDU.from_columns([
        fits.Column(name="BIT", format="J", array=bits),
        fits.Column(name="VALUE", format="J", bzero=2147483648,
                    array=np.array([int(f.value) for f in flags], np.uint32)),
        fits.Column(name="NAME", format="40A", array=np.array([f.name for f in flags])),
        fits.Column(name="DESCRIPTION", format="80A",
                    array=np.array([f.name.replace("_", " ").lower() for f in flags]))], name="DQ_DEF")


def _write_ref(path: Path, reftype: str, description: str, meta: dict, ext: str, data,
               dq=None, *, overwrite: bool, keywords: dict | None = None, units: str | None = None) -> Path:
    from astropy.io import fits

    _check_new(path, overwrite)
    header = _ref_primary(reftype, description, meta)
    for k, v in (keywords or {}).items():
        header[k] = v
    hdus = [fits.PrimaryHDU(header=header)]
    if data is not None:
        img = fits.ImageHDU(np.ascontiguousarray(data, np.float32 if ext != "COEFFS" else np.float64),
                            name=ext)
        if units:
            img.header["BUNIT"] = units
        hdus.append(img)
    if dq is not None:
        hdus += [fits.ImageHDU(np.ascontiguousarray(dq, np.uint32), name="DQ"), _dq_def(dq)]
    hdul = fits.HDUList(hdus)
    return atomic_write(path, lambda tmp: hdul.writeto(tmp, overwrite=True))


def write_reference_files(truth, cfg, refdir, meta: dict, *, overwrite: bool = False) -> dict:
    """CRDS-layout MIRI reference files equal to what was injected, in the jwst pipeline's conventions
    (so both our Stage 1 and jwst's ``calwebb_detector1`` steps, given them as ``override_<reftype>``,
    calibrate the simulation with its truth).

    * linearity: COEFFS float64 ``(ncoeffs, 416, 72)`` (corrected = sum_k c_k raw**k) + DQ + DQ_DEF.
    * dark: jwst's MIRI dark (DarkMIRIModel): SCI float32 ``(1, ngroups, 416, 72)`` DN = dark rate x
      (g + 1) x TFRAME (group g holds g + 1 frames) plus the flux-independent part of the RSCD
      transient ``-A0 (1 - exp(-g / tau))`` when RSCD is on (a MIRI dark exposure shows it too);
      one dark integration, used for every integration; DQ uint32 ``(1, 1, 416, 72)`` HOT (2048)
      where the dark rate exceeds 5x the median; DQ_DEF; NINTS 1, NGROUPS, NFRAMES 1, GROUPGAP 0.
    * readnoise: SCI float32 ``(416, 72)`` DN, the noise of a difference of two reads (CDS) =
      sqrt(2) x the injected per-read noise: the convention of CRDS READNOISE files, which stcal's
      jump and ramp-fit steps assume; DESCRIP says "CDS", so our ``readnoise_convention: auto`` divides
      by sqrt(2) again.
    * gain (e-/DN), saturation (DN): SCI float32 ``(416, 72)``; saturation with DQ + DQ_DEF.
    * mask (jwst ``dq_init``): DQ uint32 ``(416, 72)`` REFERENCE_PIXEL on the 4 reference columns
      (what our ``dq_init`` marks) + DQ_DEF.

    Sources: JWST pipeline docs, reference-file pages of ``dark_current`` (MIRI 4-D dark, NFRAMES,
    GROUPGAP), ``dq_init`` (MASK with DQ_DEF), ``jump``/``ramp_fitting`` (READNOISE is CDS noise).
    Returns ``{reftype: Path}`` (lower-case reftypes).
    """
    refdir = Path(refdir)
    refdir.mkdir(parents=True, exist_ok=True)
    shape = inst.SUBARRAY_SHAPE
    ng = cfg.ngroups
    g = np.arange(ng, dtype=float)
    dark_cube = truth.dark[None] * ((g + 1.0) * cfg.tframe)[:, None, None]
    if truth.rscd.get("enabled"):
        dark_cube = dark_cube - (truth.rscd["amplitude_dn"]
                                 * (1.0 - np.exp(-g / truth.rscd["tau_groups"])))[:, None, None]
    med = np.median(truth.dark)
    dark_dq = np.where(truth.dark > 5 * med, DQ.HOT, 0).astype(np.uint32) if med > 0 else \
        np.zeros(shape, np.uint32)
    zero_dq = np.zeros(shape, np.uint32)
    mask = zero_dq.copy()
    mask[:, :inst.N_REFERENCE_COLUMNS] = DQ.REFERENCE_PIXEL
    dark_kw = {"NINTS": 1, "NGROUPS": ng, "NFRAMES": 1, "GROUPGAP": 0}
    name = lambda t: refdir / f"tsoreduce_sim_miri_{t}.fits"  # noqa: E731
    out = {
        "linearity": _write_ref(name("linearity"), "LINEARITY", "simulated linearity (truth)", meta,
                                "COEFFS", truth.nonlinearity_coeffs, zero_dq, overwrite=overwrite),
        "dark": _write_ref(name("dark"), "DARK", "simulated dark + RSCD base (truth)", meta, "SCI",
                           dark_cube[None], dark_dq[None, None], overwrite=overwrite, keywords=dark_kw,
                           units="DN"),
        "gain": _write_ref(name("gain"), "GAIN", "simulated gain e-/DN (truth)", meta, "SCI", truth.gain,
                           overwrite=overwrite, units="electrons/DN"),
        "readnoise": _write_ref(name("readnoise"), "READNOISE",
                                "simulated read noise, CDS (read difference), DN (truth)", meta, "SCI",
                                truth.read_noise_dn * np.sqrt(2.0), overwrite=overwrite, units="DN"),
        "saturation": _write_ref(name("saturation"), "SATURATION", "simulated saturation DN (truth)", meta,
                                 "SCI", truth.saturation_dn, zero_dq, overwrite=overwrite, units="DN"),
        "mask": _write_ref(name("mask"), "MASK", "simulated bad-pixel mask: reference columns", meta,
                           "DQ", None, mask, overwrite=overwrite),
    }
    # the references our Stage 1 reads must load through the project's own loaders, cut to the
    # data's subarray (the mask is for jwst's dq_init: our dq_init marks the same columns itself)
    for reftype, path in out.items():
        if reftype != "mask" and ref.find_reference(reftype, path=path) is None:  # pragma: no cover
            raise ReferenceFileError(f"{path}: written {reftype} reference cannot be found")
    return out


# ------------------------------------------------------------------------------------------------
def uncal_name(segment: int, nsegments: int) -> str:
    """JWST-style uncal file name, e.g. ``jw00000001001_01101_00001-seg001_mirimage_uncal.fits``
    (segment suffix only when the exposure is segmented, as for JWST)."""
    seg = f"-seg{segment + 1:03d}" if nsegments > 1 else ""
    return f"jw00000001001_01101_00001{seg}_mirimage_uncal.fits"


def simulation_paths(cfg, outdir, *, overwrite: bool = False) -> dict:
    """The files :func:`write_simulation` will write into ``outdir`` (created if needed), checked first.

    Returns dict(uncal=[Path per segment], truth=Path, spectrum=Path, refdir=Path).  Raises
    OverwriteError if a target file exists and not ``overwrite`` -- called before simulating, so a
    refused run costs nothing.
    """
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    paths = dict(uncal=[outdir / uncal_name(s, cfg.nsegments) for s in range(cfg.nsegments)],
                 truth=outdir / "simulation_truth.npz", spectrum=outdir / "injected_spectrum.ecsv",
                 refdir=outdir / "references")
    ref_paths = [paths["refdir"] / f"tsoreduce_sim_miri_{t}.fits" for t in REFTYPES]
    for p in paths["uncal"] + [paths["truth"], paths["spectrum"]] + ref_paths:
        _check_new(p, overwrite)
    return paths


def write_simulation(cfg, paths: dict, truth, segments, *, overwrite: bool = False,
                     spectrum_edges_um=DEFAULT_SPECTRUM_EDGES_UM) -> dict:
    """Write a simulation: the ``segments`` (an iterator of RampData, consumed one at a time so memory
    holds one segment), the ``truth``, the injected spectrum and the reference files, to ``paths``
    (from :func:`simulation_paths`).

    Returns dict(uncal=[Path per segment], truth=Path (.npz), spectrum=Path (ECSV),
    references={reftype: Path} (those our Stage 1 reads), jwst_references={reftype: Path} (all,
    including the MASK for jwst's dq_init)).
    """
    from ..io import write_uncal

    uncal_paths, truth_path, spec_path = paths["uncal"], paths["truth"], paths["spectrum"]
    provenance = {"simulator": "tsoreduce.simulate.lrs", "seed": int(cfg.seed),
                  "config": json.dumps(_jsonable(cfg.to_dict()))}
    first_meta = None
    for path, seg in zip(uncal_paths, segments):
        write_uncal(path, seg, overwrite=overwrite, provenance=provenance)
        first_meta = first_meta or dict(seg.meta)
        del seg
    save_truth(truth, truth_path, overwrite=overwrite)
    table = truth.injected_spectrum(np.asarray(spectrum_edges_um, float))
    table.meta["seed"] = int(cfg.seed)
    atomic_write(spec_path, lambda tmp: table.write(tmp, format="ascii.ecsv", overwrite=True))
    refs = write_reference_files(truth, cfg, paths["refdir"], first_meta, overwrite=overwrite)
    log.info("wrote LRS simulation to %s: %d uncal segment(s), truth, spectrum, %d reference files",
             truth_path.parent, len(uncal_paths), len(refs))
    # ``references``: what our Stage 1 reads; ``jwst_references``: all, for jwst's override_<reftype>
    ours = {k: v for k, v in refs.items() if k in STAGE1_REFTYPES}
    return dict(uncal=uncal_paths, truth=truth_path, spectrum=spec_path, references=ours,
                jwst_references=refs)
