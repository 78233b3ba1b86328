"""Bands: joining per-band spectra, band-aware light curves, and stitching for display.

For time series, bands are never mixed inside a spectroscopic channel: each channel is a whole band or a
bin inside one band (stitching is irrelevant to transit depths; band-to-band scale offsets
from slice/pixel-scale discontinuities, jwst #7814, would otherwise enter a channel).  Stitching
(:func:`stitch_spectrum`) is for display and absolute spectra only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ..datamodel import DQ, LightCurves, SpectraData
from ..errors import ConfigError, ShapeError

log = logging.getLogger(__name__)

__all__ = ["combine_bands", "band_labels_of", "mrs_light_curves", "stitch_spectrum", "StitchedSpectrum"]


def band_labels_of(spectra: SpectraData) -> np.ndarray:
    """Per-wavelength band labels of an MRS SpectraData.

    Parameters
    ----------
    spectra : tsoreduce.datamodel.SpectraData
        Spectra ``(nints, nwave)``; made by this module (``meta['_band']``) or a one-band product.

    Returns
    -------
    numpy.ndarray
        ``(nwave,)`` str: ``meta['_band']``, else ``meta['MRSBANDS']`` (or 'MRS') repeated.
    """
    lab = spectra.meta.get("_band")
    if lab is not None and len(lab) == spectra.nwave:
        return np.asarray(lab, dtype=str)
    return np.full(spectra.nwave, str(spectra.meta.get("MRSBANDS", "MRS")))


def combine_bands(spectra: list[SpectraData]) -> SpectraData:
    """Join per-band SpectraData (same integrations) along the wavelength axis, bluest band first.

    Parameters
    ----------
    spectra : list of tsoreduce.datamodel.SpectraData
        One per band, each ``(nints, nwave_band)``, from one exposure.

    Returns
    -------
    tsoreduce.datamodel.SpectraData
        ``(nints, sum nwave_band)``; per-wavelength band labels in ``meta['_band']``, the band list in
        ``meta['MRSBANDS']`` (comma-separated); aux regressors get a ``_<band>`` suffix when there is
        more than one band.

    Raises
    ------
    tsoreduce.errors.ShapeError
        When the list is empty or the integration counts or times differ.
    """
    if not spectra:
        raise ShapeError("combine_bands() needs at least one SpectraData")
    spectra = sorted(spectra, key=lambda s: float(np.nanmin(s.wavelength)))
    if len(spectra) == 1:
        return spectra[0]
    n = spectra[0].nints
    for s in spectra[1:]:
        if s.nints != n:
            raise ShapeError(f"bands have {n} and {s.nints} integrations; they must come from one exposure")
        t0, t1 = spectra[0].int_times, s.int_times
        if t0 is not None and t1 is not None and not np.allclose(t0.mid_bjd_tdb, t1.mid_bjd_tdb,
                                                                  rtol=0, atol=1e-7):
            raise ShapeError("bands have different integration times; they must come from one exposure")
    labels = [band_labels_of(s) for s in spectra]
    cube_labels = [str(s.meta.get("MRSBANDS", lab[0])) for s, lab in zip(spectra, labels)]
    aux = {}
    for s, name in zip(spectra, cube_labels):
        for k, v in s.aux.items():
            aux[f"{k}_{name}"] = v
    meta = {k: v for k, v in spectra[0].meta.items() if k != "_photometry"}
    meta["_band"] = np.concatenate(labels)
    meta["MRSBANDS"] = ",".join(cube_labels)
    meta["_photometry"] = [s.meta.get("_photometry") for s in spectra]
    return SpectraData(np.concatenate([s.data for s in spectra], axis=1),
                       np.concatenate([s.err for s in spectra], axis=1),
                       np.concatenate([s.dq for s in spectra], axis=1),
                       np.concatenate([s.wavelength for s in spectra]), spectra[0].int_times, aux, meta,
                       units=spectra[0].units)


def _baseline(nints, baseline_ints):
    if not baseline_ints:
        return np.arange(nints)
    idx = np.zeros(nints, bool)
    if isinstance(baseline_ints[0], (list, tuple)):
        pairs = baseline_ints
    else:  # a flat [start0, stop0, start1, stop1, ...] list, as the stage3 section writes it
        flat = list(baseline_ints)
        pairs = [flat[i:i + 2] for i in range(0, len(flat), 2)]
    for pair in pairs:
        if len(pair) != 2:
            raise ConfigError(f"baseline_ints: expected [start, stop) integration pairs, got {pair!r}")
        idx[int(pair[0]):int(pair[1])] = True
    if not idx.any():
        raise ConfigError(f"baseline_ints {baseline_ints!r} selects no integration (nints = {nints})")
    return np.flatnonzero(idx)


def _band_bins(wl, channels, bin_width, nbins):
    """Edges of the channels inside one band's sorted wavelengths ``wl``."""
    d = np.diff(wl)
    lo = wl[0] - 0.5 * (d[0] if d.size else 0.001)
    hi = wl[-1] + 0.5 * (d[-1] if d.size else 0.001)
    if channels == "band":
        return np.array([lo, hi])
    if channels == "native":
        mid = 0.5 * (wl[1:] + wl[:-1])
        return np.concatenate([[lo], mid, [hi]])
    if channels == "nbins":
        return np.linspace(lo, hi, min(int(nbins), wl.size) + 1)
    if channels == "width":
        # never more channels than planes, so equal-width bins on a regular grid are never empty
        n = max(1, min(wl.size, int((hi - lo) / float(bin_width))))
        return np.linspace(lo, hi, n + 1)
    raise ConfigError(f"channels {channels!r} is not one of band, width, nbins, native")


def _band_channels(wl, labels, order, fz, ez, usable, channels, bin_width, nbins):
    """Channel flux and error ``(nchan, nints)`` (sums of usable planes, errors in quadrature), centre,
    lower and upper wavelength and band of each channel; channels never mix bands."""
    rows, errs, cen, lo_e, hi_e, chan_band = [], [], [], [], [], []
    for band in order:
        sel = np.flatnonzero(labels == band)
        srt = sel[np.argsort(wl[sel])]
        edges = _band_bins(wl[srt], channels, bin_width, nbins)
        which = np.clip(np.searchsorted(edges, wl[srt], side="right") - 1, 0, edges.size - 2)
        for b in range(edges.size - 1):
            members = srt[(which == b) & usable[srt]]
            if members.size == 0:
                raise ConfigError(f"band {band}: channel {edges[b]:.4f}-{edges[b + 1]:.4f} um holds no "
                                  "usable plane; widen the bins")
            rows.append(fz[:, members].sum(axis=1))
            errs.append(np.sqrt((ez[:, members] ** 2).sum(axis=1)))
            cen.append(float(np.mean(wl[members])))
            lo_e.append(edges[b])
            hi_e.append(edges[b + 1])
            chan_band.append(str(band))
    return np.array(rows), np.array(errs), cen, lo_e, hi_e, chan_band


def _times(spectra, meta) -> np.ndarray:
    """Mid-integration BMJD_TDB, or the integration index (WARNING) when the cubes have no times; the
    choice is recorded in ``meta['time_source']``."""
    it = spectra.int_times
    if it is not None and np.isfinite(it.mid_bjd_tdb).all():
        meta["time_source"] = "INT_TIMES int_mid_BJD_TDB" + (" (reconstructed)" if it.reconstructed else "")
        return it.mid_bjd_tdb.copy()
    meta["time_source"] = "integration index (no integration times in the cubes)"
    log.warning("MRS light curves: no integration times; time = integration index")
    return np.arange(spectra.nints, dtype=float)


def mrs_light_curves(spectra: SpectraData, *, channels: str = "width", bin_width: float = 0.1,
                     nbins: int = 4, normalise: bool = True, baseline_ints=None) -> LightCurves:
    """Spectroscopic and white light curves from MRS spectra, never mixing bands in a channel.

    Planes flagged DO_NOT_USE (or non-finite) in ANY integration are left out of their channel in every
    integration, so no channel changes composition in time.  Channel flux = sum of plane fluxes; errors in
    quadrature.  White light curve = sum over every usable plane of every band.

    Parameters
    ----------
    spectra : tsoreduce.datamodel.SpectraData
        ``(nints, nwave)`` in Jy with per-wavelength band labels (``combine_bands`` or
        ``CubePhotometry.to_spectra``).
    channels : str
        "band" (one channel per band), "width" (equal bins of about ``bin_width`` um inside each band:
        floor(band range / bin_width) bins, at most one per plane), "nbins" (``nbins`` equal bins per
        band, at most one per plane) or "native" (every plane).
    bin_width : float
        Channel width in um for "width".
    nbins : int
        Channels per band for "nbins".
    normalise : bool
        Divide each light curve by its median over ``baseline_ints``.
    baseline_ints : list of int, optional
        Flat list of [start, stop) pairs of integration indices (None: all integrations).

    Returns
    -------
    tsoreduce.datamodel.LightCurves
        ``time`` mid-integration BMJD_TDB (int_mid_BJD_TDB; integration index when no times, with a
        warning and ``meta['time_source']``), ``flux``/``err`` ``(nchan, nints)``; ``meta['band']`` the
        band label of each channel (list of str), ``meta['bands']``; regressors = ``spectra.aux``.

    Raises
    ------
    tsoreduce.errors.ShapeError
        For a wavelength array that is not 1-D.
    tsoreduce.errors.ConfigError
        For an unknown ``channels`` or a bin holding no usable plane.
    """
    wl = np.asarray(spectra.wavelength, float)
    if wl.ndim != 1:
        raise ShapeError("mrs_light_curves needs a 1-D wavelength array")
    labels = band_labels_of(spectra)
    f = spectra.data
    e = spectra.err
    usable = np.all(np.isfinite(f) & np.isfinite(e) & ((spectra.dq & np.uint32(DQ.DO_NOT_USE)) == 0),
                    axis=0)
    if (~usable).any():
        log.info("MRS light curves: %d of %d planes left out (unusable in at least one integration)",
                 int((~usable).sum()), usable.size)
    fz = np.where(usable[None], f, 0.0)
    ez = np.where(usable[None], e, 0.0)
    order = list(dict.fromkeys(labels))
    flux, err, cen, lo_e, hi_e, chan_band = _band_channels(wl, labels, order, fz, ez, usable, channels,
                                                           bin_width, nbins)
    wflux = fz.sum(axis=1)
    werr = np.sqrt((ez ** 2).sum(axis=1))
    if normalise:
        idx = _baseline(spectra.nints, baseline_ints)
        nrm = np.median(flux[:, idx], axis=1)
        flux, err = flux / nrm[:, None], err / np.abs(nrm)[:, None]
        wn = np.median(wflux[idx])
        wflux, werr = wflux / wn, werr / abs(wn)
    meta = {"source": "tsoreduce MRS", "flux_units": "normalised" if normalise else spectra.units,
            "band": chan_band, "bands": ",".join(order), "channels": channels}
    time = _times(spectra, meta)
    for k in ("TARGNAME", "TARGPROP", "PROGRAM", "OBSERVTN"):
        if k in spectra.meta:
            meta[k] = spectra.meta[k]
    return LightCurves(time=time, flux=flux, err=err, wavelength=np.array(cen),
                       wavelength_lower=np.array(lo_e), wavelength_upper=np.array(hi_e),
                       white_flux=wflux, white_err=werr, regressors=dict(spectra.aux), meta=meta)


@dataclass
class StitchedSpectrum:
    """A stitched 1-D spectrum.

    Parameters
    ----------
    wavelength : numpy.ndarray
        ``(n,)`` um, increasing.
    flux : numpy.ndarray
        ``(n,)`` in the input unit.
    err : numpy.ndarray
        ``(n,)`` 1-sigma.
    band : numpy.ndarray
        ``(n,)`` labels ('1A', or '1A+1B' for inverse-variance-combined overlap points).
    scale : dict
        Band -> factor applied.
    method : str
        The stitching method.
    """

    wavelength: np.ndarray
    flux: np.ndarray
    err: np.ndarray
    band: np.ndarray
    scale: dict
    method: str


def stitch_spectrum(wavelength, flux, err, band, *, method: str = "median_ratio",
                    reference: str | None = None) -> StitchedSpectrum:
    """Stitch per-band spectra (e.g. the time-median spectrum) into one, for display / absolute use.

    Parameters
    ----------
    wavelength, flux, err : numpy.ndarray
        ``(n,)``: um, flux (any unit), 1-sigma.
    band : numpy.ndarray
        ``(n,)`` band labels.
    method : str
        ``"median_ratio"`` -- for each adjacent pair, the ratio of the median fluxes of the two bands in
        their common wavelength interval; factors are chained so every band is tied to ``reference``
        (default: the reddest band, as CRETA/CAFE does); a pair without overlap keeps factor 1 (logged).
        Overlaps are then cut at their midpoint.
        ``"inverse_variance"`` -- no scaling; in each overlap the redder band is interpolated onto the
        bluer band's wavelengths and the two are averaged with inverse-variance weights (labelled
        'A+B'); the redder band's own points inside the overlap are dropped.
    reference : str, optional
        Band the others are scaled to (``"median_ratio"``; default the reddest).

    Returns
    -------
    StitchedSpectrum
        Sorted by wavelength.

    Raises
    ------
    tsoreduce.errors.ConfigError
        For an unknown method or reference band.
    """
    if method not in ("median_ratio", "inverse_variance"):
        raise ConfigError(f"stitch method {method!r} is not 'median_ratio' or 'inverse_variance'")
    names, parts = _band_parts(wavelength, flux, err, band)
    scale = {b: 1.0 for b in names}
    if method == "median_ratio":
        scale = _scale_to_reference(names, parts, reference)
        _cut_overlaps_at_midpoint(parts)
    else:
        _average_overlaps(names, parts)
    cat = [np.concatenate([p[j] for p in parts]) for j in range(4)]
    o = np.argsort(cat[0], kind="stable")
    return StitchedSpectrum(cat[0][o], cat[1][o], cat[2][o], cat[3][o].astype(str), scale, method)


def _band_parts(wavelength, flux, err, band):
    """Band names bluest first and, per band, [wavelength, flux, err, label] sorted by wavelength
    (non-finite points dropped)."""
    wl = np.asarray(wavelength, float)
    f = np.asarray(flux, float)
    e = np.asarray(err, float)
    lab = np.asarray(band, dtype=str)
    names = sorted(dict.fromkeys(lab), key=lambda b: float(np.nanmin(wl[lab == b])))
    parts = []
    for b in names:
        s = np.flatnonzero(lab == b)
        s = s[np.argsort(wl[s])]
        ok = np.isfinite(f[s]) & np.isfinite(wl[s])
        parts.append([wl[s][ok], f[s][ok], e[s][ok], np.full(ok.sum(), b, dtype=object)])
    return names, parts


def _scale_to_reference(names, parts, reference) -> dict:
    """Scale every band (in place) by the chained median-flux ratios of adjacent overlapping bands so it
    ties to ``reference`` (default the reddest); a pair without overlap keeps ratio 1 (logged)."""
    ratios = []
    for (w1, f1, *_), (w2, f2, *_), b1, b2 in zip(parts[:-1], parts[1:], names[:-1], names[1:]):
        lo, hi = max(w1[0], w2[0]), min(w1[-1], w2[-1])
        m1, m2 = (w1 >= lo) & (w1 <= hi), (w2 >= lo) & (w2 <= hi)
        if lo < hi and m1.any() and m2.any():
            ratios.append(np.median(f1[m1]) / np.median(f2[m2]))
        else:
            log.info("stitch: bands %s and %s do not overlap; their ratio is set to 1", b1, b2)
            ratios.append(1.0)
    ref = names[-1] if reference is None else reference
    if ref not in names:
        raise ConfigError(f"stitch reference band {ref!r} is not one of {', '.join(names)}")
    r = names.index(ref)
    fac = np.ones(len(names))
    for i in range(r - 1, -1, -1):
        fac[i] = fac[i + 1] / ratios[i]
    for i in range(r + 1, len(names)):
        fac[i] = fac[i - 1] * ratios[i - 1]
    scale = {}
    for p, c, b in zip(parts, fac, names):
        p[1] = p[1] * c
        p[2] = p[2] * c
        scale[b] = float(c)
    return scale


def _cut_overlaps_at_midpoint(parts):
    """In place: each overlap keeps the bluer band below its midpoint and the redder band above."""
    for i in range(len(parts) - 1):
        lo, hi = max(parts[i][0][0], parts[i + 1][0][0]), min(parts[i][0][-1], parts[i + 1][0][-1])
        if lo < hi:
            cut = 0.5 * (lo + hi)
            k1 = parts[i][0] <= cut
            k2 = parts[i + 1][0] > cut
            parts[i] = [a[k1] for a in parts[i]]
            parts[i + 1] = [a[k2] for a in parts[i + 1]]


def _average_overlaps(names, parts):
    """In place: in each overlap the redder band, interpolated onto the bluer band's wavelengths, is
    averaged with it (inverse-variance weights, label 'A+B'); the redder band's own overlap points go."""
    for i in range(len(parts) - 1):
        w1, f1, e1, l1 = parts[i]
        w2, f2, e2, l2 = parts[i + 1]
        lo, hi = max(w1[0], w2[0]), min(w1[-1], w2[-1])
        if not lo < hi:
            continue
        m1 = (w1 >= lo) & (w1 <= hi)
        f2i = np.interp(w1[m1], w2, f2)
        e2i = np.interp(w1[m1], w2, e2)
        with np.errstate(divide="ignore", invalid="ignore"):
            iv1, iv2 = 1.0 / e1[m1] ** 2, 1.0 / e2i ** 2
            fm = (f1[m1] * iv1 + f2i * iv2) / (iv1 + iv2)
            em = 1.0 / np.sqrt(iv1 + iv2)
        f1 = f1.copy()
        e1 = e1.copy()
        l1 = l1.copy()
        f1[m1], e1[m1] = fm, em
        l1[m1] = f"{names[i]}+{names[i + 1]}"
        keep2 = (w2 < lo) | (w2 > hi)
        parts[i] = [w1, f1, e1, l1]
        parts[i + 1] = [w2[keep2], f2[keep2], e2[keep2], l2[keep2]]
