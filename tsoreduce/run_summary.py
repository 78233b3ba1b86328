"""The end-of-run summary of :func:`tsoreduce.pipeline.run`: key numbers read from the products.

Stage 3's light curves give the integration and channel counts, the white light curve's
point-to-point scatter and the noise ratios measured in Stage 3; Stage 4's result gives the white
fit's free parameters with errors, its reduced chi2 and noise figures (definitions:
:mod:`tsoreduce.noise`); a simulation adds the recovered-vs-injected spectrum numbers
(:mod:`tsoreduce.simulate.truth`).  Written to ``summary.json`` and printed by the command line.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from .run_plan import DONE, STAGE_DIRS, _read_marker

__all__ = ["format_summary", "key_numbers", "result_numbers", "read_spectrum", "spectrum_numbers", "depth_err"]

log = logging.getLogger("tsoreduce.pipeline")


def result_numbers(result) -> dict:
    """Key numbers of a Stage 4 result for the summary.

    The white-light fit's free parameters (median and mean error), reduced chi2 and noise figures;
    over the channels the median and maximum noise ratio and beta; the number of fitted parameters at
    a prior bound (WARNING when any).

    Parameters
    ----------
    result : object
        Stage 4's :class:`~tsoreduce.lightcurve.products.FitProducts` (``white``, ``channels``, or
        ``joint`` for a joint fit) or a joint-fit result (``visit_rows``).

    Returns
    -------
    dict
        Flat ``{"white.rp_rs": ..., "white.rp_rs_err": ..., ...}``.
    """
    out = {}
    white = getattr(result, "white", None)
    if white is None:  # a joint fit (FitProducts.joint): its global free parameters
        white = getattr(result, "joint", None)
    if white is None and hasattr(result, "visit_rows"):
        white = result
    if white is None:
        return out
    med = getattr(white, "median", None) or getattr(white, "params", None) or {}
    free = getattr(white, "free", None) or list(med)
    for k in free:
        try:
            out[f"white.{k}"] = float(med[k])
            el, eu = getattr(white, "err_lower", {}), getattr(white, "err_upper", {})
            if k in el and k in eu:
                out[f"white.{k}_err"] = float(0.5 * (el[k] + eu[k]))
        except (TypeError, ValueError, KeyError):
            pass
    chi2 = getattr(white, "chi2_red", None)
    if isinstance(chi2, (int, float)):
        out["white.chi2_red"] = float(chi2)
    out.update(_noise_numbers(white, getattr(result, "channels", None) or []))
    return out


def _noise_numbers(white, channels) -> dict:
    """Stage 4 noise figures for the summary (definitions: tsoreduce.noise): the white fit's expected
    (ERR) and residual rms in ppm, their ratio and beta; over the channels the median and maximum
    ratio and beta; and how many fitted parameters are flagged at a prior bound."""
    out = {}
    n = getattr(white, "noise", None) or {}
    for k, name in (("expected_ppm", "expected_ppm"), ("achieved_resid_ppm", "residual_ppm"),
                    ("ratio_resid", "noise_ratio"), ("beta", "beta")):
        if k in n:
            out[f"white.{name}"] = float(n[k])
    ratios = [c.noise.get("ratio_resid") for c in channels if getattr(c, "noise", None)]
    betas = [c.noise.get("beta") for c in channels if getattr(c, "noise", None)]
    if ratios:
        out["channels.noise_ratio_median"] = float(np.nanmedian(ratios))
        out["channels.noise_ratio_max"] = float(np.nanmax(ratios))
        out["channels.beta_median"] = float(np.nanmedian(betas))
        out["channels.beta_max"] = float(np.nanmax(betas))
    flagged = [f"{r.label}.{p}" for r in [white] + list(channels) for p, f in (getattr(r, "flags", None) or {}).items()
               if f]
    out["stage4.n_flagged_parameters"] = len(flagged)
    if flagged:
        log.warning("summary: %d fitted parameter(s) at a prior bound or with errors beyond the prior: %s",
                    len(flagged), ", ".join(flagged[:12]) + (" ..." if len(flagged) > 12 else ""))
    return out


def key_numbers(config: dict, out_dir: Path, read_lightcurves) -> dict:
    """The key numbers of a finished run, from its products and done markers.

    Parameters
    ----------
    config : dict
        The validated run config (unused keys are ignored).
    out_dir : pathlib.Path
        The run's output directory.
    read_lightcurves : callable
        Reader of the Stage 3 light-curve file (``tsoreduce.io.read_lightcurves``).

    Returns
    -------
    dict
        Flat ``{"lightcurves.nints": ..., "white.rp_rs": ..., ...}``; a product that cannot be read
        is left out with a WARNING (the summary never fails a finished run).
    """
    nums: dict = {}
    m3 = _read_marker(out_dir / STAGE_DIRS[3] / DONE)
    lcs = [p for p in (m3 or {}).get("products", []) if p.endswith("_lightcurves.h5")]
    if lcs:
        try:
            lc = read_lightcurves(out_dir / STAGE_DIRS[3] / lcs[0])
            nums["lightcurves.nints"] = int(lc.nints)
            nums["lightcurves.nchannels"] = int(lc.nchan)
            nums["lightcurves.n_masked_integrations"] = int(np.count_nonzero(lc.mask))
            if lc.white_flux is not None and lc.nints > 2:
                from .noise import p2p_scatter
                w = lc.white_flux[~lc.mask]
                # point-to-point scatter: robust to the transit and slow trends
                nums["lightcurves.white_p2p_ppm"] = float(p2p_scatter(w) / np.nanmedian(w) * 1e6)
            noise = lc.meta.get("noise") or {}
            if noise.get("white"):
                nums["lightcurves.white_noise_ratio"] = float(noise["white"]["ratio"])
                nums["lightcurves.white_beta"] = float(noise["white"]["beta"])
            if noise.get("ratio"):
                nums["lightcurves.channel_noise_ratio_median"] = float(np.nanmedian(noise["ratio"]))
                nums["lightcurves.channel_noise_ratio_max"] = float(np.nanmax(noise["ratio"]))
        except Exception as exc:  # the summary must never fail a finished run
            log.warning("summary: could not read %s (%s)", lcs[0], exc)
    m4 = _read_marker(out_dir / STAGE_DIRS[4] / DONE)
    if m4:
        nums.update(m4.get("result", {}))
    spec = out_dir / STAGE_DIRS[4] / "spectrum.ecsv"
    if spec.exists():
        nums.update(spectrum_numbers(spec))
    return nums


def format_summary(summary: dict) -> str:
    """The end-of-run summary: per stage what was done, products and figures, and key numbers.

    Parameters
    ----------
    summary : dict
        What :func:`tsoreduce.pipeline.run` returns.

    Returns
    -------
    str
        The text printed by the command line and written to run.log.
    """
    lines = [f"tsoreduce {summary.get('version')} run {summary.get('name')!r} -> {summary['output_dir']}"
             f"  ({summary.get('seconds', 0):.1f} s)"]
    for n, s in summary["stages"].items():
        lines.append(f"  {s['label']}: {s['action']} ({s['seconds']:.1f} s), "
                     f"{len(s['products'])} product(s), {len(s['figures'])} figure(s)")
        for prod in s["products"][:6]:
            lines.append(f"      {prod}")
        if len(s["products"]) > 6:
            lines.append(f"      ... and {len(s['products']) - 6} more")
    if summary.get("numbers"):
        lines.append("  key numbers:")
        for k, v in summary["numbers"].items():
            # repr: the shortest text that reads back as the same float (t0 60000.00232, not 60000)
            lines.append(f"      {k} = {v!r}" if isinstance(v, float) else f"      {k} = {v}")
    return "\n".join(lines)


def read_spectrum(path):
    """Read a spectrum ECSV (Stage 4's ``spectrum.ecsv`` or ``injected_spectrum.ecsv``).

    Parameters
    ----------
    path : str or pathlib.Path
        The ECSV file.

    Returns
    -------
    astropy.table.Table
        The table, read with astropy's ``cds`` units enabled (the depth columns are in ``cds.ppm``).
    """
    from astropy.table import Table
    from astropy.units import cds
    with cds.enable():
        return Table.read(path, format="ascii.ecsv")


def depth_err(t, name):
    """Symmetric 1-sigma error of a depth column: the mean of its lower and upper errors, or its single
    ``<name>_err`` column.

    Parameters
    ----------
    t : astropy.table.Table
        A spectrum table.
    name : str
        The depth column (``transit_depth`` or ``eclipse_depth``).

    Returns
    -------
    numpy.ndarray or None
        The errors (ppm), or None when the table has none.
    """
    lo, hi = f"{name}_err_lower", f"{name}_err_upper"
    if lo in t.colnames and hi in t.colnames:
        return 0.5 * (np.asarray(t[lo], float) + np.asarray(t[hi], float))
    if f"{name}_err" in t.colnames:
        return np.asarray(t[f"{name}_err"], float)
    return None


def spectrum_numbers(path) -> dict:
    """Key numbers of a spectrum table for the run summary.

    Parameters
    ----------
    path : str or pathlib.Path
        A Stage 4 ``spectrum.ecsv``.

    Returns
    -------
    dict
        ``spectrum.nchannels``, the wavelength range (um) and, for transit and/or eclipse depths, the
        median depth and median 1-sigma error (ppm); ``spectrum.median_depth_ppm`` repeats the transit
        depth.
    """
    t = read_spectrum(path)
    out = {"spectrum.nchannels": len(t)}
    if "wavelength" in t.colnames and len(t):
        w = np.asarray(t["wavelength"], float)
        out["spectrum.wavelength_min_um"] = float(np.nanmin(w))
        out["spectrum.wavelength_max_um"] = float(np.nanmax(w))
    for name in ("transit_depth", "eclipse_depth"):
        if name in t.colnames and len(t) and np.isfinite(np.asarray(t[name], float)).any():
            out[f"spectrum.median_{name}_ppm"] = float(np.nanmedian(np.asarray(t[name], float)))
            e = depth_err(t, name)
            if e is not None:
                out[f"spectrum.median_{name}_err_ppm"] = float(np.nanmedian(e))
    if "transit_depth" in out and "depth" not in out:
        pass
    # short alias used by tests and the README
    if "spectrum.median_transit_depth_ppm" in out:
        out["spectrum.median_depth_ppm"] = out["spectrum.median_transit_depth_ppm"]
    return out
