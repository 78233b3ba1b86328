"""Stage 2 runner: rateints -> calints, one call per step, under the one stage contract.

:func:`run` (``run(rates, config=None, *, plot_dir=None, references=None) -> StageResult``) is pure:
``rates`` is never modified and nothing is written but the figures in ``plot_dir``.  The file-level
runner (:func:`tsoreduce.pipeline.run_stage2_files`) reads the rateints, calls :func:`run` and writes
the calints and the diagnostics file (:func:`~tsoreduce.spectroscopic.write_stage2_diagnostics`).

Memory: the product needs a new SCI and DQ; ERR and the variances are shared with the input (no step
changes them; a flat field makes new ones).  The steps then work in place on that one SCI/DQ pair,
block by block of integrations or slab by slab of rows, so the peak is about the input plus two cubes
(see benchmarks/bench_full_tso.py).
"""

from __future__ import annotations

import logging

import numpy as np

from .. import reference
from ..config import Param, validate
from ..contract import StageResult, progress_enabled
from ..datamodel import RateData
from .background import _background_columns, estimate_trace_column, subtract_background_inplace
from .bad_integrations import baseline_among, find_bad_integrations, restore_bad_integrations
from .badpix import clean_bad_pixels_inplace
from .common import check_rates, make_deep_frame
from .flat import flat_field, resolve_flat
from .pca import pca_reconstruct_inplace
from .wavelength import assign_wavelength

log = logging.getLogger(__name__)

__all__ = ["CONFIG_SCHEMA", "run", "run_stage2"]

#: reference files Stage 2 accepts through ``references``
REFERENCE_NAMES = ("flat", "specwcs")

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


def run(rates: RateData, config: dict | None = None, *, plot_dir=None, references=None) -> StageResult:
    """Run Stage 2 (rateints -> calints) from a ``stage2`` config section.

    Steps, in order: :func:`~tsoreduce.spectroscopic.assign_wavelength`,
    :func:`~tsoreduce.spectroscopic.flat_field`, :func:`~tsoreduce.spectroscopic.subtract_background`,
    :func:`~tsoreduce.spectroscopic.clean_bad_pixels`, :func:`~tsoreduce.spectroscopic.pca_reconstruct`,
    :func:`~tsoreduce.spectroscopic.make_deep_frame` (sources in each step's docstring).
    Integrations with more than ``bad_integrations.max_bad_fraction`` of their science pixels
    non-finite or DO_NOT_USE (:func:`~tsoreduce.spectroscopic.find_bad_integrations`) skip every step
    and come back SCI/ERR NaN with every pixel DO_NOT_USE; the header keyword NBADINT counts them
    (BADINTFR: the threshold).  Units of the input are kept (every step is linear or rank-based).

    Parameters
    ----------
    rates : tsoreduce.datamodel.RateData
        ``(nints, 416, 72)`` rateints in DN/s (ours or the STScI pipeline's) or calints in MJy/sr
        (units kept); never modified.
    config : dict, optional
        The ``stage2`` section, validated against :data:`CONFIG_SCHEMA` (None -> defaults).
    plot_dir : str or os.PathLike, optional
        Directory for the diagnostic figures (None -> no figures).
    references : dict, optional
        ``"flat"`` (path or ``(nrows, ncols)`` array) overrides ``flat_field.path``; ``"specwcs"``
        (path) overrides ``wavelength.specwcs_path``; other names (a run's references serve every
        stage) are not used (logged).

    Returns
    -------
    tsoreduce.contract.StageResult
        ``product``: the calints RateData (S_TSOS2 = COMPLETE).  ``diagnostics``: ``deep_frame``
        float32 ``(nrows, ncols)``; ``background`` float32 ``(nints, nrows, ncols)`` (read-only view
        for the median method) or None; ``background_columns``; ``trace_center``; ``hot_pixel_map``;
        ``temporal_count_map``; ``n_replaced_spatial``; ``n_replaced_temporal``; ``pca``
        (:class:`~tsoreduce.spectroscopic.PCAResult` or None); ``bad_integrations`` bool
        ``(nints,)`` when some were found.  ``figures``: the PNG files written.

    Raises
    ------
    tsoreduce.errors.ConfigError
        Bad configuration (before any work).
    tsoreduce.errors.EmptyDataError
        All-NaN input or every integration bad.
    tsoreduce.errors.ShapeError
        A flat of the wrong shape.
    tsoreduce.errors.ReferenceFileError
        An unreadable flat or specwcs file.
    """
    cfg = validate(config, CONFIG_SCHEMA, "stage2")
    references = dict(references or {})
    other = sorted(set(references) - set(REFERENCE_NAMES))
    if other:  # a run's input.references serves every stage: Stage 1's files are not Stage 2's
        log.info("Stage 2 uses the reference files %s; not used here: %s", REFERENCE_NAMES, other)
    check_rates(rates)
    log.info("Stage 2 on %d integrations of %s, units %s (kept)", rates.nints, rates.data.shape[1:],
             rates.units)
    bar = _progress_bar()
    wc = cfg["wavelength"]
    out = assign_wavelength(rates, wc["source"], references.get("specwcs") or wc["specwcs_path"],
                            map_name=wc["map"])
    out, owned = _flat_step(out, cfg["flat_field"], references)
    bar.update()
    bad_ints = find_bad_integrations(out, cfg["bad_integrations"]["max_bad_fraction"])
    work, base = _working_copy(out, owned, bad_ints, cfg["deep_frame"]["baseline_ints"])
    diag: dict = {}
    work = _background_step(work, cfg["background"], base, diag)
    bar.update()
    _bad_pixel_step(work, cfg["bad_pixels"], base, diag)
    bar.update()
    diag["pca"] = _pca_step(work, cfg["pca"])
    bar.update()
    diag["deep_frame"] = make_deep_frame(work, base)
    if bad_ints.any():
        work, diag = restore_bad_integrations(work, out, bad_ints, diag)
    meta = dict(work.meta, S_TSOS2="COMPLETE", NBADINT=int(bad_ints.sum()),
                BADINTFR=float(cfg["bad_integrations"]["max_bad_fraction"]))
    product = work.replace(meta=meta)
    figures = _plots(diag, plot_dir) if plot_dir is not None else []
    bar.update()
    bar.close()
    return StageResult(product=product, diagnostics=diag, figures=figures)


#: the name users and tutorials know; the same function
run_stage2 = run


def _progress_bar():
    from tqdm.auto import tqdm
    return tqdm(total=5, desc="Stage 2", unit="step", leave=False, disable=not progress_enabled())


def _flat_step(rates: RateData, fc: dict, references: dict):
    """Flat field as configured; returns ``(rates, owned)``: ``owned`` when SCI/DQ are new arrays."""
    if fc["skip"]:
        log.info("flat_field: skipped by configuration")
        return rates, False
    flat = resolve_flat(fc, references, rates.meta)
    out = flat_field(rates, flat)
    return out, out is not rates


def _working_copy(out: RateData, owned: bool, bad_ints, baseline_ints):
    """The RateData the steps modify in place: the good integrations, with SCI and DQ of its own
    (copied unless ``owned``); ERR and the variances shared read-only.  Returns ``(work, baseline)``,
    the baseline re-expressed over the good integrations."""
    if bad_ints.any():
        # the variances are not used by the steps: restore_bad_integrations takes them from ``out``
        lean = out.replace(var_poisson=None, var_rnoise=None)
        return lean.select_integrations(np.flatnonzero(~bad_ints)), baseline_among(baseline_ints, bad_ints)
    if owned:
        return out, baseline_ints
    return out.replace(data=out.data.copy(), dq=out.dq.copy()), baseline_ints


def _background_step(work: RateData, bc: dict, base, diag: dict) -> RateData:
    """Trace centre and row-wise background (in place on ``work``); returns ``work`` with the
    estimator's keywords in its meta."""
    center = bc["trace_center"]
    if center is None:
        center = estimate_trace_column(make_deep_frame(work, base))
    diag["trace_center"] = float(center)
    diag["background"] = None
    if bc["skip"]:
        log.info("background: skipped by configuration")
        return work
    bkg, _, _, meta = subtract_background_inplace(
        work.data, work.dq, method=bc["method"], trace_center=center, trace_halfwidth=bc["trace_halfwidth"],
        region_width=bc["region_width"], clip_sigma=bc["clip_sigma"], smooth_rows=bc["smooth_rows"],
        units=work.units)
    meta.pop("_dq")  # flagged in place
    diag["background"] = bkg
    diag["background_columns"] = _background_columns(work.data.shape[2], center, bc["trace_halfwidth"],
                                                      bc["region_width"])
    return work.replace(meta={**work.meta, **meta})


def _bad_pixel_step(work: RateData, bp: dict, base, diag: dict) -> None:
    """Bad-pixel cleaning in place on ``work``; its diagnostics into ``diag``."""
    if bp["skip"]:
        log.info("bad_pixels: skipped by configuration")
        diag.update(hot_pixel_map=np.zeros(work.data.shape[1:], bool), n_replaced_spatial=0,
                    n_replaced_temporal=0)
        return
    diag.update(clean_bad_pixels_inplace(
        work.data, work.dq, work.err, space_thresh=bp["space_thresh"], space_halfwidth=bp["space_halfwidth"],
        time_thresh=bp["time_thresh"], time_window=bp["time_window"], skip_temporal=bp["skip_temporal"],
        baseline_ints=base))


def _pca_step(work: RateData, pc: dict):
    """PCA in place on ``work`` (components removed only when configured); the PCAResult or None."""
    if pc["skip"]:
        log.info("pca: skipped by configuration (deep frame still produced)")
        return None
    if work.nints < 3:
        log.info("pca: skipped, only %d integrations", work.nints)
        return None
    return pca_reconstruct_inplace(work.data, n_components=pc["n_components"],
                                   remove_components=pc["remove_components"], columns=pc["columns"])


def _plots(diag: dict, plot_dir) -> list:
    """The Stage 2 figures in ``plot_dir``; returns their paths."""
    from pathlib import Path

    from ..plotting import spectroscopic as P

    d = Path(plot_dir)
    d.mkdir(parents=True, exist_ok=True)
    figures = []
    if diag.get("background") is not None:
        figures.append(d / "stage2_background.png")
        P.plot_background(diag["background"], diag["deep_frame"], diag.get("background_columns"),
                          path=figures[-1])
    figures.append(d / "stage2_bad_pixels.png")
    P.plot_bad_pixels(diag["deep_frame"], diag["hot_pixel_map"], diag.get("temporal_count_map"),
                      path=figures[-1])
    if diag.get("pca") is not None:
        figures.append(d / "stage2_pca.png")
        P.plot_pca(diag["pca"], path=figures[-1])
    return figures
