"""Joint Stage 4 fits as a stage: reading the visits, the product tables and figures.

``run_joint(visits, config)`` runs :func:`~tsoreduce.lightcurve.joint.fit_joint` and returns the
tables ``white_fit`` (global parameters), ``visits`` (one row per visit), ``transit_times`` (timing
mode) and ``visit_fits`` (each visit alone) as a :class:`~tsoreduce.lightcurve.products.FitProducts`
(the stage contract); :func:`tsoreduce.pipeline.run_stage4_files` writes them.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np

from ..contract import StageResult, no_references, progress_enabled
from .joint import JointResult, fit_joint
from .products import FitProducts
from .stage import validate_config

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


def run_joint(visits, config: dict | None = None, *, plot_dir=None, references=None) -> StageResult:
    """Stage 4 on several visits: one joint fit (shared orbit, per-visit systematics), pure.

    The stage contract's ``run`` for a list of visits: nothing is written except the figures into
    ``plot_dir``; :func:`tsoreduce.pipeline.run_stage4_files` writes the tables (``white_fit.ecsv``
    global parameters, ``visits.ecsv`` one row per visit, ``transit_times.ecsv`` in timing mode,
    ``visit_fits.ecsv`` each visit alone) and ``joint_chains.h5`` (emcee).  Progress bars follow
    :func:`tsoreduce.contract.progress_enabled`.

    Parameters
    ----------
    visits : list
        ``{lc, visit, band}`` dicts (``lc`` a :class:`~tsoreduce.datamodel.LightCurves`) or
        :class:`~tsoreduce.lightcurve.visits.Visit` objects (read files with
        :func:`read_visit_entries` first); not modified.
    config : dict, optional
        The ``stage4`` section with its ``joint`` block (validated here).
    plot_dir : str or pathlib.Path, optional
        Directory for ``joint_lightcurves.png`` and (timing mode) ``o_c.png``; None: no figures.
    references : dict, optional
        Stage 4 uses no reference files; must be empty.

    Returns
    -------
    tsoreduce.contract.StageResult
        ``product`` a :class:`~tsoreduce.lightcurve.products.FitProducts` with ``joint`` set (the
        :class:`~tsoreduce.lightcurve.joint.JointResult`); ``diagnostics`` the number of visits, the
        fit method and whether the chain converged; ``figures`` the paths written.

    Raises
    ------
    ValueError
        If ``references`` are given.
    """
    no_references("stage4", references)
    cfg = validate_config(config)
    jr = fit_joint(visits, cfg, progress=progress_enabled())
    from .. import __version__

    prov = {"tsoreduce_version": __version__, "stage4_config": copy.deepcopy(cfg)}
    products = FitProducts(tables=_tables(jr, prov), config=cfg, joint=jr)
    figures = []
    if plot_dir is not None:
        from ..plotting.joint import plot_joint_lightcurves, plot_o_c

        fd = Path(plot_dir)
        fd.mkdir(parents=True, exist_ok=True)
        figures.append(Path(plot_joint_lightcurves(jr, path=fd / "joint_lightcurves.png")))
        oc = plot_o_c(jr, path=fd / "o_c.png")
        if oc is not None:
            figures.append(Path(oc))
    diagnostics = {"n_visits": len(jr.visit_rows), "method": jr.method, "converged": bool(jr.converged)}
    return StageResult(product=products, diagnostics=diagnostics, figures=figures)
