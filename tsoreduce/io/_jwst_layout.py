"""What the STScI ``jwst`` pipeline needs in a FITS product beyond the HDUs: the ASDF extension, the
header keyword -> data-model attribute map, and the x1dints table layout (TSOMultiSpecModel).

* ``ASDF`` extension: stdatamodels (and so ``Step.call(path)``, ``strun`` and ``read_metadata``) open a
  FITS product only when it carries a one-row BinTable ``ASDF`` whose ``ASDF_METADATA`` byte column
  holds an ASDF document (stdatamodels ``fits_support``).  Ours holds the ``meta`` tree of the keywords
  below (so the file is self-describing without stdatamodels) plus a ``tsoreduce`` node with our
  provenance and the meta keys that are not valid 8-character FITS keywords (kept out of the header:
  HIERARCH cards make astropy and jwst warn).  It has no ``_fits_hash``, so stdatamodels always
  re-reads the FITS headers and HDUs, which stay the authority.
* ``TSO_SPECTABLE``: the columns of jwst's ``tso_spectable`` schema (jwst >= 1.17 x1dints: one
  EXTRACT1D table, one row per integration, vector spectral columns), in schema order with the schema
  dtypes; stdatamodels maps table columns by position, so both matter.

Sources: stdatamodels ``fits_support`` (ASDF-in-FITS), the jwst data-model schemas ``core``,
``wcsinfo``, ``tso_spectable`` (stdatamodels 6.0); JWST pipeline docs, "Extract1D" products (x1dints).
"""

from __future__ import annotations

import io as _io

import numpy as np

#: header keyword -> dotted jwst data-model attribute, per HDU: the subset of the jwst ``core`` /
#: ``wcsinfo`` schemas that our products carry (stdatamodels 6.0 schemas; ``tests/test_io.py`` checks
#: every entry against the installed schemas' ``fits_keyword`` / ``fits_hdu``)
PRIMARY_KEYWORDS = {
    "DATE": "meta.date", "FILENAME": "meta.filename", "DATAMODL": "meta.model_type",
    "TELESCOP": "meta.telescope", "CAL_VER": "meta.calibration_software_version",
    "DATE-OBS": "meta.observation.date", "TIME-OBS": "meta.observation.time",
    "OBS_ID": "meta.observation.obs_id", "PROGRAM": "meta.observation.program_number",
    "OBSERVTN": "meta.observation.observation_number", "VISIT": "meta.observation.visit_number",
    "EXPOSURE": "meta.observation.exposure_number", "TSOVISIT": "meta.visit.tsovisit",
    "TARGNAME": "meta.target.catalog_name", "TARG_RA": "meta.target.ra", "TARG_DEC": "meta.target.dec",
    "INSTRUME": "meta.instrument.name", "DETECTOR": "meta.instrument.detector",
    "FILTER": "meta.instrument.filter", "EXP_TYPE": "meta.exposure.type",
    "EXPSTART": "meta.exposure.start_time", "EXPMID": "meta.exposure.mid_time",
    "EXPEND": "meta.exposure.end_time", "READPATT": "meta.exposure.readpatt",
    "EXSEGNUM": "meta.exposure.segment_number", "EXSEGTOT": "meta.exposure.segment_total",
    "NINTS": "meta.exposure.nints", "INTSTART": "meta.exposure.integration_start",
    "INTEND": "meta.exposure.integration_end", "NGROUPS": "meta.exposure.ngroups",
    "NFRAMES": "meta.exposure.nframes", "FRMDIVSR": "meta.exposure.frame_divisor",
    "GROUPGAP": "meta.exposure.groupgap", "DRPFRMS1": "meta.exposure.drop_frames1",
    "DRPFRMS3": "meta.exposure.drop_frames3", "NSAMPLES": "meta.exposure.nsamples",
    "TFRAME": "meta.exposure.frame_time", "TGROUP": "meta.exposure.group_time",
    "EFFINTTM": "meta.exposure.integration_time", "EFFEXPTM": "meta.exposure.exposure_time",
    "DURATION": "meta.exposure.duration", "NRSTSTRT": "meta.exposure.nresets_at_start",
    "NRESETS": "meta.exposure.nresets_between_ints", "ZEROFRAM": "meta.exposure.zero_frame",
    "SUBARRAY": "meta.subarray.name", "SUBSTRT1": "meta.subarray.xstart",
    "SUBSTRT2": "meta.subarray.ystart", "SUBSIZE1": "meta.subarray.xsize",
    "SUBSIZE2": "meta.subarray.ysize", "BSTRTIME": "meta.time.barycentric_expstart",
    "S_DQINIT": "meta.cal_step.dq_init", "S_SATURA": "meta.cal_step.saturation",
    "S_LINEAR": "meta.cal_step.linearity", "S_DARK": "meta.cal_step.dark_sub",
    "S_JUMP": "meta.cal_step.jump", "S_RAMP": "meta.cal_step.ramp_fit",
    "S_GRPSCL": "meta.cal_step.group_scale", "S_REFPIX": "meta.cal_step.refpix",
    "S_RSCD": "meta.cal_step.rscd", "S_RESET": "meta.cal_step.reset",
    "S_FRSTFR": "meta.cal_step.firstframe", "S_LASTFR": "meta.cal_step.lastframe",
    "S_PHOTOM": "meta.cal_step.photom", "S_FLAT": "meta.cal_step.flat_field",
    "S_SRCTYP": "meta.cal_step.srctype", "S_EXTR1D": "meta.cal_step.extract_1d",
    "S_WCS": "meta.cal_step.assign_wcs", "S_BKDSUB": "meta.cal_step.bkg_subtract",
}
SCI_KEYWORDS = {
    "BUNIT": "meta.bunit_data", "SRCTYPE": "meta.target.source_type",
    "PHOTMJSR": "meta.photometry.conversion_megajanskys",
    "PHOTUJA2": "meta.photometry.conversion_microjanskys",
    "PIXAR_SR": "meta.photometry.pixelarea_steradians", "PIXAR_A2": "meta.photometry.pixelarea_arcsecsq",
    "DISPAXIS": "meta.wcsinfo.dispersion_direction",
}
#: header keyword -> (HDU, dotted attribute), both HDUs
KEYWORD_PATHS = {**{k: ("PRIMARY", p) for k, p in PRIMARY_KEYWORDS.items()},
                 **{k: ("SCI", p) for k, p in SCI_KEYWORDS.items()}}

#: jwst ``tso_spectable`` columns (name, numpy dtype, vector?) in schema order
TSO_SPECTABLE = (
    ("INT_NUM", "i4", False), ("WAVELENGTH", "f8", True), ("FLUX", "f8", True),
    ("FLUX_ERROR", "f8", True), ("FLUX_VAR_POISSON", "f8", True), ("FLUX_VAR_RNOISE", "f8", True),
    ("FLUX_VAR_FLAT", "f8", True), ("SURF_BRIGHT", "f8", True), ("SB_ERROR", "f8", True),
    ("SB_VAR_POISSON", "f8", True), ("SB_VAR_RNOISE", "f8", True), ("SB_VAR_FLAT", "f8", True),
    ("DQ", "u4", True), ("BACKGROUND", "f8", True), ("BKGD_ERROR", "f8", True),
    ("BKGD_VAR_POISSON", "f8", True), ("BKGD_VAR_RNOISE", "f8", True), ("BKGD_VAR_FLAT", "f8", True),
    ("NPIXELS", "f8", True), ("N_ALONGDISP", "u4", False), ("SEGMENT", "i4", False),
    ("MJD-BEG", "f8", False), ("MJD-AVG", "f8", False), ("MJD-END", "f8", False),
    ("TDB-BEG", "f8", False), ("TDB-MID", "f8", False), ("TDB-END", "f8", False),
)

#: the asdf-in-FITS extension (stdatamodels ``fits_support``)
ASDF_EXTNAME = "ASDF"
ASDF_COLUMN = "ASDF_METADATA"


def _plain(value):
    """A YAML-safe scalar (numpy scalars -> Python)."""
    if isinstance(value, np.generic):
        return value.item()
    return value


def meta_tree(primary, sci=None) -> dict:
    """The nested jwst ``meta`` tree of the keywords of :data:`KEYWORD_PATHS` present in the headers."""
    tree: dict = {}
    headers = {"PRIMARY": primary, "SCI": sci}
    for key, (hdu, path) in KEYWORD_PATHS.items():
        header = headers.get(hdu)
        if header is None or key not in header:
            continue
        node = tree
        parts = path.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = _plain(header[key])
    return tree


def asdf_hdu(primary, sci=None, *, tsoreduce: dict | None = None):
    """The ``ASDF`` BinTable HDU holding ``meta_tree(primary, sci)`` and, under ``tsoreduce``, our
    provenance and long meta keys (plain YAML values), serialised by the ``asdf`` library."""
    import asdf
    from astropy.io import fits

    tree = meta_tree(primary, sci)
    if tsoreduce:
        tree["tsoreduce"] = {k: v for k, v in tsoreduce.items() if v}
    buf = _io.BytesIO()
    asdf.AsdfFile(tree).write_to(buf)
    data = np.frombuffer(buf.getvalue(), np.uint8)
    col = fits.Column(name=ASDF_COLUMN, format=f"{data.size}B", array=data[None, :])
    return fits.BinTableHDU.from_columns([col], name=ASDF_EXTNAME)


def read_asdf_tree(hdul) -> dict | None:
    """The YAML tree of a product's ``ASDF`` extension (tags ignored, arrays not loaded), or None."""
    if ASDF_EXTNAME not in hdul or hdul[ASDF_EXTNAME].data is None:
        return None
    import asdf

    raw = np.asarray(hdul[ASDF_EXTNAME].data[ASDF_COLUMN][0], np.uint8).tobytes()
    tree = asdf.util.load_yaml(_io.BytesIO(raw))
    return tree if isinstance(tree, dict) else None
