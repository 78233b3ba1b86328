"""Stage 3 step 5: white and spectroscopic light curves from the x1dints.

Each spectral element enters a wavelength bin with the fraction of its wavelength interval inside it
(exoTEDRF ``bin_at_resolution``, Radica 2024); errors add in quadrature.  Mid-integration times come
from INT_TIMES (gaps interpolated, with a WARNING and a count); the light-curve noise figures are those of
:mod:`tsoreduce.noise`.  Sources: docs/sources.md.
"""

from __future__ import annotations

import logging

import numpy as np

from ..datamodel import DQ, LightCurves, SpectraData
from ..errors import ConfigError, ProductError, ShapeError
from ..spectroscopic import baseline_index, nanmedian

log = logging.getLogger(__name__)

__all__ = ["bin_edges", "bin_lightcurves", "lightcurve_times"]


def _pixel_edges(w):
    """Lower/upper wavelength edges of each element from neighbour midpoints (any monotonic order)."""
    w = np.asarray(w, float)
    order = np.argsort(w)
    ws = w[order]
    mid = 0.5 * (ws[1:] + ws[:-1])
    lo = np.r_[ws[0] - (mid[0] - ws[0]), mid]
    hi = np.r_[mid, ws[-1] + (ws[-1] - mid[-1])]
    out_lo, out_hi = np.empty_like(w), np.empty_like(w)
    out_lo[order], out_hi[order] = lo, hi
    return out_lo, out_hi


def _overlap_weights(plo, phi, blo, bhi):
    """Fraction of each pixel [plo, phi] inside each bin [blo, bhi]: ``(nbins, npix)``."""
    ov = np.minimum(phi[None], bhi[:, None]) - np.maximum(plo[None], blo[:, None])
    return np.clip(ov, 0, None) / (phi - plo)[None]


def bin_edges(edges=None, resolution=None, white_range=(5, 12), bin_width=0.5):
    """Wavelength bin edges of the spectroscopic light curves.

    Parameters
    ----------
    edges : array_like or None
        Explicit edges (um, ascending); used as given.
    resolution : float or None
        Constant resolution R: ``round(ln(max/min) * R)`` bins uniform in ln(lambda) over
        ``white_range``.
    white_range : tuple of float
        Wavelength range (um) of the default bins.
    bin_width : float
        Bin width (um) when neither ``edges`` nor ``resolution`` is given.

    Returns
    -------
    numpy.ndarray
        ``(nchan + 1,)`` ascending edges (um).

    Raises
    ------
    ConfigError
        If ``edges`` is not ascending with at least 2 values.
    """
    lo_w, hi_w = float(min(white_range)), float(max(white_range))
    if edges is not None:
        edges = np.asarray(edges, float)
        if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
            raise ConfigError(f"bin edges must be ascending with >= 2 values, got {edges!r}")
        return edges
    if resolution is not None:
        n = max(1, int(round(np.log(hi_w / lo_w) * float(resolution))))
        return np.geomspace(lo_w, hi_w, n + 1)
    n = max(1, int(round((hi_w - lo_w) / bin_width)))
    return np.linspace(lo_w, hi_w, n + 1)


def _bin_weights(w, edges, lo_w, hi_w):
    """Overlap weights of the channels ``(nchan, nwave)`` and of the white band ``(1, nwave)``; elements
    without a wavelength enter no bin, and the edges of the others come from their own neighbours."""
    good_w = np.isfinite(w)
    plo, phi = np.zeros(w.shape), np.ones(w.shape)
    plo[good_w], phi[good_w] = _pixel_edges(w[good_w])
    if not good_w.all():
        log.warning("bin_lightcurves: %d spectral elements without a wavelength are left out of every bin",
                    int((~good_w).sum()))
    W = _overlap_weights(plo, phi, edges[:-1], edges[1:]) * good_w[None]
    Ww = _overlap_weights(plo, phi, np.array([lo_w]), np.array([hi_w])) * good_w[None]
    if (W.sum(axis=1) == 0).any():
        empty = np.flatnonzero(W.sum(axis=1) == 0)
        raise ConfigError(f"wavelength bins {[(edges[i], edges[i + 1]) for i in empty]} contain no "
                          f"spectral element (spectrum covers {np.nanmin(w):.2f}-{np.nanmax(w):.2f} um)")
    return W, Ww, good_w


def _mostly_bad(bad, W, Ww, max_bad_fraction):
    """``(nints, nchan)`` and ``(nints,)`` bool: the bad share of a bin's wavelength weight exceeds
    ``max_bad_fraction`` (W ``(nchan, nwave)``, Ww ``(1, nwave)`` overlap weights)."""
    b = bad.astype(float)
    with np.errstate(all="ignore"):
        chan = (b @ W.T) / W.sum(axis=1)[None, :]
        white = (b @ Ww.T)[:, 0] / Ww.sum()
    return chan > max_bad_fraction, white > max_bad_fraction


def _repair(f, bad, Ww):
    """Bad spectral values replaced by the element's median over time scaled by the integration's
    white-light ratio (one bad element does not bias the sums)."""
    if not bad.any():
        return f
    f0 = np.where(bad, np.nan, f)
    with np.errstate(all="ignore"):
        tmpl = nanmedian(f0, axis=0)
        white0 = np.nansum(np.where(bad, 0, f0) * Ww[0], axis=1)
        ref = np.nansum(np.where(bad, 0, tmpl[None]) * Ww[0], axis=1)
        scale = np.where(ref > 0, white0 / ref, 1.0)
    log.warning("bin_lightcurves: %d NaN or DO_NOT_USE spectral values (%d integrations) replaced by "
                "the element's median scaled to the integration (meta n_replaced_spectral_values)",
                int(bad.sum()), int(bad.any(axis=1).sum()))
    return np.where(bad, np.nan_to_num(tmpl)[None] * scale[:, None], f)


def _bin(spectra, W, Ww, max_bad_fraction):
    """Channel and white fluxes and errors ``(nints, nchan)``, ``(nints,)``; points whose weight is
    mostly bad are NaN.  Returns them with the bad-value masks."""
    f = spectra.data.astype(float)
    bad = ~np.isfinite(f) | ((spectra.dq & np.uint32(DQ.DO_NOT_USE)) != 0)
    # a channel (or the white band) whose weight is mostly bad in an integration is not repaired from
    # the median spectrum: that point is NaN (and the integration masked when the white band is)
    chan_bad, white_bad = _mostly_bad(bad, W, Ww, max_bad_fraction)
    f = _repair(f, bad, Ww)
    e = np.nan_to_num(spectra.err.astype(float))
    flux, err = f @ W.T, np.sqrt((e * e) @ (W * W).T)
    wflux, werr = (f @ Ww.T)[:, 0], np.sqrt((e * e) @ (Ww * Ww).T)[:, 0]
    flux[chan_bad], err[chan_bad] = np.nan, np.nan
    wflux[white_bad], werr[white_bad] = np.nan, np.nan
    return (flux, err, wflux, werr), bad, chan_bad, white_bad


def _normalise(curves, nints, baseline_ints):
    """Each light curve divided by its median over the baseline integrations."""
    flux, err, wflux, werr = curves
    idx = baseline_index(nints, baseline_ints)
    with np.errstate(all="ignore"):
        nrm = np.nanmedian(flux[idx], axis=0)
        wn = np.nanmedian(wflux[idx])
    return flux / nrm, err / np.abs(nrm), wflux / wn, werr / abs(wn)


def _bad_meta(spectra, bad, chan_bad, white_bad, max_bad_fraction):
    """Counts (and integration numbers) of the replaced, NaN and masked points, with a WARNING."""
    nmask = int(white_bad.sum())
    meta = {"max_bad_fraction": float(max_bad_fraction), "n_replaced_spectral_values": int(bad.sum()),
            "n_masked_integrations": nmask, "n_nan_channel_points": int(chan_bad.sum())}
    if nmask or chan_bad.any():
        num = spectra.int_times.integration_number if spectra.int_times is not None else \
            np.arange(1, spectra.nints + 1)
        meta["masked_integrations"] = [int(x) for x in num[white_bad]]
        log.warning("light curves: %d integration(s) masked (more than %.0f %% of the white-band flux bad: "
                    "NaN flux, mask column set)%s; %d channel point(s) NaN for the same reason",
                    nmask, 100 * max_bad_fraction,
                    f", integration number(s) {meta['masked_integrations'][:20]}" if nmask else "",
                    int(chan_bad.sum()))
    return meta


def bin_lightcurves(spectra: SpectraData, edges=None, resolution=None, white_range=(5, 12),
                    normalise=True, *, bin_width=0.5, baseline_ints=None,
                    max_bad_fraction=0.5) -> LightCurves:
    """White-light and spectroscopic light curves from a time series of spectra.

    Bins: :func:`bin_edges` (default 0.5 um bins 5-12 um, as the published WASP-43b reductions).  Each
    spectral element enters a bin with the fraction of its wavelength interval inside it (exoTEDRF
    ``bin_at_resolution``); errors add in quadrature.  Elements that are NaN or flagged DO_NOT_USE in
    an integration are replaced by the element's median over time scaled by that integration's
    white-light ratio -- unless more than ``max_bad_fraction`` of a bin's wavelength weight is bad in
    that integration: that point is NaN, and when the white band is affected the integration is masked
    (``mask`` True; a WARNING lists them; ``meta`` records ``n_masked_integrations``,
    ``masked_integrations``, ``n_nan_channel_points``).  Non-finite INT_TIMES entries are interpolated
    (:func:`lightcurve_times`).  ``meta['noise']`` holds per light curve the expected scatter from the
    propagated ERR, the achieved point-to-point scatter, their ratio and a red-noise factor
    (:mod:`tsoreduce.noise`).

    Parameters
    ----------
    spectra : SpectraData
        ``(nints, nwave)`` spectra with ``wavelength`` ``(nwave,)`` (or ``(nints, nwave)``) in um.
    edges : array_like or None
        Bin edges (um, ascending); overrides ``resolution`` and ``bin_width``.
    resolution : float or None
        Constant-resolution binning over ``white_range``.
    white_range : tuple of float
        Wavelength range (um) of the white light curve and of the default bins.
    normalise : bool
        Divide each light curve by its median over ``baseline_ints``.
    bin_width : float
        Bin width (um) without ``edges`` or ``resolution``.
    baseline_ints : list of int or None
        ``[start, stop)`` pairs of 0-based integrations of the baseline (None: all).
    max_bad_fraction : float
        Largest bad share of a bin's wavelength weight that is repaired.

    Returns
    -------
    LightCurves
        time = mid-integration BMJD_TDB (:func:`lightcurve_times`), ``flux``/``err`` ``(nchan,
        nints)``, channel centres and edges (um), white light curve, ``mask`` ``(nints,)``,
        regressors = ``spectra.aux``.

    Raises
    ------
    ShapeError
        Without a wavelength, or with no finite one.
    ConfigError
        For bad or empty bins.
    """
    if spectra.wavelength is None:
        raise ShapeError("bin_lightcurves needs SpectraData.wavelength (um)")
    w = spectra.wavelength if spectra.wavelength.ndim == 1 else np.nanmedian(spectra.wavelength, axis=0)
    if not np.isfinite(w).any():
        raise ShapeError("bin_lightcurves: no spectral element has a finite wavelength")
    lo_w, hi_w = float(min(white_range)), float(max(white_range))
    edges = bin_edges(edges, resolution, white_range, bin_width)
    W, Ww, good_w = _bin_weights(w, edges, lo_w, hi_w)
    curves, bad, chan_bad, white_bad = _bin(spectra, W, Ww, max_bad_fraction)
    if normalise:
        curves = _normalise(curves, spectra.nints, baseline_ints)
    flux, err, wflux, werr = curves
    meta = {"source": "tsoreduce Stage 3", "flux_units": "normalised" if normalise else spectra.units,
            "white_range_um": [lo_w, hi_w], "n_elements_without_wavelength": int((~good_w).sum())}
    time, tmeta = lightcurve_times(spectra)
    meta.update(tmeta)
    meta.update(_bad_meta(spectra, bad, chan_bad, white_bad, max_bad_fraction))
    for k in ("TARGPROP", "TARGNAME", "PROGRAM", "OBSERVTN"):
        if k in spectra.meta:
            meta[k] = spectra.meta[k]
    log.info("light curves: %d channels %.2f-%.2f um, white light %.1f-%.1f um", len(edges) - 1,
             edges[0], edges[-1], lo_w, hi_w)
    meta["noise"] = _noise_meta(flux.T, err.T, wflux, werr, white_bad)
    return LightCurves(time=time.copy(), flux=flux.T, err=err.T, wavelength=0.5 * (edges[:-1] + edges[1:]),
                       wavelength_lower=edges[:-1], wavelength_upper=edges[1:], white_flux=wflux,
                       white_err=werr, mask=white_bad, regressors=dict(spectra.aux), meta=meta)


def _interpolate_times(it, t, ok):
    """INT_TIMES mid times with the non-finite ones interpolated linearly in integration number (and
    extrapolated with the median cadence beyond the first / last finite one)."""
    num = np.asarray(it.integration_number, float)
    t = t.copy()
    t[~ok] = np.interp(num[~ok], num[ok], t[ok], left=np.nan, right=np.nan)
    edge = ~np.isfinite(t)
    if edge.any():
        step = np.median(np.diff(t[ok]) / np.diff(num[ok]))
        i0 = np.flatnonzero(ok)[0]
        t[edge] = t[i0] + (num[edge] - num[i0]) * step
    meta = {"n_times_interpolated": int((~ok).sum()), "times_interpolated": [int(x) for x in num[~ok]]}
    log.warning("light curves: %d of %d INT_TIMES mid times non-finite; interpolated in integration "
                "number from the %d finite ones (integration(s) %s)", int((~ok).sum()), ok.size,
                int(ok.sum()), meta["times_interpolated"][:20])
    return t, meta


def lightcurve_times(spectra: SpectraData):
    """Mid-integration BMJD_TDB of the light curves, and where it came from.

    Non-finite INT_TIMES entries are interpolated linearly in integration number from the finite ones
    (the cadence is regular within an exposure) with a WARNING and a count (``n_times_interpolated``,
    ``times_interpolated`` integration numbers).  With fewer than two finite times the time is
    integration index x EFFINTTM (or INTTIME) from the header, with a WARNING.

    Parameters
    ----------
    spectra : SpectraData
        ``(nints, nwave)`` spectra with ``int_times`` (or None) and ``meta``.

    Returns
    -------
    time : numpy.ndarray
        ``(nints,)`` mid times (BMJD_TDB, days; days from the first integration when rebuilt from
        EFFINTTM).
    meta : dict
        ``time_source``, ``n_times_interpolated`` (and ``times_interpolated``).

    Raises
    ------
    ProductError
        With fewer than two finite times and no EFFINTTM / INTTIME keyword (no default cadence).
    """
    it = spectra.int_times
    t = None if it is None else np.asarray(it.mid_bjd_tdb, float)
    ok = np.zeros(spectra.nints, bool) if t is None else np.isfinite(t)
    if ok.sum() >= 2:
        meta = {"n_times_interpolated": 0,
                "time_source": "INT_TIMES int_mid_BJD_TDB" + (" (reconstructed)" if it.reconstructed else "")}
        if ok.all():
            return t.copy(), meta
        t, imeta = _interpolate_times(it, t, ok)
        meta.update(imeta)
        return t, meta
    dt = spectra.meta.get("EFFINTTM", spectra.meta.get("INTTIME"))
    try:
        dt = float(dt)
    except (TypeError, ValueError):
        dt = float("nan")
    if not (np.isfinite(dt) and dt > 0):
        raise ProductError(spectra.meta.get("_source_path", "<x1dints>"),
                           f"fewer than 2 finite integration times ({int(ok.sum())} of {spectra.nints}) "
                           "and no EFFINTTM / INTTIME keyword to rebuild them from")
    meta = {"n_times_interpolated": int(spectra.nints),
            "time_source": f"integration index x EFFINTTM {dt:g} s (INT_TIMES absent or unusable)"}
    log.warning("light curves: %s; time = integration index x %g s (days from the first integration)",
                "no integration times" if it is None else f"only {int(ok.sum())} finite INT_TIMES entries",
                dt)
    return np.arange(spectra.nints) * dt / 86400.0, meta


def _noise_meta(flux, err, wflux, werr, mask) -> dict:
    """Per light curve: expected scatter (propagated ERR), achieved point-to-point scatter, their
    ratio and the short-time-scale red-noise factor (definitions: :mod:`tsoreduce.noise`)."""
    from ..noise import lightcurve_noise

    out = {"definitions": "expected = sqrt(mean(ERR^2)); achieved_p2p = mad_std(diff(flux))/sqrt(2); "
                          "ratio = achieved_p2p/expected; beta = binning-curve red-noise factor of the "
                          "residuals from a running median over beta_window integrations "
                          "(tsoreduce.noise)"}
    keep = ~mask
    if wflux is not None:
        out["white"] = _rounded(lightcurve_noise(wflux[keep], werr[keep]))
    chans = [_rounded(lightcurve_noise(flux[c][keep], err[c][keep])) for c in range(flux.shape[0])]
    for k in ("expected", "achieved_p2p", "ratio", "beta"):
        out[k] = [c[k] for c in chans]
    out["beta_window"] = chans[0]["beta_window"] if chans else None
    return out


def _rounded(d):
    return {k: (float(f"{v:.6g}") if isinstance(v, float) else v) for k, v in d.items()}
