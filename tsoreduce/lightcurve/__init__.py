"""Stage 4: light-curve models (batman transit / eclipse / phase curve x MIRI systematics), least-squares
and emcee fitting of the white light curve and the spectroscopic channels, spectrum products.

Public API::

    run_stage4(lc, config, outdir, *, plot=True) -> Stage4Result
    fit_white(lc, config) -> FitResult
    fit_channels(lc, config, white=None, *, channels=None, n_processes=None) -> list[FitResult]
    LightCurveModel(time, kind, ...).evaluate(values)      # batman-like model object
    fit_joint(visits, config) -> JointResult                # several visits: shared orbit, per-visit systematics
    run_joint(entries, config, outdir) -> JointResult       # same, from files, writing the products
    make_visits(entries) -> list[Visit]
    fit_lightcurve(model, params, flux, err, ...) -> FitResult   # any user arrays
    CONFIG_SCHEMA, validate_config(section)
"""

from .fitting import FitResult, LogPosterior, fit_lightcurve, fit_lsq, run_emcee
from .models import LightCurveModel, kipping_to_u, ld_coefficients, u_to_kipping
from .parameters import ParameterSet, ParamSpec, parse_parameter
from .spectrum import read_chains, spectrum_table, write_chains, write_table
from .stage import (CONFIG_SCHEMA, Stage4Result, build_model, build_parameters, fit_channels, fit_white,
                    run_stage4, validate_config)
from .systematics import Systematics
from .joint import JointResult, JointSetup, fit_joint
from .joint_products import read_visit_entries, run_joint
from .visits import Visit, assign_epochs, make_visits

__all__ = ["run_stage4", "Stage4Result", "fit_white", "fit_channels", "fit_lightcurve", "fit_lsq", "run_emcee",
           "FitResult", "LogPosterior", "LightCurveModel", "Systematics", "ParameterSet", "ParamSpec",
           "parse_parameter", "kipping_to_u", "u_to_kipping", "ld_coefficients", "spectrum_table",
           "write_table", "write_chains", "read_chains", "CONFIG_SCHEMA", "validate_config", "build_model",
           "build_parameters", "fit_joint", "run_joint", "JointResult", "JointSetup", "Visit", "make_visits",
           "assign_epochs"]
