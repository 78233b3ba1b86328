"""The MRS branch as a stage: config schema and ``run(cubes, config) -> StageResult(Stage3Product)``.

``run`` replaces Stage 3 for MRS input: it extracts every band with
:func:`~tsoreduce.mrs.photometry.extract_cube_photometry`, joins the bands
(:func:`~tsoreduce.mrs.bands.combine_bands`), builds band-aware light curves
(:func:`~tsoreduce.mrs.bands.mrs_light_curves`) that Stage 4 (``tsoreduce.lightcurve.run``) fits
unchanged, and stitches the time-median spectrum for display.  Reading (or simulating) the cubes and
writing the products belong to :func:`tsoreduce.pipeline.run_mrs_files`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..config import Param, validate
from ..contract import Stage3Product, StageResult, no_references, progress_enabled
from ..errors import ConfigError
from .bands import band_labels_of, combine_bands, mrs_light_curves, stitch_spectrum
from .cubes import CubeSeries, read_cube_bands
from .photometry import collapsed_image, extract_cube_photometry

log = logging.getLogger(__name__)

__all__ = ["CONFIG_SCHEMA", "INPUT_SCHEMA", "extract_cube_timeseries", "run"]

CONFIG_SCHEMA = {
    "centre": {
        "method": Param("moment", str, "fixed aperture centre: 'moment' (iterated first moment) or "
                        "'gaussian' (2-D Gaussian fit) on the time- and wavelength-collapsed, background-"
                        "subtracted image, or 'fixed' (use xy)", choices=("moment", "gaussian", "fixed")),
        "xy": Param(None, list, "[x, y] centre in 0-based spaxels (method 'fixed'; one pair used for "
                    "every band)", nullable=True, item_type=(int, float)),
        "track": Param(True, bool, "measure per-integration centroids as decorrelation regressors"),
    },
    "aperture": {
        "k_fwhm": Param(2.0, float, "aperture radius in FWHM(lambda) = 0.033 lambda + 0.106 arcsec "
                        "(Law et al. 2023; 2 as the STScI MRS reference)", min=0.25, max=6.0),
        "overlap": Param("exact", str, "circle-spaxel overlap: 'exact' or 'subpixel'",
                         choices=("exact", "subpixel")),
        "subpixels": Param(21, int, "samples per spaxel side for 'subpixel'", min=1, max=101),
    },
    "background": {
        "subtract": Param(True, bool, "subtract the annulus background"),
        "k_in": Param(2.5, float, "annulus inner radius in FWHM(lambda)", min=0.5, max=10.0),
        "k_out": Param(3.5, float, "annulus outer radius in FWHM(lambda)", min=0.6, max=12.0),
        "model": Param("mean", str, "'mean' (sigma-clipped mean SB of the annulus) or 'plane' (tilted "
                       "plane fitted to the annulus: exact for background gradients)",
                       choices=("mean", "plane")),
        "sigma": Param(3.0, float, "sigma-clipping threshold in the annulus (0 = no clipping)",
                       min=0.0, max=20.0),
        "maxiters": Param(5, int, "sigma-clipping iterations", min=1, max=50),
    },
    "mask": {
        "mode": Param("union", str, "bad spaxels held fixed in time: 'union' (bad in any integration -> "
                      "out of the aperture in all), 'fill' (scaled time-median PSF), or "
                      "'per_integration' (pipeline behaviour; fakes dips when a core spaxel flickers)",
                      choices=("union", "fill", "per_integration")),
    },
    "apcorr": {
        "method": Param("none", str, "aperture correction: 'none', analytic 'gaussian' / 'airy', or "
                        "'table' (columns wavelength, apcorr)", choices=("none", "gaussian", "airy", "table")),
        "table": Param(None, str, "aperture-correction table (ECSV/CSV/FITS) for method 'table'",
                       nullable=True),
    },
    "errors": {
        "covar_scale": Param(1.0, float, "multiplies the propagated errors (drizzle covariance, "
                             "Law et al. 2023: ~1.5-3)", min=0.1, max=10.0),
    },
    "lightcurves": {
        "channels": Param("width", str, "channels inside each band: 'width' (bin_width um bins), 'nbins' "
                          "(nbins per band), 'band' (one per band) or 'native' (every plane); bands are "
                          "never mixed", choices=("width", "nbins", "band", "native")),
        "bin_width": Param(0.1, float, "channel width (um) for channels = 'width'", min=1e-4),
        "nbins": Param(4, int, "channels per band for channels = 'nbins'", min=1),
        "normalise": Param(True, bool, "divide each light curve by its baseline median"),
        "baseline_ints": Param(None, list, "baseline integrations as [start, stop) pairs (0-based, "
                               "flat list); null -> all", nullable=True, item_type=int, min=0),
    },
    "stitch": {
        "method": Param("median_ratio", str, "stitching of the time-median spectrum for display: "
                        "'median_ratio' or 'inverse_variance'", choices=("median_ratio", "inverse_variance")),
        "reference": Param(None, str, "band the others are scaled to (median_ratio); null -> reddest",
                           nullable=True),
    },
    "chunk_planes": Param(64, int, "wavelength planes processed together (memory bound)", min=1),
}

_SIM_KEYS = {
    "nints": Param(40, int, "integrations", min=3),
    "bands": Param(["1A"], list, "MRS sub-bands to simulate, e.g. [1A, 2A]", item_type=str),
    "nwave": Param(12, int, "planes per band", min=2),
    "integration_time_s": Param(360.0, float, "integration duration (s)", min=1.0),
    "flux_jy": Param(0.1, float, "source flux density at 5 um (Jy)", min=0.0),
    "rp_rs": Param(0.1, float, "planet-to-star radius ratio at 5 um", min=0.0, max=0.5),
    "rp_rs_slope": Param(0.0, float, "d(Rp/Rs)/d(lambda) per um"),
    "jitter_spaxels": Param(0.0, float, "pointing jitter rms (spaxels)", min=0.0),
    "noise": Param(True, bool, "add Gaussian noise"),
    "flicker": Param(True, bool, "a core spaxel NaN in two integrations"),
    "hot_spaxel": Param(True, bool, "a hot spaxel in the annulus"),
    "seed": Param(0, int, "random seed"),
}

INPUT_SCHEMA = {
    "cubes": Param(None, (str, list), "s3d cube files: a path, glob or list (one file per integration "
                   "or 4-D stacks; several bands allowed)", nullable=True),
    "simulate": dict({"enabled": Param(False, bool, "simulate cubes instead of reading files")},
                     **_SIM_KEYS),
    "write_cubes": Param(True, bool, "simulated cubes are written as s3d files under <outdir>/cubes and "
                         "read back (exercises the reader)"),
    "layout": Param("per_integration", str, "file layout of written simulated cubes",
                    choices=("per_integration", "stack")),
    "wavelength_range": Param(None, list, "[min, max] um: read only these planes (bounded memory)",
                              nullable=True, item_type=(int, float)),
    "box": Param(None, list, "[x0, x1, y0, y1] spaxel box read from every cube (0-based, end exclusive); "
                 "null -> the whole field", nullable=True, item_type=int, min=0),
}


def _photometry_kwargs(cfg: dict) -> dict:
    """Keyword arguments of :func:`extract_cube_photometry` from a validated ``mrs`` section."""
    c = cfg
    apc = c["apcorr"]["method"]
    if apc == "table":
        if not c["apcorr"]["table"]:
            raise ConfigError("mrs.apcorr.table: method 'table' needs a table path")
        apc = c["apcorr"]["table"]
    if c["centre"]["method"] == "fixed" and not c["centre"]["xy"]:
        raise ConfigError("mrs.centre.xy: method 'fixed' needs [x, y]")
    if c["background"]["subtract"] and not (c["aperture"]["k_fwhm"] <= c["background"]["k_in"]
                                           < c["background"]["k_out"]):
        raise ConfigError("mrs.background: need aperture.k_fwhm <= k_in < k_out, got "
                          f"{c['aperture']['k_fwhm']}, {c['background']['k_in']}, "
                          f"{c['background']['k_out']}")
    return dict(centre=c["centre"]["xy"] if c["centre"]["method"] == "fixed" else None,
                centre_method=c["centre"]["method"] if c["centre"]["method"] != "fixed" else "moment",
                track_centroids=c["centre"]["track"], k_ap=c["aperture"]["k_fwhm"],
                overlap=c["aperture"]["overlap"], subpixels=c["aperture"]["subpixels"],
                subtract_background=c["background"]["subtract"], k_in=c["background"]["k_in"],
                k_out=c["background"]["k_out"], bkg_model=c["background"]["model"],
                bkg_sigma=c["background"]["sigma"], bkg_maxiters=c["background"]["maxiters"],
                mask_mode=c["mask"]["mode"], apcorr=apc, covar_scale=c["errors"]["covar_scale"],
                chunk_planes=c["chunk_planes"])


def _as_bands(cubes) -> dict:
    """band label -> CubeSeries from one CubeSeries, a dict or list of them, or path(s) / glob(s)."""
    if isinstance(cubes, CubeSeries):
        return {cubes.band: cubes}
    if isinstance(cubes, dict):
        return dict(cubes)
    if isinstance(cubes, (list, tuple)) and cubes and all(isinstance(c, CubeSeries) for c in cubes):
        return {c.band: c for c in cubes}
    return read_cube_bands(cubes)


def extract_cube_timeseries(cubes, config: dict | None = None, *, progress: bool = False):
    """MRS cubes -> (SpectraData, LightCurves), the same products as Stage 3.

    Parameters
    ----------
    cubes : CubeSeries, dict or list of CubeSeries, or str / list of str
        One cube time series per band, or path(s) / glob(s) of s3d files (read with
        :func:`~tsoreduce.mrs.cubes.read_cube_bands`).  Not modified.
    config : dict, optional
        The ``mrs`` section (validated against :data:`CONFIG_SCHEMA`; None: defaults).
    progress : bool
        Show a tqdm bar over the bands.

    Returns
    -------
    spectra : tsoreduce.datamodel.SpectraData
        ``(nints, nwave_total)`` in Jy, bands joined bluest first; ``meta['_band']`` per-plane band
        labels, ``meta['MRSBANDS']``, ``meta['_photometry']`` the
        :class:`~tsoreduce.mrs.photometry.CubePhotometry` of each band; ``aux`` per-band centroids.
    lc : tsoreduce.datamodel.LightCurves
        With ``meta['band']`` (band of each channel).

    Raises
    ------
    tsoreduce.errors.ConfigError
        For an invalid section (e.g. an aperture larger than the background annulus).
    """
    cfg = validate(config, CONFIG_SCHEMA, "mrs")
    kw = _photometry_kwargs(cfg)
    bands = _as_bands(cubes)
    items = list(bands.items())
    if progress:
        from tqdm.auto import tqdm
        items = tqdm(items, desc="MRS bands", unit="band")
    per_band = []
    for label, c in items:
        ph = extract_cube_photometry(c, **kw)
        log.info("MRS %s: %d integrations x %d planes, centre (%.3f, %.3f), median aperture %.2f spaxels",
                 label, c.nints, c.nwave, ph.centre[0], ph.centre[1], float(np.median(ph.radius)))
        per_band.append(ph.to_spectra())
    spectra = combine_bands(per_band)
    if len(per_band) == 1:
        spectra.meta["_photometry"] = [per_band[0].meta["_photometry"]]
    lcc = cfg["lightcurves"]
    lc = mrs_light_curves(spectra, channels=lcc["channels"], bin_width=lcc["bin_width"],
                          nbins=lcc["nbins"], normalise=lcc["normalise"],
                          baseline_ints=lcc["baseline_ints"])
    return spectra, lc




def _stitched(spectra, cfg):
    """The time-median spectrum with the bands scaled onto each other (display only)."""
    labels = band_labels_of(spectra)
    with np.errstate(all="ignore"):
        med = np.nanmedian(spectra.data, axis=0)
        med_err = np.nanmedian(spectra.err, axis=0) / np.sqrt(spectra.nints)
    return stitch_spectrum(spectra.wavelength, med, med_err, labels, method=cfg["stitch"]["method"],
                           reference=cfg["stitch"]["reference"])


def _make_figures(bands, spectra, lc, stitched, cfg, plot_dir) -> list:
    """Aperture per band, spectrum, light curves, background and (tracking) centroids into ``plot_dir``."""
    from ..plotting import mrs as pm

    pdir = Path(plot_dir)
    pdir.mkdir(parents=True, exist_ok=True)
    paths = []
    for label, c in bands.items():
        ph = next(p for p in spectra.meta["_photometry"] if p.band == label)
        pm.plot_aperture(ph, collapsed_image(c), path=pdir / f"mrs_aperture_{label}.png")
        paths.append(pdir / f"mrs_aperture_{label}.png")
    pm.plot_mrs_spectrum(spectra, stitched=stitched, path=pdir / "mrs_spectrum.png")
    pm.plot_mrs_lightcurves(lc, path=pdir / "mrs_lightcurves.png")
    pm.plot_mrs_background(spectra, path=pdir / "mrs_background.png")
    paths += [pdir / "mrs_spectrum.png", pdir / "mrs_lightcurves.png", pdir / "mrs_background.png"]
    if cfg["centre"]["track"]:
        pm.plot_mrs_centroids(spectra, path=pdir / "mrs_centroids.png")
        paths.append(pdir / "mrs_centroids.png")
    return paths


def run(cubes, config: dict | None = None, *, plot_dir=None, references=None) -> StageResult:
    """The MRS branch (in place of Stage 3 for MRS cubes): cubes -> x1dints and light curves.

    Per band, fixed-centre aperture photometry of every wavelength plane with an annulus background
    (:func:`~tsoreduce.mrs.photometry.extract_cube_photometry`; the STScI ``extract_1d`` IFU
    point-source method with a time-fixed bad-spaxel mask, JWST pipeline documentation and Law et al.
    2023); the bands joined bluest first; band-aware light curves (channels never mix bands); the
    time-median spectrum stitched for display.  Pure: writes nothing except figures into ``plot_dir``;
    :func:`tsoreduce.pipeline.run_mrs_files` reads or simulates the cubes and writes the products.

    Parameters
    ----------
    cubes : CubeSeries, or dict / list of CubeSeries
        One cube time series per band (``data`` ``(nints, nwave, ny, nx)`` in MJy/sr); not modified.
    config : dict, optional
        The ``mrs`` section (:data:`CONFIG_SCHEMA`; None: defaults).
    plot_dir : str or pathlib.Path, optional
        Directory for the figures (aperture per band, spectrum, light curves, background, centroids);
        None: none.
    references : dict, optional
        The MRS branch uses no reference files; must be empty.

    Returns
    -------
    tsoreduce.contract.StageResult
        ``product`` a :class:`~tsoreduce.contract.Stage3Product`: ``x1dints`` the SpectraData
        ``(nints, nwave_total)`` in Jy (``meta['_photometry']`` per band, ``meta['_stitched']`` the
        stitched time-median spectrum) and ``lightcurves`` with ``meta['band']``; ``diagnostics`` per
        band the centre (spaxels) and the median aperture radius (spaxels); ``figures`` the paths
        written.

    Raises
    ------
    TypeError
        If ``cubes`` is not in memory (read files with :func:`~tsoreduce.mrs.cubes.read_cube_bands`).
    ValueError
        If ``references`` are given.
    tsoreduce.errors.ConfigError
        For an invalid section.
    """
    no_references("mrs", references)
    items = list(cubes.values()) if isinstance(cubes, dict) else cubes if isinstance(cubes, (list, tuple)) \
        else [cubes]
    in_memory = bool(items) and all(isinstance(c, CubeSeries) for c in items)
    if not in_memory:
        raise TypeError(f"mrs.run: cubes must be CubeSeries (or a dict / list of them), got "
                        f"{type(cubes).__name__}; read files with tsoreduce.mrs.read_cube_bands")
    cfg = validate(config, CONFIG_SCHEMA, "mrs")
    bands = _as_bands(cubes)
    spectra, lc = extract_cube_timeseries(bands, cfg, progress=progress_enabled())
    spectra.meta["_stitched"] = st = _stitched(spectra, cfg)
    figures = _make_figures(bands, spectra, lc, st, cfg, plot_dir) if plot_dir is not None else []
    diagnostics = {"bands": {ph.band: {"centre": [float(v) for v in ph.centre],
                                       "median_radius_spaxels": float(np.median(ph.radius))}
                             for ph in spectra.meta["_photometry"]}}
    return StageResult(product=Stage3Product(x1dints=spectra, lightcurves=lc), diagnostics=diagnostics,
                       figures=figures)

