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

__all__ = ["format_summary", "key_numbers", "result_numbers"]

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
        from .simulate import truth as pipeline_truth
        nums.update(pipeline_truth.spectrum_numbers(spec))
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

