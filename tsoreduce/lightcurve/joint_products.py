"""Joint Stage 4 fits from files: reading the visits, writing the products (tables, chains, figures).

``run_joint(entries, config, outdir)`` reads ``input.lightcurves`` list entries, runs
:func:`~tsoreduce.lightcurve.joint.fit_joint` and writes ``white_fit.ecsv`` (global parameters),
``visits.ecsv`` (one row per visit), ``transit_times.ecsv`` (timing mode), ``visit_fits.ecsv`` (each
visit alone), ``joint_chains.h5`` and the figures.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np

from ..errors import OverwriteError
from .joint import JointResult, fit_joint

__all__ = ["read_visit_entries", "run_joint"]


def read_visit_entries(entries) -> list[dict]:
    """Read ``input.lightcurves`` list entries into ``{lc, visit, band}`` dicts for :func:`make_visits`.

    ``tsoreduce.io.read_lightcurves``: ours, Eureka!-style ECSV, SPARTA-style HDF5.

    Parameters
    ----------
    entries : list
        Path strings or ``{path, visit, band}`` mappings.

    Returns
    -------
    list of dict
    """
    from ..io import read_lightcurves

    out = []
    for e in entries:
        e = {"path": e} if isinstance(e, (str, Path)) else dict(e)
        out.append({"lc": read_lightcurves(e["path"]), "visit": e.get("visit"), "band": e.get("band")})
    return out


def _tables(jr: JointResult, prov: dict):
    from astropy.table import Table

    tabs = {}
    wt = jr.table()
    wt.meta.update(prov)
    tabs["white_fit"] = wt
    vt = Table(rows=[[r.get(c, np.nan) for c in _visit_columns(jr.visit_rows)] for r in jr.visit_rows],
               names=_visit_columns(jr.visit_rows))
    vt.meta.update({"orbit": jr.setup.orbit, "beta": "Winn et al. 2008 time-averaging, 10-30 min bins",
                    "rms_ppm": "rms of (flux - model) / systematics", **prov})
    tabs["visits"] = vt
    if jr.timing is not None:
        eph = jr.timing["ephemeris"]
        tt = Table(rows=[list(r.values()) for r in jr.timing["rows"]], names=list(jr.timing["rows"][0]))
        tt.meta.update({"T0": eph["T0"], "T0_err": eph["T0_err"], "P": eph["P"], "P_err": eph["P_err"],
                        "T0_P_cov": float(eph["cov"][0, 1]), "chi2": eph["chi2"], "dof": eph["dof"],
                        "method": "weighted least-squares linear ephemeris of the joint fit's mid-times", **prov})
        tabs["transit_times"] = tt
    if jr.visit_fits:
        names = ["label", "epoch", "t0", "t0_err_lower", "t0_err_upper"]
        keys = [n for n in ("rp_rs", "fp", "a_rs", "inc", "q1", "q2") if n in jr.visit_fits[0].median]
        rows = []
        for fr in jr.visit_fits:
            row = [fr.label, int(fr.epoch), fr.median["t0"], fr.err_lower["t0"], fr.err_upper["t0"]]
            for n in keys:
                row += [fr.median.get(n, np.nan), fr.err_lower.get(n, np.nan), fr.err_upper.get(n, np.nan)]
            rows.append(row + [fr.chi2_red])
        cols = names + [x for n in keys for x in (n, n + "_err_lower", n + "_err_upper")] + ["chi2_red"]
        ft = Table(rows=rows, names=cols)
        ft.meta.update({"method": jr.visit_fits[0].method, "note": "each visit fitted alone, per fixed", **prov})
        tabs["visit_fits"] = ft
    return tabs


def _visit_columns(rows):
    cols = []
    for r in rows:
        for c in r:
            if c not in cols:
                cols.append(c)
    return cols


def run_joint(entries, config: dict, outdir, *, plot=True, progress=None, provenance: dict | None = None):
    """Joint fit of several light-curve files, writing the products to ``outdir``.

    Writes ``white_fit.ecsv`` (global parameters), ``visits.ecsv`` (one row per visit),
    ``transit_times.ecsv`` (timing mode), ``visit_fits.ecsv`` (each visit alone), ``joint_chains.h5``
    (emcee) and figures ``figures/joint_lightcurves.png`` and ``figures/o_c.png``.

    Parameters
    ----------
    entries : list
        ``input.lightcurves`` list items (path strings or ``{path, visit, band}``), or already-read
        ``{lc, visit, band}`` dicts / :class:`Visit` objects.
    config : dict
        stage4 section.
    outdir : str or Path
        Output directory.
    plot : bool
        Write the figures.
    progress : bool, optional
        Log emcee's progress.
    provenance : dict, optional
        ``config_hash`` and ``config`` of the run, stored in the tables' metadata.

    Returns
    -------
    JointResult
        With ``files`` (key -> Path) set.

    Raises
    ------
    OverwriteError
        An output would replace an input.
    """
    from .spectrum import write_table
    from .stage import validate_config

    cfg = validate_config(config)
    outdir = Path(outdir)
    srcs = [Path(e if isinstance(e, (str, Path)) else e.get("path", "")).resolve() for e in entries
            if isinstance(e, (str, Path)) or (isinstance(e, dict) and "path" in e)]
    outs = ("white_fit.ecsv", "visits.ecsv", "transit_times.ecsv", "visit_fits.ecsv", "joint_chains.h5")
    if any(s == (outdir / n).resolve() for s in srcs for n in outs):
        raise OverwriteError(f"stage4 joint output in {outdir} would overwrite an input light curve")
    if entries and (isinstance(entries[0], (str, Path)) or (isinstance(entries[0], dict) and "path" in entries[0])):
        entries = read_visit_entries(entries)
    jr = fit_joint(entries, cfg, progress=bool(progress))
    outdir.mkdir(parents=True, exist_ok=True)
    from .. import __version__

    prov = {"tsoreduce_version": __version__, "stage4_config": copy.deepcopy(cfg)}
    for k in ("config_hash", "config"):
        if provenance and provenance.get(k):
            prov[k] = provenance[k]
    files = {k: write_table(t, outdir / f"{k}.ecsv") for k, t in _tables(jr, prov).items()}
    if jr.chain is not None:
        files["chains"] = _write_chain(outdir / "joint_chains.h5", jr)
    if plot:
        from ..plotting.joint import plot_joint_lightcurves, plot_o_c

        fd = outdir / "figures"
        fd.mkdir(parents=True, exist_ok=True)
        files["fig_joint"] = Path(plot_joint_lightcurves(jr, path=fd / "joint_lightcurves.png"))
        oc = plot_o_c(jr, path=fd / "o_c.png")
        if oc is not None:
            files["fig_o_c"] = Path(oc)
    jr.files = files
    return jr


def _write_chain(path: Path, jr: JointResult) -> Path:
    import json

    import h5py

    from .._util import atomic_path

    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        g = f.create_group("joint")
        g.create_dataset("chain", data=jr.chain, compression="gzip")
        g.create_dataset("log_prob", data=jr.log_prob, compression="gzip")
        g.attrs["free_names"] = json.dumps(jr.free)
        g.attrs["sampled_names"] = json.dumps(jr.sampled or jr.free)  # the chain's columns
        g.attrs["burn_in"] = jr.burn_in
        g.attrs["acceptance"] = jr.acceptance
        g.attrs["autocorr_time"] = json.dumps([float(x) for x in jr.tau])
    return path
