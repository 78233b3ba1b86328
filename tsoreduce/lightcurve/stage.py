"""Stage 4 runner: white-light fit, spectroscopic channel fits in parallel processes, the product tables.

``run(lightcurves, config)`` fits the white light curve (all parameters free as declared), then each
spectroscopic channel with the parameters declared ``shared`` (by default the orbit: t0, per, a_rs,
inc, ecc, w) fixed at their white-light posterior medians and the others (Rp/Rs, fp, phase-curve
terms, limb darkening, systematics, noise) free per channel, started at the white-light values
(Eureka! ``white_fixed``, exoTEDRF / SPARTA practice; docs/sources.md).  Channels run in a
``ProcessPoolExecutor`` (``n_processes`` workers, default 2; batman nthreads=1 so the
workers do not oversubscribe the cores).  ``run`` writes nothing but figures: the tables and chains
are written by :func:`tsoreduce.pipeline.run_stage4_files`.
"""

from __future__ import annotations

import copy
import logging
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from ..config import Param, validate
from ..contract import StageResult, no_references, progress_enabled
from ..datamodel import LightCurves
from ..errors import ConfigError, EmptyDataError
from .curves import _excluded_note, _time_reference, _valid_points, _white_band, _white_curve, ordered_lightcurves
from .fitting import NOISE_PARAMS, FitResult, fit_lightcurve
from .models import LD_LAWS, MODEL_KINDS, NOISE_KINDS, LightCurveModel, ld_coefficients
from .parameters import ORBIT_PARAMS, ParameterSet, ParamSpec, parse_parameter
from .products import FitProducts
from .spectrum import channel_parameter_table, spectrum_table
from .systematics import RAMP_KINDS
from .visits import JOINT_SCHEMA

__all__ = ["CONFIG_SCHEMA", "FitProducts", "validate_config", "build_model", "build_parameters", "fit_white",
           "fit_channels", "run", "run_stage4", "ordered_lightcurves"]

log = logging.getLogger(__name__)

CONFIG_SCHEMA = {
    "model": Param("transit", str, "astrophysical model", choices=MODEL_KINDS),
    "limb_darkening": {
        "law": Param("quadratic", str, "batman limb-darkening law", choices=tuple(LD_LAWS)),
        "parametrisation": Param("kipping", str, "kipping: q1, q2 in [0, 1] (quadratic law only); u: u1 ... un",
                                 choices=("kipping", "u")),
    },
    "phase_curve_order": Param(1, int, "harmonics of the phase variation (phasecurve model)", choices=(1, 2)),
    "supersample_factor": Param(1, int, "time supersampling for long integrations", min=1, max=100),
    "exposure_time": Param(None, float, "integration duration in s for supersampling (null: median cadence)",
                           nullable=True, min=0),
    "systematics": {
        "ramp": Param("single", str, "exponential settling ramp: none, single or double exponential",
                      choices=RAMP_KINDS),
        "polynomial_order": Param(1, int, "order of the polynomial in time (0: normalisation only)", min=0,
                                  max=5),
        "decorrelate": Param(None, list, "regressors for linear decorrelation (null: every regressor of the "
                             "light-curve table, [] for none)", nullable=True, item_type=str),
        "noise": Param("err_mult", str, "error inflation: err_mult (multiplier), jitter (ppm in quadrature), "
                       "none", choices=NOISE_KINDS),
    },
    "exclude_first": Param(0, int, "integrations dropped at the start of the exposure", min=0),
    "clip_sigma": Param(5.0, float, "reject integrations beyond this many robust sigma of the least-squares "
                        "residuals (null: keep all)", nullable=True, min=2.0),
    "parameters": Param({}, dict, "name -> {value, prior: fixed|uniform|loguniform|normal, bounds, sigma, "
                        "mean, shared, scope (joint fits: shared | per_visit | per_band)}"),
    "fit_white": Param(True, bool, "fit the white light curve first"),
    "fit_channels": Param(True, bool, "fit the spectroscopic channels"),
    "channels": Param(None, list, "channel indices to fit (null: all)", nullable=True, item_type=int),
    "fitter": {
        "method": Param("emcee", str, "lsq (least squares only) or emcee (least-squares start)",
                        choices=("lsq", "emcee")),
        "nwalkers": Param(None, int, "emcee walkers (null: max(16, 2 x sampled parameters + 2); the "
                          "marginalised ones are not sampled)", nullable=True, min=4),
        "marginalise": Param(True, bool, "integrate f0, the baseline polynomial and the error multiplier "
                             "out analytically (exact for their flat priors) and sample the rest; false: "
                             "sample every free parameter"),
        "nsteps": Param(2000, int, "emcee steps per walker (the cap when n_tau is set)", min=10),
        "n_tau": Param(50.0, float, "stop emcee once the chain after burn-in is this many integrated "
                       "autocorrelation times long (null: always run nsteps)", nullable=True, min=1.0),
        "moves": Param("de", str, "emcee proposal: de (differential evolution 80 % + snooker 20 %) or stretch "
                       "(affine-invariant stretch move)", choices=("de", "stretch")),
        "burn_in": Param(500, int, "steps discarded as burn-in", min=0),
        "channel_nsteps": Param(None, int, "steps for channel fits (null: nsteps)", nullable=True, min=10),
        "channel_burn_in": Param(None, int, "burn-in for channel fits (null: burn_in)", nullable=True, min=0),
        "seed": Param(42, int, "random seed (channel k uses seed + k + 1)"),
        "progress": Param(False, bool, "show the emcee progress bar of the white-light fit"),
    },
    "n_processes": Param(2, int, "worker processes for the channel fits", min=1, max=64),
    "joint": JOINT_SCHEMA,
}

_REQUIRED = {"transit": ("t0", "per", "rp_rs", "a_rs", "inc"),
             "eclipse": ("t0", "per", "rp_rs", "a_rs", "inc", "fp"),
             "phasecurve": ("t0", "per", "rp_rs", "a_rs", "inc", "fp")}


def validate_config(section: dict | None) -> dict:
    """Validate a ``stage4`` section (schema and every parameter declaration).

    Parameters
    ----------
    section : dict or None
        The ``stage4`` section; missing keys take the :data:`CONFIG_SCHEMA` defaults.  Not modified.

    Returns
    -------
    dict
        A new, completed section.

    Raises
    ------
    tsoreduce.errors.ConfigError
        For unknown keys, bad values, unknown prior types, bad bounds, parameters the model does not
        have, missing required parameters (t0, per, rp_rs, a_rs, inc; fp for eclipses) or a burn-in
        not shorter than the chain.
    """
    cfg = validate(section, CONFIG_SCHEMA, "stage4")
    cfg["parameters"] = dict(cfg["parameters"] or {})
    kind = cfg["model"]
    ld = ld_coefficients(cfg["limb_darkening"]["law"], cfg["limb_darkening"]["parametrisation"]) \
        if kind != "eclipse" else []
    allowed = set(ORBIT_PARAMS) | {"rp_rs", "f0", "ramp_amp1", "ramp_tau1", "ramp_amp2", "ramp_tau2",
                                   "err_mult", "jitter_ppm"} | set(ld)
    allowed |= {f"poly{k}" for k in range(1, 6)}
    if kind in ("eclipse", "phasecurve"):
        allowed.add("fp")
    if kind == "phasecurve":
        allowed |= {"pc_amp1", "pc_offset1", "pc_amp2", "pc_offset2"}
    for name, decl in cfg["parameters"].items():
        if name not in allowed and not str(name).startswith("decorr_"):
            raise ConfigError(f"stage4.parameters.{name}: not a parameter of the {kind!r} model with this limb "
                              f"darkening; allowed: {', '.join(sorted(allowed))}, decorr_<regressor>")
        parse_parameter(name, decl, default_shared=name in ORBIT_PARAMS)
    missing = [n for n in _REQUIRED[kind] if n not in cfg["parameters"]]
    if missing:
        raise ConfigError(f"stage4.parameters: the {kind!r} model needs {', '.join(missing)} (value and prior)")
    if cfg["fitter"]["burn_in"] >= cfg["fitter"]["nsteps"]:
        raise ConfigError(f"stage4.fitter.burn_in ({cfg['fitter']['burn_in']}) must be < nsteps "
                          f"({cfg['fitter']['nsteps']})")
    return cfg


def _regressor_names(lc: LightCurves, cfg) -> list:
    names = cfg["systematics"]["decorrelate"]
    if names is None:
        names = sorted(lc.regressors)
        if names:
            log.info("stage4: decorrelating against every regressor of the table: %s", ", ".join(names))
        return names
    missing = [n for n in names if n not in lc.regressors]
    if missing:
        raise ConfigError(f"stage4.systematics.decorrelate: regressor(s) {missing} not in the light curves "
                          f"(available: {sorted(lc.regressors)})")
    return list(names)


def build_model(time, cfg: dict, regressors=None, t_start=None) -> LightCurveModel:
    """A :class:`LightCurveModel` for ``time`` from a validated ``stage4`` section.

    Parameters
    ----------
    time : numpy.ndarray
        ``(nints,)`` mid-integration times, BMJD_TDB (days).
    cfg : dict
        A validated ``stage4`` section (:func:`validate_config`).
    regressors : dict of str to numpy.ndarray, optional
        Decorrelation regressors, each ``(nints,)``.
    t_start : float, optional
        Exposure start (BMJD_TDB) for the settling ramp and the polynomial in time.

    Returns
    -------
    LightCurveModel
        With the supersampling exposure time in days (``exposure_time`` or the median cadence).
    """
    exp_time = cfg["exposure_time"]
    if cfg["supersample_factor"] > 1:
        exp_time = (exp_time / 86400.0) if exp_time else float(np.median(np.diff(time)))
    return LightCurveModel(time, cfg["model"], ld_law=cfg["limb_darkening"]["law"],
                           ld_parametrisation=cfg["limb_darkening"]["parametrisation"],
                           pc_order=cfg["phase_curve_order"], ramp=cfg["systematics"]["ramp"],
                           poly_order=cfg["systematics"]["polynomial_order"], regressors=regressors,
                           t_start=t_start, noise=cfg["systematics"]["noise"],
                           supersample_factor=cfg["supersample_factor"], exp_time=exp_time)


def _auto_spec(name, flux, user) -> ParamSpec:
    """Default prior of a parameter the user did not declare (announced in the log)."""
    med = float(np.median(flux))
    n_early = max(5, flux.size // 100)
    early = float(np.median(flux[:n_early]) / med - 1.0)
    fp = user["fp"].value if "fp" in user else 1e-3
    table = {
        "f0": (med, "uniform", (0.5 * med, 1.5 * med)),
        "ramp_amp1": (early if abs(early) > 1e-4 else 1e-4, "uniform", (-0.5, 0.5)),
        "ramp_tau1": (0.01, "loguniform", (2e-4, 0.5)),
        "ramp_amp2": (0.3 * early if abs(early) > 1e-4 else 1e-4, "uniform", (-0.5, 0.5)),
        "ramp_tau2": (0.1, "loguniform", (2e-4, 1.0)),
        "err_mult": (1.0, "uniform", (0.1, 20.0)),
        "jitter_ppm": (100.0, "loguniform", (1e-2, 1e5)),
        "q1": (0.1, "uniform", (0.0, 1.0)),
        "q2": (0.3, "uniform", (0.0, 1.0)),
        "ecc": (0.0, "fixed", None),
        "w": (90.0, "fixed", None),
        "pc_amp1": (0.5 * abs(fp), "uniform", (0.0, 1.0)),
        "pc_offset1": (5.0, "uniform", (-90.0, 90.0)),
        "pc_amp2": (0.05 * abs(fp), "uniform", (0.0, 1.0)),
        "pc_offset2": (5.0, "uniform", (-180.0, 180.0)),
    }
    if name in table:
        v, prior, b = table[name]
    elif name.startswith("poly"):
        v, prior, b = 0.0, "uniform", (-1.0, 1.0)
    elif name.startswith("decorr_"):
        v, prior, b = 0.0, "uniform", (-0.1, 0.1)
    elif name.startswith("u"):
        v, prior, b = 0.1, "uniform", (-1.0, 1.0)
    else:
        raise ConfigError(f"stage4.parameters.{name}: required (no default exists)")
    return ParamSpec(name, v, prior, b, shared=name in ORBIT_PARAMS)


def build_parameters(model: LightCurveModel, cfg: dict, flux) -> ParameterSet:
    """The :class:`ParameterSet` of ``model``: the user's declarations, defaults for the others (logged).

    Parameters
    ----------
    model : LightCurveModel
        The model whose parameters are needed.
    cfg : dict
        A validated ``stage4`` section.
    flux : numpy.ndarray
        ``(nints,)`` flux the defaults are scaled from (f0 prior, ramp amplitude start).

    Returns
    -------
    ParameterSet
        One :class:`ParamSpec` per model parameter.

    Raises
    ------
    tsoreduce.errors.ConfigError
        When a declared parameter is not one of the model's.
    """
    user = {n: parse_parameter(n, d, default_shared=n in ORBIT_PARAMS) for n, d in cfg["parameters"].items()}
    specs, defaulted = {}, []
    for n in model.names:
        if n in user:
            specs[n] = user[n]
        else:
            specs[n] = _auto_spec(n, np.asarray(flux, float), user)
            defaulted.append(n)
    if defaulted:
        log.info("stage4: default priors for %s", ", ".join(defaulted))
    unused = [n for n in user if n not in model.index]
    if unused:
        raise ConfigError(f"stage4.parameters: {unused} are not parameters of this model (names: {model.names})")
    return ParameterSet(specs)


def _fit_args(cfg, channel=False):
    f = cfg["fitter"]
    nsteps = f["channel_nsteps"] if (channel and f["channel_nsteps"]) else f["nsteps"]
    burn = f["channel_burn_in"] if (channel and f["channel_burn_in"] is not None) else f["burn_in"]
    if burn >= nsteps:
        raise ConfigError(f"stage4.fitter: burn-in {burn} must be < steps {nsteps}")
    return dict(method=f["method"], nwalkers=f["nwalkers"], nsteps=nsteps, burn_in=burn,
                clip_sigma=cfg["clip_sigma"], progress=f["progress"] and not channel, n_tau=f["n_tau"],
                moves=f["moves"], marginalise=f["marginalise"])


def fit_white(lc: LightCurves, config: dict) -> FitResult:
    """Fit the white light curve of ``lc`` (or the mean of its channels) with every declared parameter free.

    Parameters
    ----------
    lc : tsoreduce.datamodel.LightCurves
        Light curves; the white light curve ``(nints,)`` or, without one, the mean of the
        median-normalised channels.  Not modified.
    config : dict
        A ``stage4`` section (validated here).

    Returns
    -------
    FitResult
        Labelled ``white``.

    Raises
    ------
    tsoreduce.errors.ConfigError
        For an invalid section or a regressor the table does not have.
    tsoreduce.errors.EmptyDataError
        For fewer than 10 usable integrations.
    """
    cfg = validate_config(config)
    lc = ordered_lightcurves(lc)
    flux, err = _white_curve(lc)
    regs = _regressor_names(lc, cfg)
    ok = _valid_points(lc, flux, err, regs, cfg["exclude_first"])
    _excluded_note(lc, ok, "white light")
    if ok.sum() < 10:
        raise EmptyDataError(lc.meta.get("_source_path", "<LightCurves>"),
                             f"only {ok.sum()} usable integrations in the white light curve")
    model = build_model(lc.time[ok], cfg, {n: lc.regressors[n][ok] for n in regs}, t_start=_time_reference(lc))
    params = build_parameters(model, cfg, flux[ok])
    log.info("stage4: white light curve, %d integrations, %d free parameters (%s)", ok.sum(), params.nfree,
             ", ".join(params.free_names))
    return fit_lightcurve(model, params, flux[ok], err[ok], label="white", seed=cfg["fitter"]["seed"],
                          wavelength=_white_band(lc), **_fit_args(cfg))


def _channel_specs(model: LightCurveModel, cfg, flux, white: FitResult | None) -> ParameterSet:
    base = build_parameters(model, cfg, flux)
    specs = {}
    for n in model.names:
        s = base[n]
        if white is not None and n in white.median:
            if s.shared:
                s = s.fixed_at(white.median[n])
            elif s.free and n not in NOISE_PARAMS and n != "f0":
                s = s.with_value(white.median[n])
        elif s.shared and s.free:
            log.info("stage4: no white-light fit; shared parameter %s fixed at its configured value %g", n,
                     s.value)
            s = s.fixed_at(s.value)
        specs[n] = s
    return ParameterSet(specs)


def _fit_channel_task(task):
    """Worker: build the batman models once for this channel and fit it (runs in a child process)."""
    label, time, flux, err, regs, t_start, cfg, specs, wl, seed = task
    model = build_model(time, cfg, regs, t_start=t_start)
    params = ParameterSet(specs)
    if all(not params[n].free for n in ORBIT_PARAMS):
        rp = params["rp_rs"]
        model.freeze_orbit(params.as_dict(), rp.upper() if rp.free and np.isfinite(rp.upper()) else
                           max(2 * abs(rp.value), 0.5))
    return fit_lightcurve(model, params, flux, err, label=label, seed=seed, wavelength=wl,
                          **_fit_args(cfg, channel=True))


def fit_channels(lc: LightCurves, config: dict, white: FitResult | None = None, *, channels=None,
                 n_processes=None, progress: bool = False) -> list[FitResult]:
    """Fit spectroscopic channels with the shared parameters fixed at the white-light medians.

    Parameters
    ----------
    lc : tsoreduce.datamodel.LightCurves
        ``flux`` ``(nchan, nints)``; non-finite points of a channel are excluded.  Not modified.
    config : dict
        A ``stage4`` section (validated here).
    white : FitResult, optional
        The white-light fit; None: the shared parameters are fixed at their configured values.
    channels : list of int, optional
        Channel indices (default: the config's ``channels``, else all).
    n_processes : int, optional
        Worker processes (default: the config's ``n_processes``); 1 runs in this process.
    progress : bool
        Show a tqdm bar over the channels.

    Returns
    -------
    list of FitResult
        One per channel (label ``channel_NN``), in channel order.

    Raises
    ------
    tsoreduce.errors.ConfigError
        For a channel index outside the table or an invalid section.
    tsoreduce.errors.EmptyDataError
        For a channel with fewer than 10 usable integrations.
    """
    cfg = validate_config(config)
    lc = ordered_lightcurves(lc)
    if channels is None:
        channels = cfg["channels"] if cfg["channels"] is not None else list(range(lc.nchan))
    bad = [c for c in channels if not 0 <= c < lc.nchan]
    if bad:
        raise ConfigError(f"stage4.channels: {bad} outside 0..{lc.nchan - 1}")
    regs = _regressor_names(lc, cfg)
    t_ref = _time_reference(lc)
    tasks = []
    for c in channels:
        ok = _valid_points(lc, lc.flux[c], lc.err[c], regs, cfg["exclude_first"])
        if ok.sum() < 10:
            raise EmptyDataError(lc.meta.get("_source_path", "<LightCurves>"),
                                 f"channel {c}: only {ok.sum()} usable integrations")
        model = build_model(lc.time[ok], cfg, {n: lc.regressors[n][ok] for n in regs}, t_start=t_ref)
        params = _channel_specs(model, cfg, lc.flux[c][ok], white)
        wl = (float(lc.wavelength[c]), float(lc.wavelength_lower[c]), float(lc.wavelength_upper[c]))
        tasks.append((f"channel_{c:02d}", lc.time[ok], lc.flux[c][ok], lc.err[c][ok],
                      {n: lc.regressors[n][ok] for n in regs}, t_ref, cfg, dict(params.specs), wl,
                      cfg["fitter"]["seed"] + c + 1))
    # ---- issue 17: an execution backend (tsoreduce.execution) takes the channel fits as work units ----
    from ..execution import current as _current_executor
    ex = _current_executor()
    if ex.distributes:
        log.info("stage4: fitting %d channels on the %s execution backend", len(tasks), ex.name)
        return ex.map(_fit_channel_task, tasks, labels=[t[0] for t in tasks], desc="Stage 4 channels",
                      progress=progress)
    nproc = 1 if ex.nested else (n_processes or cfg["n_processes"])  # no pool inside a work unit
    # ---- end issue 17 ----
    nproc = max(1, min(nproc, len(tasks)))
    log.info("stage4: fitting %d channels with %d process(es)", len(tasks), nproc)
    from tqdm.auto import tqdm

    bar = dict(total=len(tasks), desc="Stage 4 channels", unit="channel", disable=not progress)
    if nproc == 1:
        return [_fit_channel_task(t) for t in tqdm(tasks, **bar)]
    ctx = multiprocessing.get_context("fork") if "fork" in multiprocessing.get_all_start_methods() else None
    with ProcessPoolExecutor(max_workers=nproc, mp_context=ctx) as ex:
        # ex.map yields in channel order as results arrive: the bar advances per finished channel
        return list(tqdm(ex.map(_fit_channel_task, tasks), **bar))


def _fit_all(lc: LightCurves, cfg: dict) -> tuple:
    """The white-light fit (unless ``fit_white`` is false) and the channel fits (unless ``fit_channels``
    is false or the table has no channel), logged."""
    white = None
    if cfg["fit_white"]:
        white = fit_white(lc, cfg)
        _log_fit(white)
    else:
        log.info("stage4: white-light fit skipped (fit_white: false)")
    chans = []
    if cfg["fit_channels"] and lc.nchan > 0:
        chans = fit_channels(lc, cfg, white, progress=progress_enabled())
        for r in chans:
            log.info("stage4: %s %.3f um: rp_rs %.5f +%.5f/-%.5f%s", r.label, r.wavelength, r.median["rp_rs"],
                     r.err_upper["rp_rs"], r.err_lower["rp_rs"],
                     f", fp {1e6 * r.median['fp']:.0f} ppm" if "fp" in r.median else "")
            _log_noise(r)
    elif cfg["fit_channels"]:
        log.info("stage4: the table has no spectroscopic channels; the spectrum is the white-light row")
    else:
        log.info("stage4: channel fits skipped (fit_channels: false)")
    return white, chans


def _product_tables(lc: LightCurves, cfg: dict, white, chans) -> dict:
    """spectrum, white_fit and channel_fits tables, each with ``tsoreduce_version`` and ``stage4_config``
    in its metadata (the pipeline's writer appends the run's config hash and text)."""
    from .. import __version__

    prov = {"tsoreduce_version": __version__, "stage4_config": _jsonable(cfg)}
    rows = chans if chans else ([white] if white is not None else [])
    meta = {"model": cfg["model"], "target": lc.meta.get("target", ""),
            "source": str(lc.meta.get("_source_path") or ""), **prov}
    tables = {"spectrum": spectrum_table(rows, meta=meta)}
    if white is not None:
        wt = white.table()
        wt.meta.update(prov)
        tables["white_fit"] = wt
    if chans:
        ct = channel_parameter_table(chans)
        ct.meta.update(prov)
        tables["channel_fits"] = ct
    return tables


def run(lightcurves: LightCurves, config: dict | None = None, *, plot_dir=None,
        references=None) -> StageResult:
    """Stage 4 on one visit: fit the white light curve, then every spectroscopic channel.

    The white light curve is fitted with every declared parameter free; each channel with the
    parameters declared ``shared`` (by default the orbit) fixed at their white-light posterior medians
    and the others started at the white-light values (Eureka! ``white_fixed`` practice, Bell et al.
    2022).  Channels run in ``n_processes`` worker processes (or on the execution backend of
    :mod:`tsoreduce.execution`).  Pure: nothing is written except the figures into ``plot_dir``; the
    file-level runner :func:`tsoreduce.pipeline.run_stage4_files` writes the tables and chains.
    Progress bars follow :func:`tsoreduce.contract.progress_enabled`.

    Parameters
    ----------
    lightcurves : tsoreduce.datamodel.LightCurves
        Spectroscopic light curves ``flux`` ``(nchan, nints)`` and the white light curve ``(nints,)``,
        ``time`` in BMJD_TDB; not modified.  NaN times are dropped and the integrations sorted by time
        (WARNING, :func:`~tsoreduce.lightcurve.curves.ordered_lightcurves`).
    config : dict, optional
        The ``stage4`` section (:data:`CONFIG_SCHEMA`); it must declare the model's required parameters
        (t0, per, rp_rs, a_rs, inc; fp for eclipses).
    plot_dir : str or pathlib.Path, optional
        Directory for the figures (white fit, binned rms, corner, channel fits, spectrum); None: none.
    references : dict, optional
        Stage 4 uses no reference files; must be empty.

    Returns
    -------
    tsoreduce.contract.StageResult
        ``product`` a :class:`~tsoreduce.lightcurve.products.FitProducts` (spectrum, white_fit,
        channel_fits tables; the fits); ``diagnostics`` the number of channels fitted, the white fit's
        reduced chi-square and the parameters flagged at a prior bound; ``figures`` the paths written.

    Raises
    ------
    ValueError
        If ``references`` are given.
    tsoreduce.errors.ConfigError
        For an invalid section or a regressor / channel the table does not have.
    tsoreduce.errors.EmptyDataError
        For a light curve with fewer than 10 usable integrations.
    """
    no_references("stage4", references)
    cfg = validate_config(config)
    if progress_enabled():
        cfg["fitter"]["progress"] = True
    lc = ordered_lightcurves(lightcurves)
    white, chans = _fit_all(lc, cfg)
    products = FitProducts(tables=_product_tables(lc, cfg, white, chans), config=cfg, white=white,
                           channels=chans)
    figures = []
    if plot_dir is not None and products.fits:
        figures = list(_make_figures(white, chans, products.spectrum, Path(plot_dir)).values())
    flagged = [f"{r.label}.{p}" for r in products.fits for p, f in r.flags.items() if f]
    diagnostics = {"n_channels_fitted": len(chans),
                   "white_chi2_red": float(white.chi2_red) if white is not None else None,
                   "flagged_parameters": flagged}
    return StageResult(product=products, diagnostics=diagnostics, figures=figures)


#: the name the package exported before the stage contract (same object)
run_stage4 = run


def _jsonable(cfg):
    return copy.deepcopy(cfg)


def _log_fit(r: FitResult):
    parts = [f"{n} = {r.median[n]:.10g} +{r.err_upper[n]:.2g}/-{r.err_lower[n]:.2g}" for n in r.free]
    log.info("stage4: %s fit (%s, reduced chi2 %.2f, %d points, %.1f s): %s", r.label, r.method, r.chi2_red,
             r.time.size, r.runtime_s, "; ".join(parts))
    _log_noise(r)


def _log_noise(r: FitResult):
    n = r.noise
    if n:
        log.info("stage4: %s noise: expected %.0f ppm (ERR), residual rms %.0f ppm (%.2fx), raw p2p %.2fx, "
                 "beta %.2f", r.label, n.get("expected_ppm", np.nan), n.get("achieved_resid_ppm", np.nan),
                 n.get("ratio_resid", np.nan), n.get("ratio_p2p", np.nan), n.get("beta", np.nan))


def _make_figures(white, chans, spec, figdir) -> dict:
    from ..plotting import lightcurve as pl

    figdir.mkdir(parents=True, exist_ok=True)
    out = {}
    if white is not None:
        out["fig_white_fit"] = pl.plot_lightcurve_fit(white, path=figdir / "white_fit.png")
        out["fig_white_rms"] = pl.plot_rms_vs_binsize(white, path=figdir / "white_rms_binning.png")
        if white.samples is not None:
            out["fig_white_corner"] = pl.plot_corner(white, path=figdir / "white_corner.png")
    if chans:
        out["fig_channels"] = pl.plot_channel_fits(chans, path=figdir / "channel_fits.png")
        out["fig_channel_rms"] = pl.plot_rms_vs_binsize(chans, path=figdir / "channel_rms_binning.png")
        out["fig_spectrum"] = pl.plot_spectrum(spec, path=figdir / "spectrum.png")
    for k in list(out):
        out[k] = Path(out[k]) if out[k] is not None else None
    return {k: v for k, v in out.items() if v is not None}

