"""Stage 3 runner: calints -> x1dints + light curves, under the one stage contract.

Steps, in the order :func:`run` runs them (one module each):

1. :func:`deep_frame` -- median of the baseline integrations (row chunks, bounded memory).
2. :mod:`~tsoreduce.extraction.trace` -- edgetrigger trace on the deep frame (Radica et al. 2022) and
   the per-integration trace position and width (regressors).
3. :mod:`~tsoreduce.extraction.box` or :mod:`~tsoreduce.extraction.optimal` -- box (fractional edge
   pixels; optional width minimising the white-light scatter, Radica 2024) or optimal extraction
   (Horne 1986; Marsh 1989).  Pixels whose flux Stage 2 estimated are extracted with their estimate
   (inflated variance) and mark the element FLUX_ESTIMATED; unrepaired bad pixels are excluded
   (optimal) or mark it DO_NOT_USE (box).
4. :mod:`~tsoreduce.extraction.background_error` -- the background-subtraction noise added to ERR.
5. :mod:`~tsoreduce.extraction.wavelength` -- the wavelength map sampled at the trace (recorded in the
   x1dints header: R_SPCWCS, WAVSRC).
6. :mod:`~tsoreduce.extraction.binning` -- white and spectroscopic light curves.

The x1dints product (:class:`~tsoreduce.datamodel.SpectraData`) keeps one spectral element per detector
row with a valid wavelength, in row order (wavelength decreasing, as the STScI x1dints), flux in the
calints units summed over the aperture (DN/s; MJy/sr calints are converted to Jy when PIXAR_SR is known).
Stage 3 uses no reference files.  Sources: docs/sources.md.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..config import Param, validate
from ..contract import Stage3Product, StageResult, no_references
from ..datamodel import RateData, SpectraData
from ..errors import EmptyDataError, ShapeError
from ..spectroscopic import make_deep_frame
from ._blocks import BLOCK, row_chunks
from .background_error import spectra_background_error
from .binning import bin_lightcurves
from .box import box_extract, optimize_box_width
from .optimal import optimal_extract
from .trace import find_trace, load_centroids, measure_position_width, trace_rows
from .wavelength import spectral_units, wavelength_at_trace, wavelength_provenance

log = logging.getLogger(__name__)

__all__ = ["CONFIG_SCHEMA", "run", "run_with_deep_frame", "deep_frame"]

CONFIG_SCHEMA = {
    "trace": {
        "method": Param("edgetrigger", str, "trace centres: 'edgetrigger' on the deep frame, 'user' "
                        "(centroids_file) or 'nominal' (specwcs_0006 trace)",
                        choices=("edgetrigger", "user", "nominal")),
        "halfwidth": Param(2, int, "half-width (px) of the local-slope window of edgetrigger", min=1, max=6),
        "poly_order": Param(3, int, "order of the robust polynomial of centre vs row", min=0, max=8),
        "rows": Param(None, list, "[first, last] rows used to fit the trace; null -> rows with S/N above "
                      "snr_min", nullable=True, item_type=int, min=0),
        "snr_min": Param(10.0, float, "minimum peak S/N of a deep-frame row used by the trace fit", min=1.0),
        "centroids_file": Param(None, str, "CSV/ECSV with columns row, x (used when method='user')",
                                nullable=True),
        "regressor_halfwidth": Param(4, int, "half-width (px) of the region used to measure the "
                                     "per-integration offset and width", min=2, max=15),
    },
    "extraction": {
        "method": Param("optimal", str, "'optimal' (Horne 1986) or 'box'", choices=("optimal", "box")),
        "box_width": Param(7.0, float, "full width (px) of the box aperture", min=1.0, max=30.0),
        "optimize_width": Param(False, bool, "choose the box width minimising white-light scatter"),
        "width_grid": Param([2.0, 12.0, 0.5], list, "[min, max, step] of widths tried by optimize_width",
                            item_type=(int, float), min=0.5),
        "aperture_halfwidth": Param(6.0, float, "half-width (px) of the optimal-extraction aperture",
                                    min=1.0, max=20.0),
        "profile_halfwidth": Param(10.5, float, "half-width (px) of the region over which the optimal-"
                                   "extraction profile is normalised (the flux estimated is the flux "
                                   "in it; 10.5 = a 21-px box)", min=2.0, max=30.0),
        "profile_knot_rows": Param(40.0, float, "knot spacing (rows) of the B-spline profile model "
                                   "fitted along each column (Horne 1986 / Marsh 1989)", min=5.0,
                                   max=400.0),
        "clip_sigma": Param(5.0, float, "outlier rejection threshold of optimal extraction", min=2.0),
        "max_iter": Param(10, int, "maximum rejection iterations of optimal extraction", min=1, max=50),
        "shift_profile": Param(True, bool, "move the optimal-extraction profile with the measured "
                               "per-integration trace offset"),
        "rows": Param(None, list, "[first, last] rows written to the x1dints; null -> rows with a valid "
                      "wavelength", nullable=True, item_type=int, min=0),
    },
    "lightcurves": {
        "skip": Param(False, bool, "do not build light curves"),
        "edges": Param(None, list, "wavelength bin edges (um); overrides bin_width/resolution",
                       nullable=True, item_type=(int, float)),
        "resolution": Param(None, (int, float), "constant-R binning (log grid) instead of bin_width",
                            nullable=True, min=1.0),
        "bin_width": Param(0.5, float, "bin width (um) when neither edges nor resolution is given",
                           min=0.01),
        "white_range": Param([5.0, 12.0], list, "wavelength range (um) of the white light curve and of "
                             "the default bins", item_type=(int, float)),
        "normalise": Param(True, bool, "divide each light curve by its baseline median"),
        "baseline_ints": Param(None, list, "integrations defining the baseline ([start, stop) pairs, "
                               "0-based); null -> all", nullable=True, item_type=int),
        "max_bad_fraction": Param(0.5, float, "a channel point (white: the whole integration) whose "
                                  "wavelength weight is NaN or DO_NOT_USE beyond this fraction is NaN and "
                                  "masked, not repaired", min=0.0, max=1.0),
    },
}


def deep_frame(calints: RateData, baseline_ints=None) -> np.ndarray:
    """Deep (median) frame of the baseline integrations, computed over chunks of rows.

    Stage 2's :func:`tsoreduce.spectroscopic.make_deep_frame` (exoTEDRF ``make_baseline_stack_general``,
    Radica 2024) applied to chunks of rows, so its working copies are a chunk, not the whole cube; the
    median of each pixel is the same.

    Parameters
    ----------
    calints : RateData
        ``(nints, nrows, ncols)`` calints.
    baseline_ints : list of int or None
        ``[start, stop)`` pairs of 0-based baseline integrations (None: all).

    Returns
    -------
    numpy.ndarray
        Float32 ``(nrows, ncols)``, data units.
    """
    out = np.empty(calints.data.shape[1:], np.float32)
    for rows in row_chunks(calints.data.shape):
        part = RateData(data=calints.data[:, rows], dq=calints.dq[:, rows])
        out[rows] = make_deep_frame(part, baseline_ints)
    return out


def _check_input(calints):
    if not isinstance(calints, RateData):
        raise TypeError(f"Stage 3 needs a RateData (calints), got {type(calints).__name__}")
    # block by block: no boolean copy of the whole cube
    if not any(np.isfinite(calints.data[i0:i0 + BLOCK]).any() for i0 in range(0, calints.nints, BLOCK)):
        raise EmptyDataError(calints.meta.get("_source_path", "<in-memory RateData>"),
                             "SCI is non-finite everywhere")


def run(calints: RateData, config: dict | None = None, *, plot_dir=None, references=None) -> StageResult:
    """Run Stage 3 (calints -> x1dints + light curves) from a ``stage3`` config section.

    The deep frame is the median of the baseline integrations (``lightcurves.baseline_ints``,
    :func:`deep_frame`); user trace centroids come from ``trace.centroids_file``.  Pure: ``calints`` is
    not modified and nothing but figures is written.

    Parameters
    ----------
    calints : RateData
        ``(nints, 416, 72)`` calints after Stage 2 (background-subtracted), DN/s or MJy/sr.
    config : dict or None
        The ``stage3`` section (validated against :data:`CONFIG_SCHEMA`; None: defaults).
    plot_dir : str or pathlib.Path or None
        Directory for the figures (None: none).
    references : dict or None
        Must be empty: Stage 3 uses no reference files.

    Returns
    -------
    StageResult
        ``product``: :class:`~tsoreduce.contract.Stage3Product` (x1dints :class:`SpectraData`
        ``(nints, nwave)``, one element per row with a valid wavelength, row order, ``aux`` trace_x and
        trace_width (px); light curves, None when ``lightcurves.skip``); ``diagnostics``: the deep
        frame, trace, trace fit, extraction settings, box-width scan, background-error flag and the
        light-curve noise figures; ``figures``: paths written.

    Raises
    ------
    ValueError
        If ``references`` are given.
    TypeError
        If ``calints`` is not a RateData.
    ConfigError, EmptyDataError, ShapeError
        For a bad configuration, empty data, or inconsistent shapes.
    """
    no_references("stage3", references)
    cfg = validate(config, CONFIG_SCHEMA, "stage3")
    _check_input(calints)
    tc = cfg["trace"]
    centroids = None
    if tc["method"] == "user" and tc["centroids_file"]:
        centroids = load_centroids(tc["centroids_file"])
    deep = np.asarray(deep_frame(calints, cfg["lightcurves"]["baseline_ints"]), float)
    return _run(calints, cfg, deep, centroids, plot_dir)


def run_with_deep_frame(calints: RateData, deep_frame, config: dict | None = None, *, centroids=None,
                        plot_dir=None) -> StageResult:
    """Stage 3 with a given deep frame and user centroids (what :func:`run` derives from the data).

    Parameters
    ----------
    calints : RateData
        ``(nints, nrows, ncols)`` calints after Stage 2.
    deep_frame : numpy.ndarray
        ``(nrows, ncols)`` deep frame, data units (e.g. Stage 2's).
    config : dict or None
        The ``stage3`` section (None: defaults).
    centroids : tuple of numpy.ndarray or numpy.ndarray or None
        User trace (with ``trace.method = 'user'``): ``(rows, x)`` or an ``(nrows,)`` array.
    plot_dir : str or pathlib.Path or None
        Directory for the figures (None: none).

    Returns
    -------
    StageResult
        As :func:`run`.

    Raises
    ------
    ShapeError
        If ``deep_frame`` is not ``(nrows, ncols)``.
    ConfigError, EmptyDataError
        For a bad configuration or empty data.
    """
    cfg = validate(config, CONFIG_SCHEMA, "stage3")
    _check_input(calints)
    nrows, ncols = calints.data.shape[1:]
    deep = np.asarray(deep_frame, float)
    if deep.shape != (nrows, ncols):
        raise ShapeError(f"deep_frame has shape {deep.shape}, expected {(nrows, ncols)}")
    return _run(calints, cfg, deep, centroids, plot_dir)


def _run(calints, cfg, deep, centroids, plot_dir):
    """The steps after the checks: trace, extraction, ERR, x1dints, light curves, figures."""
    tr = _trace_step(calints, deep, cfg["trace"], centroids)
    flux, err, sdq, extr, scan = _extract_step(calints, deep, tr, cfg["extraction"])
    err, var_b = spectra_background_error(calints, deep, tr["trace"], extr, err)
    spectra = _spectra(calints, tr, flux, err, sdq, extr, cfg["extraction"], var_b is not None)
    lc = _lightcurves(spectra, cfg["lightcurves"])
    figures = [] if plot_dir is None else _plots(deep, tr, extr, spectra, lc, scan, plot_dir)
    diagnostics = {"deep_frame": deep.astype(np.float32), "trace": tr["trace"], "trace_info": tr["info"],
                   "bright_rows": tr["bright"], "extraction": extr, "background_error": var_b is not None,
                   "width_scan": scan, "noise": None if lc is None else lc.meta.get("noise")}
    return StageResult(Stage3Product(x1dints=spectra, lightcurves=lc), diagnostics, figures)


def _trace_step(calints, deep, tc, centroids):
    """Trace, its fit info, the bright rows and the per-integration position / width."""
    trace, tinfo = find_trace(deep, method=tc["method"], halfwidth=tc["halfwidth"],
                              poly_order=tc["poly_order"], rows=tc["rows"], snr_min=tc["snr_min"],
                              centroids=centroids)
    bright = tinfo["rows"] if tc["method"] == "edgetrigger" else trace_rows(
        deep, float(np.median(trace)), tc["snr_min"], tc["rows"])
    trace_x, trace_w = measure_position_width(calints, deep, trace, rows=bright,
                                              regressor_halfwidth=tc["regressor_halfwidth"])
    return {"trace": trace, "info": tinfo, "bright": bright, "trace_x": trace_x, "trace_width": trace_w}


def _extract_step(calints, deep, tr, ec):
    """Box or optimal extraction: ``(flux, err, dq, extraction settings, width scan or None)``."""
    trace, bright = tr["trace"], tr["bright"]
    if ec["method"] == "box":
        width, scan = ec["box_width"], None
        if ec["optimize_width"]:
            lo, hi, st = ec["width_grid"]
            width, ws, sc = optimize_box_width(calints, trace, bright, np.arange(lo, hi + 1e-9, st))
            scan = (ws, sc)
        flux, err, sdq = box_extract(calints, trace, width)
        return flux, err, sdq, {"method": "box", "width": width}, scan
    shifts = tr["trace_x"] - float(np.mean(trace[bright])) if ec["shift_profile"] else None
    flux, err, sdq, nrej = optimal_extract(calints, deep, trace, aperture_halfwidth=ec["aperture_halfwidth"],
                                           clip_sigma=ec["clip_sigma"], max_iter=ec["max_iter"],
                                           shifts=shifts, profile_halfwidth=ec["profile_halfwidth"],
                                           profile_knot_rows=ec["profile_knot_rows"])
    extr = {"method": "optimal", "aperture_halfwidth": ec["aperture_halfwidth"], "n_rejected": nrej}
    return flux, err, sdq, extr, None


def _spectra(calints, tr, flux, err, sdq, extr, ec, bkgerr):
    """The x1dints: rows with a valid wavelength (and within ``extraction.rows``), header keywords."""
    nrows = calints.data.shape[1]
    trace = tr["trace"]
    wave = wavelength_at_trace(calints, trace)
    # rows outside the wavelength table are not spectral elements: they are left out of the x1dints
    keep = np.isfinite(wave)
    if ec["rows"] is not None:
        r = np.arange(nrows)
        keep &= (r >= ec["rows"][0]) & (r <= ec["rows"][1])
    if not keep.any():
        raise EmptyDataError("<calints>", "no row has a valid wavelength in the selected rows")
    scale, units = spectral_units(calints)
    meta = {k: v for k, v in calints.meta.items() if not str(k).startswith("_")}
    meta.update(wavelength_provenance(calints))
    meta.setdefault("R_SPCWCS", "unknown (calints wavelength map of unrecorded origin)")
    meta.update({"S_TSOS3": "COMPLETE", "EXTRMETH": extr["method"],
                 "_trace": trace[keep], "_rows": np.flatnonzero(keep)})
    meta["BKGERR"] = bool(bkgerr)
    if extr["method"] == "box":
        meta["EXTRWID"] = float(extr["width"])
    else:
        meta["EXTRAPHW"] = float(extr["aperture_halfwidth"])
        meta["EXTRPRHW"] = max(float(ec["profile_halfwidth"]), float(extr["aperture_halfwidth"]))
    spectra = SpectraData(data=flux[:, keep] * scale, err=err[:, keep] * scale, dq=sdq[:, keep],
                          wavelength=wave[keep], int_times=calints.int_times,
                          aux={"trace_x": tr["trace_x"], "trace_width": tr["trace_width"]}, meta=meta,
                          units=units)
    log.info("x1dints: %d integrations x %d wavelengths (%.2f-%.2f um), %s extraction", spectra.nints,
             int(keep.sum()), np.nanmin(wave[keep]), np.nanmax(wave[keep]), extr["method"])
    return spectra


def _lightcurves(spectra, lc_cfg):
    if lc_cfg["skip"]:
        log.info("lightcurves: skipped by configuration")
        return None
    return bin_lightcurves(spectra, edges=lc_cfg["edges"], resolution=lc_cfg["resolution"],
                           white_range=tuple(lc_cfg["white_range"]), normalise=lc_cfg["normalise"],
                           bin_width=lc_cfg["bin_width"], baseline_ints=lc_cfg["baseline_ints"],
                           max_bad_fraction=lc_cfg["max_bad_fraction"])


def _plots(deep, tr, extr, spectra, lc, scan, plot_dir):
    """The Stage 3 figures; returns the paths written."""
    from ..plotting import extraction as P

    d = Path(plot_dir)
    d.mkdir(parents=True, exist_ok=True)
    width = extr.get("width", 2 * extr.get("aperture_halfwidth", 3.5))
    out = [d / "stage3_deep_frame_aperture.png"]
    P.plot_deep_frame_aperture(deep, tr["trace"], width, tr["info"], path=out[-1])
    if lc is not None:
        out.append(d / "stage3_lightcurve_image.png")
        P.plot_lightcurve_image(lc, path=out[-1])
        out.append(d / "stage3_white_light.png")
        P.plot_white_light(lc, path=out[-1])
    out.append(d / "stage3_regressors.png")
    P.plot_regressors(spectra, path=out[-1])
    if scan is not None:
        out.append(d / "stage3_box_width_scan.png")
        P.plot_width_scan(*scan, path=out[-1])
    return out


