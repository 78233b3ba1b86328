"""Stage 4 products: the spectrum table, parameter tables and the posterior chains (HDF5).

``spectrum.ecsv``: one row per channel; wavelength, wavelength_lower, wavelength_upper (um); rp_rs,
rp_rs_err_lower, rp_rs_err_upper; transit_depth (= rp_rs^2), transit_depth_err_lower/_upper (ppm); where
an eclipse is fitted, eclipse_depth (= fp), eclipse_depth_err_lower/_upper (ppm) (and for a phase curve
nightside_flux = Fp(phase 0), pc_offset1 in degrees).  Errors are the distances from the median to the
16th / 84th percentiles of the posterior samples (least squares: 1-sigma covariance errors, propagated
linearly for the depth).  Units use ``astropy.units.cds.ppm``; read them back with
``astropy.units.cds.enable()`` active.  All files are written atomically (temporary file in the same
directory + ``os.replace``).
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
from astropy import units as u
from astropy.table import Table
from astropy.units import cds

from .._util import atomic_path, atomic_write
from .fitting import FitResult

__all__ = ["spectrum_table", "parameter_table", "channel_parameter_table", "write_table", "write_chains",
           "read_chains"]


def _summary(res: FitResult, name, transform=None, dtransform=None):
    """(value, err_lower, err_upper) of ``transform(param)`` from samples, or linear propagation for lsq."""
    if name not in res.median:
        return np.nan, np.nan, np.nan
    transform = transform or (lambda x: x)
    s = res.derived_samples(name)
    if s is not None:
        q = np.percentile(transform(s), [16, 50, 84])
        return q[1], q[1] - q[0], q[2] - q[1]
    v = res.median[name]
    d = abs(dtransform(v)) if dtransform else 1.0
    return transform(np.asarray(v)), d * res.err_lower[name], d * res.err_upper[name]


def _nightside(res: FitResult):
    """Planet flux at transit (phase 0, the nightside), Fp(theta = pi), ppm."""
    if "pc_amp1" not in res.median:
        return np.nan, np.nan, np.nan

    def night(fp, a1, d1, a2=0.0, d2=0.0):
        d1, d2 = np.deg2rad(d1), np.deg2rad(d2)
        return fp + a1 * (np.cos(np.pi + d1) - np.cos(d1)) + a2 * (np.cos(2 * np.pi + d2) - np.cos(d2))

    keys = ["fp", "pc_amp1", "pc_offset1"] + (["pc_amp2", "pc_offset2"] if "pc_amp2" in res.median else [])
    if res.samples is not None:
        cols = [res.derived_samples(k) if k in res.free else np.full(res.samples.shape[0], res.median[k])
                for k in keys]
        q = np.percentile(night(*cols) * 1e6, [16, 50, 84])
        return q[1], q[1] - q[0], q[2] - q[1]
    v = night(*[res.median[k] for k in keys]) * 1e6
    e = 1e6 * np.sqrt(sum((res.err_lower[k] if k in ("fp", "pc_amp1") else 0.0) ** 2 for k in keys))
    return v, e, e


def spectrum_table(results: list[FitResult], *, meta=None) -> Table:
    """The transmission / emission spectrum, one row per fit result (see module doc for columns).

    Parameters
    ----------
    results : list of FitResult
        Channel (or white) fits.
    meta : dict, optional
        Table metadata (model, target, provenance).

    Returns
    -------
    astropy.table.Table
    """
    t = Table()
    t["wavelength"] = [r.wavelength for r in results] * u.um
    t["wavelength_lower"] = [r.wavelength_lower for r in results] * u.um
    t["wavelength_upper"] = [r.wavelength_upper for r in results] * u.um
    rows = [_summary(r, "rp_rs") for r in results]
    t["rp_rs"] = [x[0] for x in rows]
    t["rp_rs_err_lower"] = [x[1] for x in rows]
    t["rp_rs_err_upper"] = [x[2] for x in rows]
    rows = [_summary(r, "rp_rs", lambda x: 1e6 * np.asarray(x) ** 2, lambda x: 2e6 * x) for r in results]
    t["transit_depth"] = [x[0] for x in rows] * cds.ppm
    t["transit_depth_err_lower"] = [x[1] for x in rows] * cds.ppm
    t["transit_depth_err_upper"] = [x[2] for x in rows] * cds.ppm
    if any("fp" in r.median for r in results):
        rows = [_summary(r, "fp", lambda x: 1e6 * np.asarray(x), lambda x: 1e6) for r in results]
        t["eclipse_depth"] = [x[0] for x in rows] * cds.ppm
        t["eclipse_depth_err_lower"] = [x[1] for x in rows] * cds.ppm
        t["eclipse_depth_err_upper"] = [x[2] for x in rows] * cds.ppm
    if any("pc_amp1" in r.median for r in results):
        rows = [_nightside(r) for r in results]
        t["nightside_flux"] = [x[0] for x in rows] * cds.ppm
        t["nightside_flux_err_lower"] = [x[1] for x in rows] * cds.ppm
        t["nightside_flux_err_upper"] = [x[2] for x in rows] * cds.ppm
        rows = [_summary(r, "pc_offset1") for r in results]
        t["pc_offset1"] = [x[0] for x in rows] * u.deg
        t["pc_offset1_err_lower"] = [x[1] for x in rows] * u.deg
        t["pc_offset1_err_upper"] = [x[2] for x in rows] * u.deg
    t["label"] = [r.label for r in results]
    # a spectrum point whose fit sits on a prior bound (or whose error exceeds the prior) is flagged
    t["flag"] = [";".join(f"{n}:{f}" for n, f in r.flags.items() if f) for r in results]
    for key, col, unit in (("expected_ppm", "rms_expected", cds.ppm), ("achieved_resid_ppm", "rms_residual", cds.ppm),
                           ("ratio_resid", "noise_ratio", None), ("beta", "beta_red_noise", None)):
        vals = [float(r.noise.get(key, np.nan)) for r in results]
        t[col] = vals * unit if unit is not None else vals
    t.meta["flag_definitions"] = ("flag: 'name:condition' of fitted parameters at_lower_bound / at_upper_bound "
                                  "(median within 1 % of the prior width of the bound, or the 16th/84th "
                                  "percentile within 0.1 %) or err_exceeds_prior (error > prior width)")
    t.meta["noise_definitions"] = ("rms_expected: sqrt(mean(ERR^2)) of the propagated errors; rms_residual: std "
                                   "of the fit residuals; noise_ratio = rms_residual / rms_expected; "
                                   "beta_red_noise: binning-curve red-noise factor of the residuals "
                                   "(tsoreduce.noise); ppm of the fitted f0")
    t.meta["description"] = ("tsoreduce Stage 4 spectrum; errors are distances from the posterior median to "
                             "the 16th/84th percentiles; ppm columns use astropy.units.cds.ppm")
    t.meta.update(meta or {})
    return t


def parameter_table(res: FitResult) -> Table:
    """white_fit.ecsv content: name, median, err_lower, err_upper, fixed (+ autocorrelation time meta).

    Parameters
    ----------
    res : FitResult
        One fit.

    Returns
    -------
    astropy.table.Table
    """
    return res.table()


def channel_parameter_table(results: list[FitResult]) -> Table:
    """Every parameter of every channel fit, long format: channel label, wavelength, name, median, errors, fixed.

    Parameters
    ----------
    results : list of FitResult
        Channel fits.

    Returns
    -------
    astropy.table.Table
        Empty when ``results`` is.
    """
    rows = []
    for r in results:
        for n in r.names:
            rows.append((r.label, r.wavelength, n, r.median[n], r.err_lower[n], r.err_upper[n], bool(r.fixed[n]),
                         r.flags.get(n, "")))
    t = Table(rows=rows, names=("label", "wavelength", "name", "median", "err_lower", "err_upper", "fixed", "flag"),
              dtype=(str, float, str, float, float, float, bool, str)) if rows else Table()
    if rows:
        t["wavelength"].unit = u.um
        # per channel: expected scatter from ERR, achieved (raw point-to-point and residual), ratios, beta
        t.meta["noise"] = {r.label: dict(r.noise) for r in results}
        t.meta["noise_definitions"] = ("expected = sqrt(mean(ERR^2)) (propagated errors); achieved_p2p = "
                                       "mad_std(diff(flux))/sqrt(2); achieved_resid = std of the residuals; "
                                       "ratio_* = achieved_* / expected; beta = binning-curve red-noise factor "
                                       "of the residuals (tsoreduce.noise); *_ppm relative to f0")
    return t


def write_table(table: Table, path) -> Path:
    """Write an astropy Table as ECSV atomically (temporary file in the same directory, then os.replace).

    Parameters
    ----------
    table : astropy.table.Table
        The table.
    path : str or Path
        Destination.

    Returns
    -------
    Path
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: table.write(tmp, format="ascii.ecsv", overwrite=True), ".ecsv")
    return path


def write_chains(path, results: list[FitResult], *, config=None) -> Path:
    """Posterior chains to HDF5 (h5py), one group per fit ('white', 'channel_00', ...), atomically.

    Each group: ``chain`` (nsteps, nwalkers, nsampled), ``log_prob`` (nsteps, nwalkers), ``samples``
    (nsamples, nfree: every free parameter, marginalised ones drawn), attributes ``free_names`` and
    ``sampled_names`` (JSON lists), ``marginalised``, ``burn_in``, ``acceptance``, ``autocorr_time`` (per
    sampled parameter) and ``wavelength`` (um).  Least-squares-only fits store ``lsq_values`` /
    ``lsq_errors`` instead of a chain.

    Parameters
    ----------
    path : str or Path
        Destination ``.h5``.
    results : list of FitResult
        Fits.
    config : dict, optional
        Validated stage4 section, stored as JSON.

    Returns
    -------
    Path
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, ".h5") as tmp, h5py.File(tmp, "w") as f:
        f.attrs["format"] = "tsoreduce-stage4-chains"
        from .. import __version__
        f.attrs["tsoreduce_version"] = __version__
        if config is not None:
            f.attrs["config"] = json.dumps(config, default=str)
        for r in results:
            g = f.create_group(r.label)
            g.attrs["free_names"] = json.dumps(list(r.free))
            g.attrs["sampled_names"] = json.dumps(list(r.sampled or r.free))
            g.attrs["marginalised"] = json.dumps(list(r.marginalised))
            g.attrs["method"] = r.method
            g.attrs["wavelength"] = float(r.wavelength)
            g.attrs["burn_in"] = int(r.burn_in)
            g.attrs["acceptance"] = float(r.acceptance)
            if r.tau is not None:
                g.attrs["autocorr_time"] = np.asarray(r.tau, float)
            if r.chain is not None:
                g.create_dataset("chain", data=r.chain.astype(np.float64), compression="gzip",
                                 compression_opts=1)
                g.create_dataset("log_prob", data=r.log_prob, compression="gzip", compression_opts=1)
                g.create_dataset("samples", data=np.asarray(r.samples, np.float64), compression="gzip",
                                 compression_opts=1)
            g.create_dataset("lsq_values", data=np.array([r.lsq_values[n] for n in r.free], float))
            g.create_dataset("lsq_errors", data=np.array([r.lsq_errors[n] for n in r.free], float))
    return path


def read_chains(path) -> dict:
    """Read a chains file written by :func:`write_chains`.

    Parameters
    ----------
    path : str or Path
        The ``.h5`` file.

    Returns
    -------
    dict
        Label -> dict(free_names, chain, log_prob, burn_in, acceptance, ...).
    """
    out = {}
    with h5py.File(path, "r") as f:
        for label, g in f.items():
            d = {k: (json.loads(v) if k in ("free_names", "sampled_names", "marginalised") else v)
                 for k, v in g.attrs.items()}
            for k in g:
                d[k] = g[k][()]
            out[label] = d
    return out
