"""Stage 1 (detector) diagnostic figures: one function per figure; each returns the Figure and saves it
when ``path`` is given.

Stage 1 makes its figures from one segment (the first; from its first chunk when the segment is read
in chunks).  :func:`figure_caption` sets the line every figure saved meanwhile carries above its
title -- which file, segment and integrations it shows -- so a figure is never mistaken for the
whole exposure.  ``tsoreduce.pipeline.run_stage1_files`` sets it.  The module imports nothing from
the stages (the Stage 1 runner imports it, never the reverse).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

__all__ = ["plot_emi_periodogram", "plot_emi_amplitudes", "plot_jump_map", "plot_rate_image",
           "plot_ramp_residuals", "plot_calibration_steps", "figure_caption"]

_CAPTION: list[str] = []


@contextlib.contextmanager
def figure_caption(text: str):
    """Within the ``with`` block every Stage 1 figure saved carries ``text`` above its title.

    Parameters
    ----------
    text : str
        E.g. ``"segment 2/3 (jw..._seg002_uncal.fits): integrations 41-80 of 120"``.

    Yields
    ------
    None
    """
    _CAPTION.append(str(text))
    try:
        yield
    finally:
        _CAPTION.pop()


def _save(fig, path):
    if _CAPTION:
        # above everything (titles end at y <= 1); bbox_inches="tight" grows the canvas to include it
        fig.text(0.5, 1.0, _CAPTION[-1], ha="center", va="bottom", fontsize=8, color="0.25")
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110, bbox_inches="tight")
    return fig


def plot_emi_periodogram(freq_hz, power_before, power_after, tone_hz=None, *, path=None):
    """Lomb-Scargle periodogram of the EMI-fit pixels before/after the EMI correction.

    Parameters
    ----------
    freq_hz : numpy.ndarray
        ``(nfreq,)`` frequencies in Hz.
    power_before, power_after : numpy.ndarray
        ``(nfreq,)`` power before and after (from :func:`tsoreduce.detector.emi_periodogram`).
    tone_hz : sequence of float, optional
        Fitted tones (Hz), marked as dotted lines.
    path : str or pathlib.Path, optional
        Where the figure is saved (PNG, 110 dpi); None: not saved.

    Returns
    -------
    matplotlib.figure.Figure
        The figure.
    """
    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.semilogy(freq_hz, np.clip(power_before, 1e-8, None), lw=0.8, label="before EMI correction")
    ax.semilogy(freq_hz, np.clip(power_after, 1e-8, None), lw=0.8, label="after")
    for f in (tone_hz if tone_hz is not None else []):
        ax.axvline(f, color="k", ls=":", lw=0.6)
    ax.set_xlabel("frequency (Hz)")
    ax.set_ylabel("Lomb-Scargle power")
    ax.set_title("EMI: line-subtracted reads of off-trace + reference pixels (integration 0)")
    ax.legend(loc="upper right", fontsize=8)
    return _save(fig, path)


def plot_emi_amplitudes(diagnostics: dict, *, path=None):
    """Fitted EMI amplitude (DN) per integration for each tone.

    Parameters
    ----------
    diagnostics : dict
        The diagnostics of :func:`tsoreduce.detector.correct_emi` (``amplitude`` ``(nints, K)`` DN,
        ``frequencies`` ``(K,)`` Hz).
    path : str or pathlib.Path, optional
        Where the figure is saved (PNG, 110 dpi); None: not saved.

    Returns
    -------
    matplotlib.figure.Figure
        The figure.
    """
    fig, ax = plt.subplots(figsize=(7, 3.2))
    amp = np.atleast_2d(diagnostics.get("amplitude", np.zeros((0, 0))))
    for k, f in enumerate(diagnostics.get("frequencies", [])):
        ax.plot(amp[:, k], ".", ms=3, label=f"{f:.3f} Hz")
    ax.set_xlabel("integration")
    ax.set_ylabel("amplitude (DN)")
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_jump_map(counts, *, nints: int | None = None, path=None):
    """Image of the number of JUMP_DET groups per pixel and the per-column totals.

    Parameters
    ----------
    counts : numpy.ndarray
        Int ``(nrows, ncols)`` jump counts (:func:`tsoreduce.detector.jump_counts`).
    nints : int, optional
        Integrations counted, for the axis label.
    path : str or pathlib.Path, optional
        Where the figure is saved (PNG, 110 dpi); None: not saved.

    Returns
    -------
    matplotlib.figure.Figure
        The figure.
    """
    counts = np.asarray(counts)
    # constrained layout keeps the colour bar and its label clear of the right panel's axis label
    fig, (a0, a1) = plt.subplots(1, 2, figsize=(8, 6), gridspec_kw=dict(width_ratios=(1, 1.4)),
                                 layout="constrained")
    im = a0.imshow(counts, origin="lower", aspect="auto", cmap="magma", interpolation="nearest")
    fig.colorbar(im, ax=a0, label="jumps per pixel")
    a0.set_xlabel("column")
    a0.set_ylabel("row")
    a1.plot(counts.sum(axis=0), drawstyle="steps-mid")
    a1.set_xlabel("column")
    a1.set_ylabel("jumps per column" + (f" ({nints} integrations)" if nints else ""))
    fig.suptitle(f"Stage 1 jump detection: {int(counts.sum())} jumps")
    return _save(fig, path)


def plot_rate_image(rates, *, integration: int | None = None, path=None):
    """Median rate image (DN/s, log stretch) and the median trace-summed rate per integration.

    Parameters
    ----------
    rates : tsoreduce.datamodel.RateData
        Rateints ``(nints, nrows, ncols)`` in DN/s.
    integration : int, optional
        Show this integration only (default: the median over all).
    path : str or pathlib.Path, optional
        Where the figure is saved (PNG, 110 dpi); None: not saved.

    Returns
    -------
    matplotlib.figure.Figure
        The figure.
    """
    data = rates.data if integration is None else rates.data[integration:integration + 1]
    with np.errstate(all="ignore"):
        med = np.nanmedian(data, axis=0)
        flux = np.nansum(rates.data, axis=(1, 2))
    fig, (a0, a1) = plt.subplots(1, 2, figsize=(9, 5), gridspec_kw=dict(width_ratios=(1, 1.6)),
                                 layout="constrained")
    pos = med[np.isfinite(med) & (med > 0)]
    vmin = np.percentile(pos, 5) if pos.size else 1e-3
    im = a0.imshow(np.clip(med, vmin, None), origin="lower", aspect="auto",
                   norm=matplotlib.colors.LogNorm(vmin=vmin), cmap="viridis")
    fig.colorbar(im, ax=a0, label="DN/s")
    a0.set_xlabel("column")
    a0.set_ylabel("row")
    # the exposure's 1-based integration numbers (INTSTART..INTEND of the segment) when known
    it = getattr(rates, "int_times", None)
    num = np.asarray(it.integration_number) if it is not None and len(it.integration_number) == len(flux) \
        else np.arange(len(flux))
    a1.plot(num, flux / np.nanmedian(flux), ".", ms=2)
    a1.set_xlabel("integration (of the exposure)" if it is not None else "integration")
    a1.set_ylabel("summed rate / median")
    fig.suptitle("Stage 1 rateints")
    return _save(fig, path)


def plot_ramp_residuals(ramp_data, rate_dn_s, tgroup_s, *, pixel, integration=0, usable=None, path=None):
    """One pixel's ramp (DN vs group) with the fitted slope, and the residuals.

    Parameters
    ----------
    ramp_data : numpy.ndarray
        ``(nints, ngroups, nrows, ncols)`` DN after calibration.
    rate_dn_s : numpy.ndarray
        ``(nints, nrows, ncols)`` fitted rates in DN/s.
    tgroup_s : float
        Group time in s.
    pixel : tuple of int
        ``(row, col)``.
    integration : int
        Integration shown.
    usable : numpy.ndarray, optional
        Boolean ``(ngroups,)``: the groups used in the fit.
    path : str or pathlib.Path, optional
        Where the figure is saved (PNG, 110 dpi); None: not saved.

    Returns
    -------
    matplotlib.figure.Figure
        The figure.
    """
    y, x = pixel
    d = np.asarray(ramp_data[integration, :, y, x], float)
    g = np.arange(d.size)
    use = np.ones(d.size, bool) if usable is None else np.asarray(usable, bool)
    slope = rate_dn_s[integration, y, x] * tgroup_s
    icpt = np.mean(d[use] - slope * g[use]) if use.any() else 0.0
    model = icpt + slope * g
    fig, (a0, a1) = plt.subplots(2, 1, figsize=(6, 5), sharex=True)
    a0.plot(g[use], d[use], "o", ms=3, label="used")
    a0.plot(g[~use], d[~use], "x", ms=4, label="not used")
    a0.plot(g, model, "-", lw=1, label="fit")
    a0.set_ylabel("DN")
    a0.legend(fontsize=8)
    a1.plot(g, d - model, "o", ms=3)
    a1.axhline(0, color="k", lw=0.6)
    a1.set_xlabel("group")
    a1.set_ylabel("residual (DN)")
    fig.suptitle(f"ramp of pixel (row {y}, col {x}), integration {integration}")
    return _save(fig, path)


def plot_calibration_steps(raw, calibrated, groupdq, saturated_groups, *, pixel, path=None):
    """The DQ-init, saturation, reset, linearity and dark steps on one pixel and one integration.

    Parameters
    ----------
    raw, calibrated : numpy.ndarray
        Float ``(ngroups,)`` DN of the pixel's ramp before DQ init and after the EMI, linearity and
        dark steps.
    groupdq : numpy.ndarray
        uint32 ``(ngroups,)`` GROUPDQ after the reset step (DO_NOT_USE groups shaded, SATURATED
        marked).
    saturated_groups : numpy.ndarray
        Int ``(nrows, ncols)`` number of SATURATED groups per pixel in that integration.
    pixel : tuple of int
        ``(row, col)``.
    path : str or pathlib.Path, optional
        Where the figure is saved (PNG, 110 dpi); None: not saved.

    Returns
    -------
    matplotlib.figure.Figure
        The figure.
    """
    from ..datamodel import DQ

    raw = np.asarray(raw, float)
    cal = np.asarray(calibrated, float)
    gdq = np.asarray(groupdq, np.uint32)
    g = np.arange(raw.size)
    dnu = (gdq & np.uint32(DQ.DO_NOT_USE)) != 0
    sat = (gdq & np.uint32(DQ.SATURATED)) != 0
    fig, (a0, a1, a2) = plt.subplots(1, 3, figsize=(13, 3.8), gridspec_kw={"width_ratios": [1.3, 1, 0.6]})
    for k in np.flatnonzero(dnu):
        for a in (a0, a1):
            a.axvspan(k - 0.5, k + 0.5, color="0.85", lw=0)
    a0.plot(g, raw, ".-", ms=3, lw=0.8, label="raw (uncal)")
    a0.plot(g, cal, ".-", ms=3, lw=0.8, label="after EMI, linearity, dark")
    if sat.any():
        a0.plot(g[sat], raw[sat], "rx", ms=6, label="SATURATED")
    a0.set_xlabel("group (grey: DO_NOT_USE, incl. reset/RSCD drop)")
    a0.set_ylabel("DN")
    a0.legend(fontsize=8)
    a0.set_title(f"pixel (row {pixel[0]}, col {pixel[1]})", fontsize=9)
    a1.plot(g, cal - raw, ".-", ms=3, lw=0.8)
    a1.set_xlabel("group")
    a1.set_ylabel("calibrated - raw (DN)")
    a1.set_title("EMI + linearity + dark correction", fontsize=9)
    im = a2.imshow(saturated_groups, origin="lower", aspect="auto", cmap="magma", interpolation="nearest",
                    vmin=0, vmax=max(1, int(np.max(saturated_groups))))
    fig.colorbar(im, ax=a2, label="SATURATED groups")
    a2.set_title("saturation (this integration)", fontsize=9)
    a2.set_xlabel("column")
    a2.set_ylabel("row")
    fig.tight_layout()
    return _save(fig, path)
