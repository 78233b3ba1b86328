"""Stage 4: light-curve models (batman transit / eclipse / phase curve x MIRI systematics), least-squares
and emcee fitting of the white light curve and the spectroscopic channels, spectrum products.

Public API::

    run(lc, config, *, plot_dir=None) -> StageResult        # product: FitProducts (tables + fits); pure
    run_stage4                                              # the same function (earlier name)
    run_joint(visits, config, *, plot_dir=None) -> StageResult   # several visits: shared orbit
    write_products(products, outdir, provenance=None)       # the writer of tsoreduce.pipeline.run_stage4_files
    fit_white(lc, config) -> FitResult
    fit_channels(lc, config, white=None, *, channels=None, n_processes=None) -> list[FitResult]
    LightCurveModel(time, kind, ...).evaluate(values)      # batman-like model object
    fit_joint(visits, config) -> JointResult                # the joint fit alone
    make_visits(entries) -> list[Visit]
    fit_lightcurve(model, params, flux, err, ...) -> FitResult   # any user arrays
    CONFIG_SCHEMA, validate_config(section)
"""

from .fitting import FitResult, LogPosterior, fit_lightcurve, fit_lsq, run_emcee
from .models import LightCurveModel, kipping_to_u, ld_coefficients, u_to_kipping
from .parameters import ParameterSet, ParamSpec, parse_parameter
from .spectrum import read_chains, spectrum_table, write_chains, write_table
from .products import FitProducts, output_names, write_products
from .stage import (CONFIG_SCHEMA, build_model, build_parameters, fit_channels, fit_white, run, run_stage4,
                    validate_config)
from .systematics import Systematics
from .joint import JointResult, JointSetup, fit_joint
from .joint_products import read_visit_entries, run_joint
from .visits import Visit, assign_epochs, make_visits

__all__ = ["run", "run_stage4", "FitProducts", "write_products", "output_names", "fit_white", "fit_channels",
           "fit_lightcurve", "fit_lsq", "run_emcee",
           "FitResult", "LogPosterior", "LightCurveModel", "Systematics", "ParameterSet", "ParamSpec",
           "parse_parameter", "kipping_to_u", "u_to_kipping", "ld_coefficients", "spectrum_table",
           "write_table", "write_chains", "read_chains", "CONFIG_SCHEMA", "validate_config", "build_model",
           "build_parameters", "fit_joint", "run_joint", "read_visit_entries", "JointResult", "JointSetup",
           "Visit", "make_visits", "assign_epochs"]
