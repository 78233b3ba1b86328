"""Stage 2: integration-level spectroscopic steps for MIRI LRS slitless (rateints -> calints).

Steps, in the order :func:`run_stage2` runs them (one function each):

1. :func:`assign_wavelength` -- attach the SLITLESSPRISM wavelength map (file's WAVELENGTH extension,
   a CRDS specwcs file, or a bundled map: default the current CRDS specwcs_0009, or specwcs_0006; the
   jwst ``assign_wcs`` step's MIR_LRS-SLITLESS wavelength table) and record it (R_SPCWCS, WAVSRC).
2. :func:`flat_field` -- divide by a CRDS-format flat (skipped with a log line when none is given).
3. :func:`subtract_background` -- per integration and detector row, the median (or a robust straight
   line in column, ``"slope"``) of off-trace columns, subtracted from the whole row.
   (exoTEDRF ``backgroundstep_miri``; ExoTiC-MIRI ``row_wise``).
4. :func:`clean_bad_pixels` -- spatial outliers of the deep frame + DQ-flagged pixels replaced by a
   local median along the dispersion direction; temporal outliers vs a running median in time replaced
   by that median.  (exoTEDRF ``badpixstep``, Radica 2024; Nikolov et al. 2014 for the p2p scatter).
5. :func:`pca_reconstruct` -- PCA of the (integration x pixel) matrix with scikit-learn; eigenimages,
   eigen-time-series, optional removal of chosen components.  (exoTEDRF, Radica 2024,
   ``pcareconstructionstep``; Coulombe et al. 2023 for the use of PCA on JWST TSO stability).
6. :func:`make_deep_frame` -- median of the (baseline) integrations, used by Stage 3.

Units: rateints are DN/s; calints from the STScI pipeline may be MJy/sr -- every step here is linear
or rank-based, so the units of the input are kept (and logged), never converted.

Detector geometry: SLITLESSPRISM is 416 rows x 72 columns, dispersion along rows, trace near column
36-38, columns 0-3 are reference pixels and are never used for background or PCA.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from scipy import ndimage

from . import reference
from .config import Param, validate
from .datamodel import DQ, RateData, dq_has
from .errors import ConfigError, EmptyDataError, ReferenceFileError, ShapeError


# TEMP shim for s3 (drop at merge): helper s2 provides these in tsoreduce/spectroscopic/
def format_columns(cols) -> str:
    """Column indices as a compact header string, e.g. ``'4-16,58-71'``."""
    cols = np.asarray(cols, int)
    breaks = np.flatnonzero(np.diff(cols) != 1)
    starts = np.r_[cols[0], cols[breaks + 1]]
    ends = np.r_[cols[breaks], cols[-1]]
    return ",".join(f"{s}-{e}" for s, e in zip(starts, ends))


def parse_columns(text: str) -> np.ndarray:
    """Inverse of :func:`format_columns`."""
    out = []
    for part in str(text).split(","):
        a, _, b = part.strip().partition("-")
        out.extend(range(int(a), int(b or a) + 1))
    return np.asarray(out, int)

log = logging.getLogger(__name__)

__all__ = ["CONFIG_SCHEMA", "run_stage2", "find_bad_integrations", "assign_wavelength", "read_specwcs_wavelength_map",
           "flat_field", "estimate_trace_column", "subtract_background", "clean_bad_pixels",
           "pca_reconstruct", "make_deep_frame", "PCAResult", "baseline_index",
           "write_stage2_diagnostics", "nanmedian"]

#: DQ flags that make a pixel value unusable in a given integration
BAD_PIXEL_FLAGS = DQ.DO_NOT_USE | DQ.DEAD | DQ.HOT | DQ.SATURATED

CONFIG_SCHEMA = {
    "wavelength": {
        "source": Param("auto", str, "wavelength map: 'auto' (file's WAVELENGTH extension if valid, else "
                        "the bundled map named by 'map', with a warning), 'extension', 'default' (the "
                        "bundled 'map') or 'specwcs' (needs specwcs_path)",
                        choices=("auto", "extension", "default", "specwcs")),
        "map": Param(reference.DEFAULT_WAVELENGTH_MAP, str, "bundled wavelength map used by 'default' and "
                     "by the 'auto' fallback: 'specwcs_0009' (current CRDS solution) or 'specwcs_0006' "
                     "(2022 commissioning); another map: a CRDS file via specwcs_path",
                     choices=tuple(reference.WAVELENGTH_MAPS)),
        "specwcs_path": Param(None, str, "CRDS specwcs FITS file (e.g. jwst_miri_specwcs_0006.fits); "
                              "used before the WAVELENGTH extension",
                              nullable=True),
    },
    "flat_field": {
        "skip": Param(False, bool, "skip flat fielding (it is also skipped when no flat is given)"),
        "path": Param(None, str, "CRDS-format MIRI flat (SCI 1024x1032 or 416x72); null -> the newest "
                                 "matching FLAT in $CRDS_PATH, else skip", nullable=True),
        "use_crds_cache": Param(True, bool, "look up a missing flat in $CRDS_PATH (never downloads)"),
    },
    "background": {
        "skip": Param(False, bool, "skip the row-wise background subtraction"),
        "method": Param("median", str, "per-row estimator: 'median' or robust line in column ('slope')",
                        choices=("median", "slope")),
        "trace_center": Param(None, (int, float), "trace column; null -> measured from the median frame",
                              nullable=True),
        "trace_halfwidth": Param(10, int, "columns either side of the trace centre never used", min=2, max=30),
        "region_width": Param(14, int, "width (columns) of each background region beyond the mask",
                              min=2, max=30),
        "clip_sigma": Param(3.0, float, "sigma clipping of the slope fit (iterative)", min=1.0),
        "smooth_rows": Param(0, int, "median-smooth the background along rows (odd window; 0 = off)",
                             min=0, max=101),
    },
    "bad_pixels": {
        "skip": Param(False, bool, "skip bad-pixel cleaning"),
        "space_thresh": Param(10.0, float, "sigma threshold of deep-frame spatial outliers", min=3.0),
        "space_halfwidth": Param(3, int, "rows either side used for the local (along-dispersion) median",
                                 min=1, max=10),
        "time_thresh": Param(10.0, float, "sigma threshold of temporal outliers (p2p scatter units)",
                             min=3.0),
        "time_window": Param(5, int, "running-median window along integrations (odd)", min=3, max=51),
        "skip_temporal": Param(False, bool, "skip the temporal outlier search"),
    },
    "pca": {
        "skip": Param(False, bool, "skip the PCA decomposition (the deep frame is still made)"),
        "n_components": Param(10, int, "number of principal components computed", min=1, max=100),
        "remove_components": Param([], list, "1-based components to subtract from the data (default none)",
                                   item_type=int, min=1),
        "columns": Param([12, 61], list, "column range [start, stop) used by the PCA (avoids the "
                         "reference pixels and the 'lightsaber' artefact)", item_type=int, min=0, max=72),
    },
    "bad_integrations": {
        "max_bad_fraction": Param(0.5, float, "an integration whose science pixels are non-finite or "
                                  "DO_NOT_USE beyond this fraction is excluded (all pixels DO_NOT_USE, "
                                  "SCI NaN), never repaired", min=0.0, max=1.0),
    },
    "deep_frame": {
        "baseline_ints": Param(None, list, "integrations used for the deep frame: [start, stop) 0-based "
                               "(negative stop counts from the end); null -> all", nullable=True,
                               item_type=int),
    },
}


# --------------------------------------------------------------------------------------------- utils

def _check_rates(rates: RateData) -> None:
    if not isinstance(rates, RateData):
        raise TypeError(f"Stage 2 needs a RateData (rateints/calints), got {type(rates).__name__}")
    if rates.data.shape[1:] != reference.SUBARRAY_SHAPE:
        log.warning("frame shape %s is not SLITLESSPRISM %s; continuing with generic geometry",
                    rates.data.shape[1:], reference.SUBARRAY_SHAPE)
    if not np.isfinite(rates.data).any():
        raise EmptyDataError(rates.meta.get("_source_path", "<in-memory RateData>"),
                             "SCI is non-finite everywhere")


def baseline_index(nints: int, baseline_ints) -> np.ndarray:
    """Integer indices selected by ``baseline_ints``.

    ``None`` -> all integrations; ``[start, stop)`` -> that range (negative values count from the end);
    ``[a, b, c, d]`` -> the union of ``[a, b)`` and ``[c, d)`` (e.g. pre- and post-transit baselines).
    Raises ConfigError when the selection is empty or malformed.
    """
    if baseline_ints is None:
        return np.arange(nints)
    b = list(baseline_ints)
    if len(b) % 2 or not b:
        raise ConfigError(f"baseline_ints must be [start, stop] pairs, got {baseline_ints!r}")
    keep = np.zeros(nints, bool)
    for s, e in zip(b[::2], b[1::2]):
        keep[slice(s, e)] = True
    if not keep.any():
        raise ConfigError(f"baseline_ints {baseline_ints!r} selects no integration of {nints}")
    return np.flatnonzero(keep)


def make_deep_frame(rates: RateData, baseline_ints=None) -> np.ndarray:
    """Deep (median) frame: NaN-median over the selected integrations, float32 ``(nrows, ncols)``.

    Pixels flagged DO_NOT_USE/DEAD/HOT/SATURATED in an integration are ignored in that integration.
    Source: exoTEDRF ``make_baseline_stack_general`` (Radica 2024).
    """
    idx = baseline_index(rates.nints, baseline_ints)
    d = np.where(dq_has(rates.dq[idx], BAD_PIXEL_FLAGS), np.nan, rates.data[idx])
    with np.errstate(all="ignore"), _quiet_nanwarnings():
        deep = nanmedian(d, axis=0)
    return deep.astype(np.float32)


def nanmedian(a, axis=0):
    """NaN-ignoring median along ``axis``, fast for mostly-finite data.

    numpy's ``nanmedian`` goes through masked arrays when the reduced axis is short (< 600), ~20x
    slower than ``median``; here the plain median is used for every lane without NaN and ``nanmedian``
    only for the few lanes that have one.  All-NaN lanes give NaN (no warning).
    """
    a = np.moveaxis(np.asarray(a), axis, 0)
    out = np.median(a, axis=0)
    lanes = np.isnan(a).any(axis=0)
    if np.any(lanes):
        with _quiet_nanwarnings():
            out[lanes] = np.nanmedian(a[:, lanes], axis=0)
    return out


class _quiet_nanwarnings:
    """Silence 'All-NaN slice' RuntimeWarnings (NaN results are handled by the caller)."""

    def __enter__(self):
        import warnings
        self._cm = warnings.catch_warnings()
        self._cm.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *a):
        return self._cm.__exit__(*a)


# ------------------------------------------------------------------------------------- 1. wavelength

def read_specwcs_wavelength_map(path, shape=reference.SUBARRAY_SHAPE) -> np.ndarray:
    """Wavelength map (um, float32 ``shape``) from a CRDS MIRI LRS specwcs file.

    The WAVETABLE gives, per trace sample, X_CENTER/Y_CENTER (relative to the slit reference point
    IMXSLTL/IMYSLTL in 1-based full-frame pixels) and WAVELENGTH.  Subarray row (0-based) =
    IMYSLTL + Y_CENTER - 1 - (SUBSTRT2 - 1); the wavelength is interpolated in row and repeated along the
    row (jwst assign_wcs for SLITLESSPRISM is constant along rows to < 1e-3 um).  Rows outside the table are NaN.
    Raises ReferenceFileError when the file is not a specwcs table.
    """
    from astropy.io import fits

    try:
        with fits.open(path) as hdul:
            hdr = hdul[0].header
            tab = None
            for h in hdul[1:]:
                if getattr(h, "columns", None) is not None and "WAVELENGTH" in h.columns.names:
                    tab = h
                    break
            if tab is None:
                raise ReferenceFileError(f"{path}: no table with a WAVELENGTH column (not a specwcs file)")
            ycol = "Y_CENTER" if "Y_CENTER" in tab.columns.names else None
            if ycol is None:
                raise ReferenceFileError(f"{path}: WAVETABLE has no Y_CENTER column")
            yc = np.asarray(tab.data[ycol], float)
            wl = np.asarray(tab.data["WAVELENGTH"], float)
            imy = hdr.get("IMYSLTL", tab.header.get("IMYSLTL"))
            if imy is None:
                raise ReferenceFileError(f"{path}: IMYSLTL keyword missing")
    except OSError as exc:
        raise ReferenceFileError(f"{path}: cannot read specwcs file ({exc})") from exc
    rows = float(imy) + yc - 1.0 - (reference.SUBSTRT2 - 1)
    order = np.argsort(rows)
    rows, wl = rows[order], wl[order]
    r = np.arange(shape[0], dtype=float)
    w = np.interp(r, rows, wl)
    w[(r < rows[0]) | (r > rows[-1])] = np.nan
    return np.repeat(w[:, None], shape[1], axis=1).astype(np.float32)


def assign_wavelength(rates: RateData, source: str = "auto", specwcs_path=None, *,
                      map_name: str | None = None) -> RateData:
    """Attach a wavelength map (um, ``(nrows, ncols)``) to ``rates.wavelength`` and record its origin.

    ``source``: ``"extension"`` keeps the file's WAVELENGTH map (error if absent or all zero/NaN --
    jwst #6963 wrote zeros), ``"default"`` uses the bundled map ``map_name``
    (:func:`tsoreduce.reference.default_wavelength_map`; default the current CRDS specwcs_0009),
    ``"specwcs"`` reads ``specwcs_path``, ``"auto"`` = ``specwcs_path`` when given, else the extension
    when valid, else the bundled map -- a fallback logged at WARNING naming the map.  Source: the jwst
    ``assign_wcs`` MIR_LRS-SLITLESS model (row -> wavelength table of the CRDS specwcs reference file,
    jwst-pipeline.readthedocs.io, assign_wcs for MIRI LRS).

    The returned ``meta`` records what was used (written into calints and x1dints headers):
    ``R_SPCWCS`` the specwcs file (the input's own R_SPCWCS when its WAVELENGTH extension is kept) and
    ``WAVSRC`` ``'input WAVELENGTH extension'``, ``'bundled <table file>'`` or ``'specwcs file <name>'``.

    Raises ConfigError (bad source / no usable extension) or ReferenceFileError (bad file or map name).
    """
    shape = rates.data.shape[1:]
    ext = rates.wavelength
    ext_ok = ext is not None and np.isfinite(ext).any() and np.nanmax(np.abs(ext)) > 0
    meta = dict(rates.meta)
    if source == "specwcs" or (source == "auto" and specwcs_path):
        if not specwcs_path:
            raise ConfigError("stage2.wavelength.source = 'specwcs' needs stage2.wavelength.specwcs_path")
        wmap = read_specwcs_wavelength_map(specwcs_path, shape)
        meta["R_SPCWCS"] = Path(specwcs_path).name
        meta["WAVSRC"] = f"specwcs file {Path(specwcs_path).name}"
        log.info("wavelength map from specwcs file %s", specwcs_path)
    elif source == "extension" or (source == "auto" and ext_ok):
        if not ext_ok:
            raise ConfigError("stage2.wavelength.source = 'extension' but the product has no usable "
                              "WAVELENGTH extension (absent, zero or NaN)")
        wmap = np.where(ext > 0, ext, np.nan).astype(np.float32)
        meta["WAVSRC"] = "input WAVELENGTH extension"
        meta["R_SPCWCS"] = str(meta.get("R_SPCWCS") or "unknown (input WAVELENGTH extension)")
        log.info("wavelength map from the product's WAVELENGTH extension (R_SPCWCS %s)", meta["R_SPCWCS"])
    elif source in ("default", "auto"):
        name = map_name or reference.DEFAULT_WAVELENGTH_MAP
        wmap = reference.default_wavelength_map(shape, name)
        label = reference.wavelength_map_label(name)
        table = reference.WAVELENGTH_MAPS.get(name, Path(name).name)
        if source == "auto":
            why = ("absent" if ext is None else "all zero or NaN")
            log.warning("wavelength: the input has no usable WAVELENGTH extension (%s); using the bundled "
                        "map %s (%s, tsoreduce/data/%s) for all %d rows", why, name, label, table, shape[0])
        else:
            log.info("wavelength map: bundled %s (%s) by configuration", name, label)
        meta["R_SPCWCS"] = label
        meta["WAVSRC"] = f"bundled {table}"
    else:
        raise ConfigError(f"stage2.wavelength.source: unknown value {source!r}")
    return rates.replace(wavelength=wmap, meta=meta)


# ------------------------------------------------------------------------------------- 2. flat field

def flat_field(rates: RateData, flat=None, *, subarray_meta=None) -> RateData:
    """Divide by a flat field.

    ``flat``: None (skip, logged), a ``(nrows, ncols)`` array, or a path to a CRDS-format flat read with
    :func:`tsoreduce.reference.load_flat` (cut to the subarray).  Pixels where the flat is not finite or
    <= 0 are flagged NO_FLAT_FIELD and left undivided.  Errors and variances are scaled consistently.
    Source: jwst ``flat_field`` step documentation (science / flat, ERR / flat).
    Raises ShapeError when the flat does not match the frame.
    """
    if flat is None:
        log.info("flat_field: no flat given -- step skipped")
        return rates
    if not isinstance(flat, np.ndarray):
        loader = getattr(reference, "load_flat", None)
        if loader is None:
            raise ReferenceFileError("reference.load_flat is not available to read the flat file "
                                     f"{flat}")
        flat = loader(flat, subarray_meta if subarray_meta is not None else rates.meta)
    flat = np.asarray(flat, np.float64)
    if flat.shape != rates.data.shape[1:]:
        raise ShapeError(f"flat has shape {flat.shape}, frames are {rates.data.shape[1:]}")
    good = np.isfinite(flat) & (flat > 0)
    f = np.where(good, flat, 1.0).astype(np.float32)
    dq = rates.dq | np.where(good, 0, np.uint32(DQ.NO_FLAT_FIELD)).astype(np.uint32)[None]
    out = dict(data=rates.data / f, err=rates.err / f, dq=dq)
    if rates.var_poisson is not None:
        out["var_poisson"] = rates.var_poisson / f**2
    if rates.var_rnoise is not None:
        out["var_rnoise"] = rates.var_rnoise / f**2
    log.info("flat_field: divided by flat (%d pixels without a valid flat value)", int((~good).sum()))
    return rates.replace(**out)


# ------------------------------------------------------------------------------------- 3. background

def estimate_trace_column(image: np.ndarray, rows=None) -> float:
    """Coarse trace column of a (deep) frame ``(nrows, ncols)``: the peak of the row-summed spatial
    profile (reference columns excluded), refined by a 3-point parabola.  Used to place the background
    regions before Stage 3 measures the trace properly."""
    img = np.asarray(image, float)
    if rows is None:
        rows = slice(None)
    prof = np.nansum(np.where(np.isfinite(img[rows]), img[rows], 0.0), axis=0)
    prof[: reference.N_REFERENCE_COLUMNS] = -np.inf
    prof[-1] = -np.inf
    # a median-filtered profile is robust to a single hot column
    k = int(np.argmax(ndimage.median_filter(np.where(np.isfinite(prof), prof, -1e30), 3)))
    k = min(max(k, reference.N_REFERENCE_COLUMNS + 1), img.shape[1] - 2)
    a, b, c = prof[k - 1], prof[k], prof[k + 1]
    den = a - 2 * b + c
    off = 0.5 * (a - c) / den if den < 0 else 0.0
    return float(k + np.clip(off, -0.5, 0.5))


def _background_columns(ncols, center, halfwidth, width):
    c = int(round(center))
    lo = np.arange(c - halfwidth - width, c - halfwidth)
    hi = np.arange(c + halfwidth + 1, c + halfwidth + 1 + width)
    cols = np.concatenate([lo, hi])
    cols = cols[(cols >= reference.N_REFERENCE_COLUMNS) & (cols < ncols)]
    if cols.size < 4:
        raise ConfigError(f"background regions around column {center:.1f} (mask +-{halfwidth}, width "
                          f"{width}) leave only {cols.size} usable columns")
    return cols


def subtract_background(rates: RateData, *, method="median", trace_center=None, trace_halfwidth=10,
                        region_width=14, clip_sigma=3.0, smooth_rows=0):
    """Row-wise (cross-dispersion) background subtraction.

    For every integration ``i`` and row ``y`` the background is estimated from the columns
    ``[c-h-w, c-h)`` and ``(c+h, c+h+w]`` (``c`` trace column, ``h = trace_halfwidth``,
    ``w = region_width``; reference columns 0-3 never used) and subtracted from the whole row:

    * ``"median"``: the median of those pixels (exoTEDRF default; ExoTiC-MIRI ``row_wise``).
    * ``"slope"``: a straight line in column, fitted by least squares with iterative ``clip_sigma``
      clipping (5 passes), evaluated at every column (exoTEDRF ``method='slope'``, vectorised).

    ``smooth_rows`` > 0 median-filters the background along rows (ExoTiC-MIRI option).
    Pixels flagged DO_NOT_USE/DEAD/HOT/SATURATED or non-finite are ignored.  A row with no usable
    background pixel gets the background interpolated along rows from the rows of the same integration
    that have one (beyond the first/last such row: that row's value); its pixels are flagged
    FLUX_ESTIMATED and counted in a WARNING and in ``meta['NBKGINTP']`` (pixels); an integration with
    no estimate at all is NaN and DO_NOT_USE.  The estimator is recorded for the noise propagation of
    Stage 3 (:mod:`tsoreduce.background_noise`): ``BKGMETH``, ``BKGCOLS``, ``BKGTRACE``, ``BKGSMTH``.

    Returns
    -------
    (RateData, background) -- background float32 ``(nints, nrows, ncols)`` in the data units.
    Raises ConfigError when the regions leave fewer than 4 columns.
    """
    nints, nrows, ncols = rates.data.shape
    if trace_center is None:
        trace_center = estimate_trace_column(make_deep_frame(rates))
        log.info("background: trace centre estimated at column %.2f", trace_center)
    cols = _background_columns(ncols, trace_center, trace_halfwidth, region_width)
    d = rates.data[:, :, cols].astype(np.float64)
    bad = ~np.isfinite(d) | dq_has(rates.dq[:, :, cols], BAD_PIXEL_FLAGS)
    d = np.where(bad, np.nan, d)
    with _quiet_nanwarnings():
        if method == "median":
            bkg_row = nanmedian(d, axis=2)  # (nints, nrows)
            bkg = np.repeat(bkg_row[:, :, None], ncols, axis=2)
        elif method == "slope":
            x = cols.astype(float) - trace_center
            w = (~np.isnan(d)).astype(float)
            for _ in range(5):
                a, b = _weighted_line(x, np.nan_to_num(d), w)
                res = np.nan_to_num(d) - (a[..., None] + b[..., None] * x)
                s = 1.4826 * _masked_median(np.abs(res), w > 0)
                neww = ((~np.isnan(d)) & (np.abs(res) <= clip_sigma * np.maximum(s, 1e-30)[..., None]))
                neww = neww.astype(float)
                if np.array_equal(neww, w):
                    break
                w = neww
            a, b = _weighted_line(x, np.nan_to_num(d), w)
            xall = np.arange(ncols) - trace_center
            bkg = a[..., None] + b[..., None] * xall
        else:
            raise ConfigError(f"stage2.background.method: unknown value {method!r}")
    bkg, missing, lost = _fill_missing_background(np.asarray(bkg, np.float64))
    if smooth_rows and smooth_rows > 1:
        bkg = ndimage.median_filter(np.nan_to_num(bkg), size=(1, smooth_rows | 1, 1), mode="nearest")
        bkg[lost] = np.nan
    bkg = bkg.astype(np.float32)
    dq = rates.dq
    meta = dict(rates.meta)
    meta["NBKGINTP"] = int(missing.sum())
    # the estimator, so that Stage 3 can propagate its noise (tsoreduce.background_noise)
    meta.update(BKGMETH=method, BKGCOLS=format_columns(cols), BKGTRACE=float(trace_center),
                BKGSMTH=int(smooth_rows or 0))
    if missing.any():
        dq = rates.dq.copy()
        dq[missing] |= np.uint32(DQ.FLUX_ESTIMATED)
        dq[lost] |= np.uint32(DQ.DO_NOT_USE)
        log.warning("background: %d row(s) of %d integration(s) had no usable background pixel; their "
                    "background is interpolated from the neighbouring rows and their pixels flagged "
                    "FLUX_ESTIMATED (header NBKGINTP)%s", int(missing[:, :, 0].sum()),
                    int(missing[:, :, 0].any(axis=1).sum()),
                    f"; {int(lost[:, :, 0].sum())} row(s) in integrations without any background "
                    f"estimate set to NaN, DO_NOT_USE" if lost.any() else "")
    with _quiet_nanwarnings():
        level = float(np.nanmedian(bkg)) if np.isfinite(bkg).any() else float("nan")
    log.info("background: method %s, columns %s, median level %.4g %s", method, _ranges(cols), level,
             rates.units)
    return rates.replace(data=(rates.data - bkg).astype(np.float32), dq=dq, meta=meta), bkg


def _fill_missing_background(bkg):
    """Rows whose background is non-finite get the linear interpolation, along rows and column by
    column, of the rows of the same integration that have one (the LRS background varies smoothly
    along the dispersion direction).  Returns ``(bkg, missing, lost)``: ``missing`` bool
    ``(nints, nrows, ncols)`` marks interpolated rows, ``lost`` rows of integrations with no estimate at
    all (left NaN)."""
    bad_row = ~np.isfinite(bkg).all(axis=2)  # (nints, nrows)
    missing = np.zeros(bkg.shape, bool)
    lost = np.zeros(bkg.shape, bool)
    rows = np.arange(bkg.shape[1])
    for i in np.flatnonzero(bad_row.any(axis=1)):
        good = ~bad_row[i]
        if not good.any():
            lost[i] = True
            continue
        for c in range(bkg.shape[2]):
            bkg[i, bad_row[i], c] = np.interp(rows[bad_row[i]], rows[good], bkg[i, good, c])
        missing[i, bad_row[i]] = True
    return bkg, missing, lost


def _weighted_line(x, y, w):
    """Weighted least-squares line ``y = a + b x`` along the last axis (vectorised over the rest)."""
    sw = w.sum(-1)
    sx = (w * x).sum(-1)
    sy = (w * y).sum(-1)
    sxx = (w * x * x).sum(-1)
    sxy = (w * x * y).sum(-1)
    den = sw * sxx - sx * sx
    with np.errstate(all="ignore"):
        b = np.where(den > 0, (sw * sxy - sx * sy) / den, 0.0)
        a = np.where(sw > 0, (sy - b * sx) / sw, np.nan)
    return a, b


def _masked_median(x, mask):
    with _quiet_nanwarnings():
        return nanmedian(np.where(mask, x, np.nan), axis=-1)


def _ranges(cols):
    cols = np.asarray(cols)
    breaks = np.flatnonzero(np.diff(cols) != 1)
    starts = np.r_[cols[0], cols[breaks + 1]]
    ends = np.r_[cols[breaks], cols[-1]]
    return ", ".join(f"{s}-{e}" for s, e in zip(starts, ends))


# ------------------------------------------------------------------------------------- 4. bad pixels

def _local_median_rows(cube, bad, halfwidth, where=None, side="both"):
    """Median of the ``2*halfwidth`` neighbours along rows (same column), bad pixels excluded.

    cube, bad: ``(nints, nrows, ncols)``.  Along-dispersion neighbours are used because the LRS spatial
    profile changes by orders of magnitude across columns but slowly along rows.  With ``where`` (a
    boolean mask) only those positions are evaluated (memory O(number flagged)); returns a full-shape
    array, NaN where not evaluated or without a good neighbour.
    """
    n, ny, nx = cube.shape
    if where is None:
        where = np.ones(cube.shape, bool)
    ii, yy, xx = np.nonzero(where)
    ks = [k for k in range(-halfwidth, halfwidth + 1) if k != 0
          and (side == "both" or (side == "up" and k > 0) or (side == "down" and k < 0))]
    vals = np.full((len(ks), ii.size), np.nan, np.float64)
    j = 0
    for k in ks:
        y2 = yy + k
        ok = (y2 >= 0) & (y2 < ny)
        y2c = np.clip(y2, 0, ny - 1)
        v = cube[ii, y2c, xx].astype(np.float64)
        ok &= ~bad[ii, y2c, xx] & np.isfinite(v)
        vals[j] = np.where(ok, v, np.nan)
        j += 1
    out = np.full(cube.shape, np.nan, np.float32)
    with _quiet_nanwarnings():
        out[ii, yy, xx] = np.nanmedian(vals, axis=0)
    return out


def _pair_mean_rows(cube, bad, halfwidth, where):
    """Estimate at ``where`` from symmetric neighbour pairs along rows (same column): the median over
    k = 1..halfwidth of (v[y-k] + v[y+k]) / 2 for the pairs whose two members are good.

    Exact for a spectrum linear in row and unbiased for a sloped one even when the flagged pixels sit
    asymmetrically around ``y`` (a plain median of the remaining neighbours is then biased by the slope);
    the median over pairs keeps it robust to a deviant neighbour.  Returns a full-shape float32 array,
    NaN where not evaluated or without a good pair.
    """
    n, ny, nx = cube.shape
    ii, yy, xx = np.nonzero(where)
    vals = np.full((halfwidth, ii.size), np.nan, np.float64)
    for j, k in enumerate(range(1, halfwidth + 1)):
        ylo, yhi = yy - k, yy + k
        ok = (ylo >= 0) & (yhi < ny)
        ylo, yhi = np.clip(ylo, 0, ny - 1), np.clip(yhi, 0, ny - 1)
        lo = cube[ii, ylo, xx].astype(np.float64)
        hi = cube[ii, yhi, xx].astype(np.float64)
        ok &= ~bad[ii, ylo, xx] & ~bad[ii, yhi, xx] & np.isfinite(lo) & np.isfinite(hi)
        vals[j] = np.where(ok, 0.5 * (lo + hi), np.nan)
    out = np.full(cube.shape, np.nan, np.float32)
    with _quiet_nanwarnings():
        out[ii, yy, xx] = np.nanmedian(vals, axis=0)
    return out


def clean_bad_pixels(rates: RateData, *, space_thresh=10.0, space_halfwidth=3, time_thresh=10.0,
                     time_window=5, skip_temporal=False, baseline_ints=None):
    """Replace spatial and temporal outliers (exoTEDRF ``badpixstep``, Radica 2024).

    (a) Spatial: on the deep frame M, a pixel is bad when ``|M - med| > space_thresh * s``, with ``med``
    the median of its ``space_halfwidth`` neighbours either side along rows (same column) and ``s``
    the robust (1.4826 MAD) scatter of ``M - med`` over 21 rows of that column (at least the column's
    overall MAD), AND it also deviates by more than
    ``space_thresh * s / 2`` from the one-sided medians above and below (so a real sharp spectral edge,
    which matches one side, is kept); also every pixel that is non-finite or
    flagged DO_NOT_USE/DEAD/HOT/SATURATED in an integration (there, only in that integration).
    Reference columns 0-3 are left untouched.  Bad values are replaced, in that integration, by the
    median over k = 1..``space_halfwidth`` of the means of the good symmetric pairs (y-k, y+k) of the
    same column (unbiased on a sloped spectrum; windows of 2x and 4x the half-width when no pair is
    good, then the deep-frame value); DO_NOT_USE is cleared and FLUX_ESTIMATED set.  A value with no
    estimate stays NaN and DO_NOT_USE (warning with the count).
    (b) Temporal: with F the running median over ``time_window`` integrations and
    ``sigma = median|R_i - (R_{i-1}+R_{i+1})/2| / (0.6745 sqrt(1.5))`` per pixel (Gaussian-equivalent
    point-to-point scatter), values with ``|R - F| > time_thresh * sigma`` are replaced by F and flagged
    OUTLIER|FLUX_ESTIMATED.  Needs >= 5 integrations (else skipped with a log line).

    Returns
    -------
    (RateData, diagnostics) with ``hot_pixel_map`` bool ``(nrows, ncols)`` (spatial map from the deep
    frame and persistent DQ flags), ``n_replaced_spatial`` (replaced pixel-integration values),
    ``n_replaced_temporal``, ``temporal_count_map`` int ``(nrows, ncols)``.
    """
    nints, nrows, ncols = rates.data.shape
    data = rates.data.copy()
    dq = rates.dq.copy()
    refcols = np.zeros((nrows, ncols), bool)
    refcols[:, : reference.N_REFERENCE_COLUMNS] = True

    bad_int = (~np.isfinite(data) | dq_has(dq, BAD_PIXEL_FLAGS)) & ~refcols[None]
    deep = make_deep_frame(rates, baseline_ints)
    dbad = ~np.isfinite(deep)[None]
    dmed = _local_median_rows(deep[None], dbad, space_halfwidth)[0]
    # a spectral feature (e.g. the peak of the spectrum near 5 um) scales the whole spatial profile of
    # its row, a hot pixel does not: the neighbours' median is scaled to the row's brightness (median
    # over the row's bright pixels of deep / dmed, >= 3 of them, so one hot pixel does not move it)
    with np.errstate(all="ignore"), _quiet_nanwarnings():
        bright = (np.isfinite(deep) & np.isfinite(dmed) & ~refcols
                  & (dmed > 0.2 * np.nanmax(np.where(refcols, np.nan, dmed), axis=1, keepdims=True)))
        rrow = nanmedian(np.where(bright, deep / dmed, np.nan), axis=1)
    rrow = np.where(np.isfinite(rrow) & (bright.sum(axis=1) >= 3), rrow, 1.0)
    resid = deep - dmed * rrow[:, None]
    # the scatter is measured locally (21 rows along the column): along the trace it grows with the
    # spectrum's brightness, and a per-column scale would flag the bright part of the trace
    a = np.abs(np.nan_to_num(resid, nan=0.0))
    s = 1.4826 * ndimage.median_filter(a, size=(21, 1), mode="nearest")
    with _quiet_nanwarnings():
        floor = 1.4826 * np.nanmedian(np.abs(resid), axis=0)  # per column, for flat (zero-MAD) regions
    s = np.maximum(s, np.where(np.isfinite(floor), floor, 0.0)[None, :])
    # nor below the deep frame's expected noise (ERR of the good values over sqrt(N), x sqrt(pi/2) for a
    # median): on very smooth (e.g. noiseless simulated) data the MAD alone flags the neighbours of a
    # hot pixel and the spectrum's own steep edges
    with _quiet_nanwarnings():
        e_ok = np.where(np.isfinite(rates.err) & ~bad_int, rates.err.astype(np.float64), np.nan)
        enoise = nanmedian(e_ok, axis=0) * np.sqrt(0.5 * np.pi / max(nints, 1))
    s = np.maximum(s, np.where(np.isfinite(enoise), enoise, 0.0))
    s = np.where(np.isfinite(s) & (s > 0), s, np.inf)
    # a hot pixel deviates from its neighbours on both sides along the dispersion direction; a sharp
    # spectral feature (e.g. the steep short-wavelength cut-off near row 395) agrees with one side
    dev = []
    for side in ("up", "down"):
        m = _local_median_rows(deep[None], dbad, space_halfwidth, side=side)[0]
        dev.append(np.abs(deep - m))
    with _quiet_nanwarnings():
        dev = np.nanmin(np.stack(dev), axis=0)
    hot = ((np.abs(np.nan_to_num(resid)) > space_thresh * s)
           & (np.nan_to_num(dev) > 0.5 * space_thresh * s) & ~refcols)
    hot |= ~np.isfinite(deep) & ~refcols
    persistent = bad_int.mean(axis=0) > 0.5
    hot_map = hot | persistent
    replace = bad_int | hot_map[None]
    n_sp = int(replace.sum())
    if n_sp:
        lm = _pair_mean_rows(data, replace, space_halfwidth, where=replace)
        # a whole flagged run along rows (e.g. a hot pixel whose smooth, noiseless neighbours were
        # flagged with it) has no good neighbour: widen the window, then the deep-frame value; a value
        # still unknown stays NaN and DO_NOT_USE (never a silent 0)
        for hw in (2 * space_halfwidth, 4 * space_halfwidth):
            miss = replace & ~np.isfinite(lm)
            if not miss.any():
                break
            lm = np.where(miss, _pair_mean_rows(data, replace, hw, where=miss), lm)
        lm = np.where(np.isfinite(lm), lm, deep[None])
        unknown = replace & ~np.isfinite(lm)
        if unknown.any():
            log.warning("bad pixels (spatial): %d pixel-integration values have no good neighbour within "
                        "+-%d rows nor a deep-frame value; set to NaN and flagged DO_NOT_USE",
                        int(unknown.sum()), 4 * space_halfwidth)
        data = np.where(replace, lm, data).astype(np.float32)
        est = replace & ~unknown
        dq = np.where(est, (dq & ~np.uint32(DQ.DO_NOT_USE)) | np.uint32(DQ.FLUX_ESTIMATED), dq)
        dq = np.where(unknown, dq | np.uint32(DQ.DO_NOT_USE), dq)
    log.info("bad pixels (spatial): %d pixels in the hot-pixel map, %d pixel-integration values "
             "replaced", int(hot_map.sum()), n_sp)

    n_t = 0
    tcount = np.zeros((nrows, ncols), np.int32)
    if skip_temporal:
        log.info("bad pixels (temporal): skipped by configuration")
    elif nints < 5:
        log.info("bad pixels (temporal): skipped, only %d integrations (need >= 5)", nints)
    else:
        win = int(time_window) | 1
        filt = ndimage.median_filter(data, size=(win, 1, 1), mode="nearest")
        p2p = np.abs(data[1:-1] - 0.5 * (data[:-2] + data[2:]))
        sig = np.median(p2p, axis=0) / (0.6745 * np.sqrt(1.5))
        pos = sig[sig > 0]
        sig = np.where(sig > 0, sig, np.median(pos) if pos.size else np.inf)
        out = (np.abs(data - filt) > time_thresh * sig[None]) & ~refcols[None]
        n_t = int(out.sum())
        tcount = out.sum(axis=0).astype(np.int32)
        data = np.where(out, filt, data).astype(np.float32)
        dq = np.where(out, dq | np.uint32(DQ.OUTLIER | DQ.FLUX_ESTIMATED), dq)
        log.info("bad pixels (temporal): %d values replaced (%d pixels affected)", n_t,
                 int((tcount > 0).sum()))
    diag = {"hot_pixel_map": hot_map, "n_replaced_spatial": n_sp, "n_replaced_temporal": n_t,
            "temporal_count_map": tcount, "n_hot_pixels": int(hot_map.sum())}
    return rates.replace(data=data, dq=dq.astype(np.uint32)), diag


# ------------------------------------------------------------------------------------------- 5. PCA

class PCAResult(dict):
    """Results of :func:`pca_reconstruct` (a dict with attribute access).

    Keys: ``eigenimages`` float32 ``(K, nrows, ncols)`` (NaN outside the PCA columns),
    ``timeseries`` float64 ``(K, nints)`` (PC scores, data units), ``explained_variance_ratio`` ``(K,)``,
    ``removed`` list of 1-based components subtracted, ``columns`` (start, stop),
    ``removed_variance_map`` float32 ``(nrows, ncols)`` (variance over time of what was subtracted).
    """

    __getattr__ = dict.__getitem__


def pca_reconstruct(rates: RateData, *, n_components=10, remove_components=(), columns=(12, 61)):
    """PCA of the integration x pixel matrix and removal of chosen components (exoTEDRF, Radica 2024).

    With X the ``(nints, P)`` matrix of the pixels in ``columns`` (NaN filled with the pixel's time
    median), scikit-learn PCA centres each pixel over time and computes X - mu = U S V^T (truncated to
    K components): rows of V^T are the **eigenimages**, columns of U S the **eigen-time-series**
    (component scores).  Removing component k subtracts exactly ``(U S)_k V^T_k`` -- never the mean, so
    the data level is kept; no re-fit (the exoTEDRF k=1 mean edge case is avoided).  PC1 of a transit
    observation is usually the transit itself: only remove components you have identified as
    systematics (e.g. by their correlation with trace position).

    Returns (RateData, PCAResult).  Raises ConfigError for a component number > n_components.
    """
    from sklearn.decomposition import PCA

    nints, nrows, ncols = rates.data.shape
    c0, c1 = int(columns[0]), int(columns[1])
    c0 = max(c0, reference.N_REFERENCE_COLUMNS)
    c1 = min(c1, ncols)
    if c1 - c0 < 2:
        raise ConfigError(f"stage2.pca.columns {columns!r} leave fewer than 2 columns")
    sub = rates.data[:, :, c0:c1].astype(np.float64).reshape(nints, -1)
    with _quiet_nanwarnings():
        med = nanmedian(sub, axis=0)
    med = np.where(np.isfinite(med), med, 0.0)
    sub = np.where(np.isfinite(sub), sub, med[None])
    k = int(min(n_components, nints - 1, sub.shape[1]))
    if k < 1:
        raise ConfigError(f"PCA needs at least 2 integrations (got {nints})")
    remove = sorted({int(r) for r in remove_components})
    if remove and max(remove) > k:
        raise ConfigError(f"stage2.pca.remove_components {remove} exceeds the {k} components computed")
    # 'auto' lets scikit-learn pick the fastest exact or randomised solver for this shape (measured
    # 10x faster than 'full' for 60 x 20 000); random_state makes randomised solutions reproducible
    pca = PCA(n_components=k, svd_solver="auto", random_state=0)
    scores = pca.fit_transform(sub)  # (nints, K) = U S
    comps = pca.components_  # (K, P) = V^T
    eig = np.full((k, nrows, ncols), np.nan, np.float32)
    eig[:, :, c0:c1] = comps.reshape(k, nrows, c1 - c0)
    removed_var = np.zeros((nrows, ncols), np.float32)
    data = rates.data
    if remove:
        idx = np.asarray(remove) - 1
        model = scores[:, idx] @ comps[idx]  # (nints, P)
        data = rates.data.copy()
        data[:, :, c0:c1] -= model.reshape(nints, nrows, c1 - c0).astype(np.float32)
        removed_var[:, c0:c1] = model.var(axis=0).reshape(nrows, c1 - c0)
        log.info("PCA: removed components %s (%.3g %% of the variance)", remove,
                 100 * pca.explained_variance_ratio_[idx].sum())
    else:
        log.info("PCA: %d components computed, none removed (explained variance ratio of PC1-3: %s)",
                 k, np.array2string(pca.explained_variance_ratio_[:3], precision=3))
    res = PCAResult(eigenimages=eig, timeseries=scores.T.copy(),
                    explained_variance_ratio=pca.explained_variance_ratio_.copy(),
                    removed=remove, columns=(c0, c1), removed_variance_map=removed_var)
    return rates.replace(data=data), res


# --------------------------------------------------------------------------------------------- runner

def run_stage2(rates: RateData, config: dict | None = None, *, plot_dir=None, references=None,
               diagnostics_file=None):
    """Run Stage 2 (rateints -> calints) from a ``stage2`` config section.

    Parameters
    ----------
    rates : RateData ``(nints, 416, 72)``, DN/s (our or the STScI pipeline's rateints) or MJy/sr
        (calints; units kept).
    config : the ``stage2`` section (validated against :data:`CONFIG_SCHEMA`; None -> defaults).
    plot_dir : directory for diagnostic figures (None -> none).
    diagnostics_file : where to write the diagnostics FITS (deep frame, hot-pixel map, ...; see
        :func:`write_stage2_diagnostics`; replaced if present); None -> ``plot_dir /
        stage2_diagnostics.fits`` when ``plot_dir`` is given, else not written.
    references : optional dict; ``references["flat"]`` (path or array) overrides ``flat_field.path``,
        ``references["specwcs"]`` overrides ``wavelength.specwcs_path``.

    Returns
    -------
    (calints RateData, diagnostics dict) -- diagnostics: ``deep_frame`` float32 ``(nrows, ncols)``,
    ``background`` ``(nints, nrows, ncols)`` or None, ``background_columns``, ``trace_center``,
    ``hot_pixel_map``, ``n_replaced_spatial``, ``n_replaced_temporal``, ``pca`` (PCAResult or None)
    and, when some were found, ``bad_integrations`` bool ``(nints,)``.  Integrations with more than
    ``bad_integrations.max_bad_fraction`` of their science pixels non-finite or DO_NOT_USE
    (:func:`find_bad_integrations`) skip every step and come back SCI/ERR NaN with every pixel
    DO_NOT_USE; the header keyword NBADINT counts them (BADINTFR: the threshold).

    Raises ConfigError (bad config), EmptyDataError (all-NaN input), ShapeError, ReferenceFileError.
    """
    cfg = validate(config, CONFIG_SCHEMA, "stage2")
    _check_rates(rates)
    references = dict(references or {})
    log.info("Stage 2 on %d integrations of %s, units %s (kept)", rates.nints,
             rates.data.shape[1:], rates.units)
    diag: dict = {}
    wc = cfg["wavelength"]
    out = assign_wavelength(rates, wc["source"], references.get("specwcs") or wc["specwcs_path"],
                            map_name=wc["map"])

    fc = cfg["flat_field"]
    if fc["skip"]:
        log.info("flat_field: skipped by configuration")
    else:
        flat = references.get("flat", fc["path"])
        if flat is None and fc["use_crds_cache"]:
            flat = reference.find_reference("flat", meta=rates.meta)
            if flat is not None:
                log.info("flat_field: using %s from the CRDS cache", flat)
        out = flat_field(out, flat)

    base = cfg["deep_frame"]["baseline_ints"]
    full, bad_ints = out, find_bad_integrations(out, cfg["bad_integrations"]["max_bad_fraction"])
    if bad_ints.any():
        good = np.flatnonzero(~bad_ints)
        out = out.select_integrations(good)
        base = _baseline_among(base, bad_ints)
    bc = cfg["background"]
    center = bc["trace_center"]
    if center is None:
        center = estimate_trace_column(make_deep_frame(out, base))
    diag["trace_center"] = float(center)
    diag["background"] = None
    if bc["skip"]:
        log.info("background: skipped by configuration")
    else:
        out, bkg = subtract_background(out, method=bc["method"], trace_center=center,
                                       trace_halfwidth=bc["trace_halfwidth"],
                                       region_width=bc["region_width"], clip_sigma=bc["clip_sigma"],
                                       smooth_rows=bc["smooth_rows"])
        diag["background"] = bkg
        diag["background_columns"] = _background_columns(out.data.shape[2], center,
                                                         bc["trace_halfwidth"], bc["region_width"])

    bp = cfg["bad_pixels"]
    if bp["skip"]:
        log.info("bad_pixels: skipped by configuration")
        diag.update(hot_pixel_map=np.zeros(out.data.shape[1:], bool), n_replaced_spatial=0,
                    n_replaced_temporal=0)
    else:
        out, bdiag = clean_bad_pixels(out, space_thresh=bp["space_thresh"],
                                      space_halfwidth=bp["space_halfwidth"], time_thresh=bp["time_thresh"],
                                      time_window=bp["time_window"], skip_temporal=bp["skip_temporal"],
                                      baseline_ints=base)
        diag.update(bdiag)

    pc = cfg["pca"]
    diag["pca"] = None
    if pc["skip"]:
        log.info("pca: skipped by configuration (deep frame still produced)")
    elif out.nints < 3:
        log.info("pca: skipped, only %d integrations", out.nints)
    else:
        out, pres = pca_reconstruct(out, n_components=pc["n_components"],
                                    remove_components=pc["remove_components"], columns=pc["columns"])
        diag["pca"] = pres

    diag["deep_frame"] = make_deep_frame(out, base)
    if bad_ints.any():
        out, diag = _restore_bad_integrations(out, full, bad_ints, diag)
    meta = dict(out.meta)
    meta["S_TSOS2"] = "COMPLETE"
    meta["NBADINT"] = int(bad_ints.sum())
    meta["BADINTFR"] = float(cfg["bad_integrations"]["max_bad_fraction"])
    out = out.replace(meta=meta)
    if plot_dir is not None:
        _plots(out, diag, plot_dir)
    if diagnostics_file is None and plot_dir is not None:
        diagnostics_file = Path(plot_dir) / "stage2_diagnostics.fits"
    if diagnostics_file is not None:
        write_stage2_diagnostics(diagnostics_file, diag, overwrite=True)
        log.info("Stage 2: wrote %s (deep frame, hot-pixel map: %d spatial + %d temporal replacements)",
                 Path(diagnostics_file).name, int(diag.get("n_replaced_spatial", 0)),
                 int(diag.get("n_replaced_temporal", 0)))
    return out, diag


def find_bad_integrations(rates: RateData, max_bad_fraction: float = 0.5) -> np.ndarray:
    """Integrations that are mostly bad data, bool ``(nints,)``.

    An integration is bad when more than ``max_bad_fraction`` of its science pixels (columns from 4 on:
    the reference columns carry no light) are non-finite or flagged DO_NOT_USE.  Such an integration
    (a dropped or corrupted frame) is excluded, not repaired: spatial replacement would fill it with
    the neighbours' values -- for an all-NaN frame, the deep frame itself -- and the light curve would
    show a normal-looking point.  Each bad integration is logged at WARNING with its fraction.
    """
    sci = (slice(None), slice(None), slice(reference.N_REFERENCE_COLUMNS, None))
    bad = ~np.isfinite(rates.data[sci]) | dq_has(rates.dq[sci], DQ.DO_NOT_USE)
    frac = bad.reshape(rates.nints, -1).mean(axis=1)
    out = frac > max_bad_fraction
    if out.any():
        idx = np.flatnonzero(out)
        start = int(rates.meta.get("INTSTART", 1) or 1)
        log.warning("bad integrations: %d of %d have more than %.0f %% of their science pixels non-finite or "
                    "DO_NOT_USE and are excluded (SCI NaN, DQ DO_NOT_USE; header NBADINT): integration(s) %s "
                    "(bad fractions %s)", idx.size, rates.nints, 100 * max_bad_fraction,
                    ", ".join(str(start + k) for k in idx[:20]) + (" ..." if idx.size > 20 else ""),
                    ", ".join(f"{frac[k]:.2f}" for k in idx[:20]))
    if out.all():
        raise EmptyDataError(rates.meta.get("_source_path", "<in-memory RateData>"),
                             f"every integration has more than {100 * max_bad_fraction:.0f} % bad pixels")
    return out


def _baseline_among(baseline_ints, bad_ints):
    """``baseline_ints`` ([start, stop) pairs over all integrations) re-expressed over the good ones."""
    if baseline_ints is None:
        return None
    keep = np.zeros(bad_ints.size, bool)
    keep[baseline_index(bad_ints.size, baseline_ints)] = True
    k = keep[~bad_ints]
    if not k.any():
        raise ConfigError(f"deep_frame.baseline_ints {baseline_ints!r} selects only bad integrations")
    edges = np.flatnonzero(np.diff(np.r_[0, k.astype(np.int8), 0]))
    return [int(x) for x in edges]


def _restore_bad_integrations(out: RateData, full: RateData, bad_ints, diag):
    """The processed good integrations back in their places among all of ``full``'s; the bad ones
    are SCI/ERR NaN with every pixel DO_NOT_USE.  Per-integration diagnostics are expanded alike."""
    n = bad_ints.size
    good = np.flatnonzero(~bad_ints)

    def expand(a, fill, axis=0):
        if a is None:
            return None
        shape = list(a.shape)
        shape[axis] = n
        b = np.full(shape, fill, a.dtype)
        idx = [slice(None)] * a.ndim
        idx[axis] = good
        b[tuple(idx)] = a
        return b

    dq = expand(out.dq, 0)
    dq[bad_ints] = full.dq[bad_ints] | np.uint32(DQ.DO_NOT_USE)
    res = full.replace(data=expand(out.data, np.nan), err=expand(out.err, np.nan), dq=dq,
                       var_poisson=expand(out.var_poisson, np.nan), var_rnoise=expand(out.var_rnoise, np.nan),
                       wavelength=out.wavelength, meta=out.meta)
    diag = dict(diag)
    if diag.get("background") is not None:
        diag["background"] = expand(diag["background"], np.nan)
    if diag.get("pca") is not None and "timeseries" in diag["pca"]:
        diag["pca"]["timeseries"] = expand(diag["pca"]["timeseries"], np.nan, axis=1)
    diag["bad_integrations"] = bad_ints
    return res, diag


def write_stage2_diagnostics(path, diag: dict, *, overwrite: bool = False):
    """Write the Stage 2 diagnostics to a FITS file (atomically: temporary file + ``os.replace``).

    HDUs: DEEP (deep frame, float32 ``(nrows, ncols)``), HOTPIX (uint8 hot-pixel map, 1 = replaced in
    every integration), TEMPOUT (int32 count of temporal replacements per pixel), BKGROW (float32
    ``(nints, nrows)`` median background of each row) and, when PCA ran, PCA_EIGIMG ``(K, nrows,
    ncols)`` and PCA_TS ``(K, nints)`` with the explained-variance ratios in the PCA_TS header
    (EVR1...).  Primary header: NREPSPA, NREPTEM (replaced values), TRACECOL.
    Raises OverwriteError when ``path`` exists and ``overwrite`` is False.
    """
    from astropy.io import fits

    from ._util import atomic_write

    from .errors import OverwriteError

    path = Path(path)
    if path.exists() and not overwrite:
        raise OverwriteError(f"{path} exists (pass overwrite=True to replace it)")
    prim = fits.PrimaryHDU()
    prim.header["NREPSPA"] = (int(diag.get("n_replaced_spatial", 0)), "spatially replaced values")
    prim.header["NREPTEM"] = (int(diag.get("n_replaced_temporal", 0)), "temporally replaced values")
    if "trace_center" in diag:
        prim.header["TRACECOL"] = (float(diag["trace_center"]), "coarse trace column (0-based)")
    hdus = [prim, fits.ImageHDU(np.asarray(diag["deep_frame"], np.float32), name="DEEP"),
            fits.ImageHDU(np.asarray(diag["hot_pixel_map"], np.uint8), name="HOTPIX")]
    if diag.get("temporal_count_map") is not None:
        hdus.append(fits.ImageHDU(np.asarray(diag["temporal_count_map"], np.int32), name="TEMPOUT"))
    if diag.get("background") is not None:
        hdus.append(fits.ImageHDU(np.median(diag["background"], axis=2).astype(np.float32), name="BKGROW"))
    pca = diag.get("pca")
    if pca is not None:
        hdus.append(fits.ImageHDU(pca["eigenimages"], name="PCA_EIGIMG"))
        ts = fits.ImageHDU(np.asarray(pca["timeseries"], np.float64), name="PCA_TS")
        for k, v in enumerate(pca["explained_variance_ratio"][:99]):
            ts.header[f"EVR{k + 1}"] = float(v)
        ts.header["REMOVED"] = ",".join(str(r) for r in pca["removed"]) or "none"
        hdus.append(ts)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: fits.HDUList(hdus).writeto(tmp, overwrite=True), ".fits")
    return path


def _plots(out, diag, plot_dir):
    from .plotting import spectroscopic as P

    d = Path(plot_dir)
    d.mkdir(parents=True, exist_ok=True)
    if diag.get("background") is not None:
        P.plot_background(diag["background"], diag["deep_frame"], diag.get("background_columns"),
                          path=d / "stage2_background.png")
    P.plot_bad_pixels(diag["deep_frame"], diag["hot_pixel_map"], diag.get("temporal_count_map"),
                      path=d / "stage2_bad_pixels.png")
    if diag.get("pca") is not None:
        P.plot_pca(diag["pca"], path=d / "stage2_pca.png")


local_median_rows = _local_median_rows  # TEMP shim for s3 (drop at merge)
