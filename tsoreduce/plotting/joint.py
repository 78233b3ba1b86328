"""Joint-fit figures: every visit's detrended light curve with the joint model and residuals; O-C diagram.

Each function takes a :class:`~tsoreduce.lightcurve.joint.JointResult`, saves a PNG when ``path`` is given
and returns the path (or the Figure when ``path`` is None).
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from .lightcurve import _bin, _finish

__all__ = ["plot_joint_lightcurves", "plot_o_c"]


def plot_joint_lightcurves(jr, *, path=None, bin_minutes=10.0):
    """One column per visit: flux / systematics with the joint astrophysical model (top), residuals in ppm.

    Time in hours from the visit's mid-transit, binned points every ``bin_minutes``.

    Parameters
    ----------
    jr : JointResult
        The joint fit (its ``curves``).
    path : str or Path, optional
        PNG to write.
    bin_minutes : float
        Bin width of the overplotted points (min).

    Returns
    -------
    Path or matplotlib.figure.Figure
        The file written, or the figure when ``path`` is None.
    """
    curves = jr.curves
    n = len(curves)
    fig = Figure(figsize=(3.2 * n + 1, 6))
    axes = fig.subplots(2, n, squeeze=False, sharex="col", gridspec_kw={"height_ratios": [3, 1.3]})
    for k, c in enumerate(curves):
        t = (c["time"] - c["t0"]) * 24.0
        det = c["flux"] / c["systematics"]
        res = (c["flux"] - c["model"]) / c["systematics"] * 1e6
        nb = max(1, int(round(bin_minutes / (np.median(np.diff(c["time"])) * 1440.0))))
        a1, a2 = axes[0, k], axes[1, k]
        a1.plot(t, det, ".", ms=1.2, color="0.65")
        a1.plot(_bin(t, nb), _bin(det, nb), "o", ms=2.5, color="k")
        a1.plot(t, c["astro"], "-", color="C3", lw=1.3)
        a1.set_title(f"{c['label']} ({c['band'] or 'no band'})\nchi2_red {c['chi2_red']:.2f}", fontsize=9)
        a2.plot(t, res, ".", ms=1.2, color="0.65")
        a2.plot(_bin(t, nb), _bin(res, nb), "o", ms=2.5, color="k")
        a2.axhline(0, color="C3")
        a2.set_xlabel("hours from mid-transit")
        if k == 0:
            a1.set_ylabel("detrended relative flux")
            a2.set_ylabel("residual (ppm)")
    fig.suptitle(f"joint fit ({jr.setup.orbit}), {n} visits")
    return _finish(fig, path)


def plot_o_c(jr, *, path=None):
    """Observed minus calculated mid-times (minutes) against epoch.

    Timing mode: the joint fit's free mid-times against their fitted linear ephemeris.  Ephemeris mode:
    the per-visit fits' mid-times (when made) against the joint ephemeris.

    Parameters
    ----------
    jr : JointResult
        The joint fit.
    path : str or Path, optional
        PNG to write.

    Returns
    -------
    Path or matplotlib.figure.Figure or None
        None when there are no mid-times to compare.
    """
    if jr.timing is not None:
        rows = jr.timing["rows"]
        E = np.array([r["epoch"] for r in rows])
        oc = np.array([r["o_c_min"] for r in rows])
        err = np.array([r["o_c_err_min"] for r in rows])
        labels = [r["label"] for r in rows]
        title = "timing mode: mid-times vs fitted linear ephemeris"
    elif jr.visit_fits:
        T0, P = jr.median["t0"], jr.median["per"]
        E = np.array([f.epoch for f in jr.visit_fits])
        oc = np.array([(f.median["t0"] - (T0 + e * P)) * 1440.0 for f, e in zip(jr.visit_fits, E)])
        err = np.array([0.5 * (f.err_lower["t0"] + f.err_upper["t0"]) * 1440.0 for f in jr.visit_fits])
        labels = [f.label for f in jr.visit_fits]
        title = "per-visit fits vs the joint ephemeris"
    else:
        return None
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    ax.errorbar(E, oc, yerr=err, fmt="o", color="k", capsize=3)
    for e, y, lab in zip(E, oc, labels):
        ax.annotate(lab, (e, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.axhline(0, color="C3")
    ax.set_xlabel("epoch")
    ax.set_ylabel("O - C (min)")
    ax.set_title(title, fontsize=10)
    return _finish(fig, path)
