"""Simulation against recovery: compare the spectrum a run recovered with the one the simulator injected.

Used by :mod:`tsoreduce.pipeline` when the run's input is ``simulate``; also callable directly::

    compare_with_truth("output/demo/simulation/truth.npz", "output/demo/stage4")

The injected spectrum is binned exactly like the recovered channels with the simulator's own
``LRSTruth.injected_spectrum``, so the comparison has no binning error of its own.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..run_summary import depth_err
from ..run_summary import read_spectrum

__all__ = ["injected_for", "compare_with_truth", "comparison_numbers", "depth_offsets",
           "plot_recovered_vs_injected"]

log = logging.getLogger(__name__)


def injected_for(truth, spectrum):
    """The injected spectrum binned exactly as ``spectrum``'s channels.

    Parameters
    ----------
    truth : tsoreduce.simulate.LRSTruth
        The simulation's truth (``load_lrs_truth``).
    spectrum : astropy.table.Table
        A Stage 4 spectrum with ``wavelength``, ``wavelength_lower`` and ``wavelength_upper`` (um).

    Returns
    -------
    astropy.table.Table
        The same wavelength columns, ``transit_depth`` (ppm) and ``rp_rs`` of
        ``LRSTruth.injected_spectrum`` per [wavelength_lower, wavelength_upper], and the injected
        band's mean wavelength.
    """
    from astropy import units as u
    from astropy.table import Table, vstack
    rows = [truth.injected_spectrum([float(lo), float(hi)]) for lo, hi in
            zip(np.asarray(spectrum["wavelength_lower"], float), np.asarray(spectrum["wavelength_upper"], float))]
    inj = vstack(rows) if rows else Table()
    out = Table()
    out["wavelength"] = np.asarray(spectrum["wavelength"], float) * u.um
    out["wavelength_lower"] = np.asarray(spectrum["wavelength_lower"], float) * u.um
    out["wavelength_upper"] = np.asarray(spectrum["wavelength_upper"], float) * u.um
    out["transit_depth"] = np.asarray(inj["transit_depth"], float)
    out["transit_depth"].unit = "ppm"
    out["rp_rs"] = np.asarray(inj["rp_rs"], float)
    out["wavelength_injected_mean"] = np.asarray(inj["wavelength"], float) * u.um
    out.meta["source"] = inj.meta.get("source", "tsoreduce.simulate")
    out.meta["comment"] = ("injected transit depth binned like spectrum.ecsv; 'wavelength' repeats "
                           "spectrum.ecsv's channel centres")
    return out


def comparison_numbers(spectrum, injected) -> dict:
    """How well the recovered transit depths match the injected ones.

    Parameters
    ----------
    spectrum : astropy.table.Table
        Recovered spectrum (``transit_depth`` and its errors, ppm).
    injected : astropy.table.Table
        From :func:`injected_for`, row for row.

    Returns
    -------
    dict
        ``truth.chi2`` of recovered - injected with the recovered 1-sigma errors, the number of
        channels, chi2 per channel, the fractions of channels within 1 and 2 sigma and the mean offset
        (ppm).
    """
    rec = np.asarray(spectrum["transit_depth"], float)
    inj = np.asarray(injected["transit_depth"], float)
    err = depth_err(spectrum, "transit_depth")
    ok = np.isfinite(rec) & np.isfinite(inj) & np.isfinite(err) & (err > 0)
    z = (rec[ok] - inj[ok]) / err[ok]
    n = int(ok.sum())
    return {"truth.nchannels": n, "truth.chi2": float(np.sum(z**2)),
            "truth.chi2_per_channel": float(np.sum(z**2) / max(n, 1)),
            "truth.frac_within_1sigma": float(np.mean(np.abs(z) < 1)) if n else float("nan"),
            "truth.frac_within_2sigma": float(np.mean(np.abs(z) < 2)) if n else float("nan"),
            "truth.mean_offset_ppm": float(np.mean(rec[ok] - inj[ok])) if n else float("nan")}


def depth_offsets(spectrum, truth):
    """Recovered minus injected transit depth per channel.

    Parameters
    ----------
    spectrum : astropy.table.Table
        A Stage 4 spectrum table.
    truth : tsoreduce.simulate.LRSTruth
        The simulation's truth.

    Returns
    -------
    tuple of numpy.ndarray
        (injected depth, recovered - injected, recovered 1-sigma error), each ``(nchan,)`` in ppm; the
        injected depth binned by :func:`injected_for`.
    """
    inj = np.asarray(injected_for(truth, spectrum)["transit_depth"], float)
    return inj, np.asarray(spectrum["transit_depth"], float) - inj, depth_err(spectrum, "transit_depth")


def plot_recovered_vs_injected(spectrum, injected, path=None):
    """Figure: recovered transit depth (points, 1-sigma) and injected (line) against wavelength.

    Parameters
    ----------
    spectrum : astropy.table.Table
        Recovered spectrum.
    injected : astropy.table.Table
        From :func:`injected_for`.
    path : str or pathlib.Path, optional
        Where to save the PNG.

    Returns
    -------
    matplotlib.figure.Figure
        Depths above, residuals in sigma below.
    """
    import matplotlib.pyplot as plt
    w = np.asarray(spectrum["wavelength"], float)
    rec = np.asarray(spectrum["transit_depth"], float)
    lo = np.asarray(spectrum["transit_depth_err_lower"], float) if "transit_depth_err_lower" in spectrum.colnames else depth_err(spectrum, "transit_depth")
    hi = np.asarray(spectrum["transit_depth_err_upper"], float) if "transit_depth_err_upper" in spectrum.colnames else lo
    inj = np.asarray(injected["transit_depth"], float)
    fig, (ax, axr) = plt.subplots(2, 1, figsize=(7, 5.5), sharex=True, height_ratios=[3, 1])
    ax.errorbar(w, rec, yerr=[lo, hi], fmt="o", color="k", ms=4, label="recovered (tsoreduce)")
    ax.step(np.r_[np.asarray(injected["wavelength_lower"], float), np.asarray(injected["wavelength_upper"], float)[-1:]],
            np.r_[inj, inj[-1:]], where="post", color="C3", label="injected (binned)")
    ax.set_ylabel("transit depth (ppm)")
    ax.legend()
    z = (rec - inj) / (0.5 * (lo + hi))
    axr.axhline(0, color="C3")
    axr.plot(w, z, "ko", ms=4)
    axr.set_ylabel("(rec - inj) / sigma")
    axr.set_xlabel("wavelength (um)")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig


def compare_with_truth(truth_path, stage4_dir, *, plot: bool = True) -> tuple[list[str], dict]:
    """Write the injected spectrum beside the recovered one, and the comparison figure.

    Parameters
    ----------
    truth_path : str or pathlib.Path
        The truth file written by ``tsoreduce.simulate.write_lrs_simulation``.
    stage4_dir : str or pathlib.Path
        A Stage 4 output directory holding ``spectrum.ecsv``; ``injected_spectrum.ecsv`` is written
        there (atomically) and, with ``plot``, ``figures/recovered_vs_injected.png``.
    plot : bool
        Write the figure.

    Returns
    -------
    tuple
        (list of the paths written, :func:`comparison_numbers` dict).
    """
    from astropy.units import cds

    from .._util import atomic_path
    from . import load_lrs_truth
    stage4_dir = Path(stage4_dir)
    spec = read_spectrum(stage4_dir / "spectrum.ecsv")
    truth = load_lrs_truth(truth_path)
    inj = injected_for(truth, spec)
    dst = stage4_dir / "injected_spectrum.ecsv"
    with cds.enable(), atomic_path(dst, ".ecsv") as tmp:
        inj.write(tmp, format="ascii.ecsv", overwrite=True)
    written = [str(dst)]
    nums = comparison_numbers(spec, inj)
    log.info("recovered vs injected spectrum: chi2 = %.1f for %d channels, %.0f %% within 1 sigma",
             nums["truth.chi2"], nums["truth.nchannels"], 100 * nums["truth.frac_within_1sigma"])
    if plot:
        import matplotlib.pyplot as plt
        (stage4_dir / "figures").mkdir(exist_ok=True)
        fig_path = stage4_dir / "figures" / "recovered_vs_injected.png"
        fig = plot_recovered_vs_injected(spec, inj, fig_path)
        plt.close(fig)
        written.append(str(fig_path))
    return written, nums
