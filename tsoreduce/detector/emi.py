"""EMI (390.625 Hz and other MIRI electromagnetic-interference tones) removal on group-level data.

Method (jwst issue #7729; design after the jwst ``emicorr`` "joint" algorithm, re-derived as a linear
least-squares problem)
---------------------------------------------------------------------------------------------------
Every read of pixel ``p`` in group ``g`` of integration ``i`` happens at time
``t = t_int[i] + t_group[g] + t_pixel[p]`` (SLITLESSPRISM FAST clocking,
:func:`tsoreduce.instrument.pixel_read_time_offsets`; segments start at INTSTART).  The EMI adds
``sum_k a_k cos(2 pi f_k t) + b_k sin(2 pi f_k t)`` DN to each read, for the selected frequencies
``f_k`` (named in :data:`tsoreduce.instrument.EMI_FREQUENCIES`) and their harmonics.

The ramps themselves are removed by projecting out a per-pixel straight line in group number
(intercept + slope, the "self-superbias" of the sequential algorithm); the EMI design columns are
projected the same way, so the per-pixel lines and the EMI amplitudes are fitted *jointly* (exactly
as jwst's joint algorithm, which also minimises chi^2 over per-pixel lines analytically).  The
phase ``2 pi f (t_int + t_group + t_pixel)`` separates into a group factor and a pixel factor, so the
normal equations only need the ``(ngroups, 2K) x (2K, npix)`` products of the data with
``cos / sin(2 pi f t_pixel)`` maps -- one BLAS product per integration, no 4-D temporaries.  The fit
uses the reference columns 0-3 and the pixels away from the trace (``trace_halfwidth`` columns from
:func:`tsoreduce.reference.trace_x_center`); with ``robust`` the pixels whose line-fit residual rms
(median over up to 5 integrations) exceeds 4x the median are dropped (hot / unstable pixels).  The fitted waveform is subtracted from
**every** pixel and group, including the trace.

``fit_per="integration"`` fits (a_k, b_k) per integration (robust to drifts of the EMI phase between
integrations, Eureka PR #556); ``"exposure"`` fits one set for the whole exposure using the absolute
read times (more constraining for faint data, assumes a perfectly stable tone).

Degenerate cases (warned, never silent): fewer than 3 usable groups (the per-pixel line absorbs
everything), and a tone whose phase advances by a whole number of cycles per frame (it is then
constant along every ramp, invisible after line removal, and harmless to the slopes); such a tone is
dropped from the fit.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np

from ..datamodel import DQ, RampData
from ..errors import ConfigError
from .. import reference as ref
from .. import instrument
from .rampfit import usable_group_range

log = logging.getLogger(__name__)

__all__ = ["correct_emi", "emi_frequencies", "emi_fit_pixels", "emi_periodogram"]


def emi_frequencies(names=("Hz390",), harmonics=(1, 2, 3, 4)) -> np.ndarray:
    """The tone frequencies in Hz: every harmonic ``h`` of every named frequency (duplicates once).

    Parameters
    ----------
    names : sequence of str
        Names in :data:`tsoreduce.instrument.EMI_FREQUENCIES` (e.g. ``"Hz390"``).
    harmonics : sequence of int
        Harmonic numbers applied to every name.

    Returns
    -------
    numpy.ndarray
        Float ``(K,)`` frequencies in Hz.

    Raises
    ------
    ConfigError
        For a name not in :data:`tsoreduce.instrument.EMI_FREQUENCIES`.
    """
    out = []
    for n in names:
        if n not in instrument.EMI_FREQUENCIES:
            raise ConfigError(f"emi.frequencies: unknown EMI frequency name {n!r}; known: "
                              + ", ".join(instrument.EMI_FREQUENCIES))
        for h in harmonics:
            f = instrument.EMI_FREQUENCIES[n] * h
            if not any(abs(f - o) < 1e-6 for o in out):
                out.append(f)
    return np.asarray(out, float)


def emi_fit_pixels(shape=instrument.SUBARRAY_SHAPE, trace_halfwidth: float = 10.0, pixeldq=None) -> np.ndarray:
    """The pixels used to fit the EMI: reference columns 0-3 plus pixels more than ``trace_halfwidth``
    columns from the nominal trace centre, minus pixels with any PIXELDQ flag other than REFERENCE_PIXEL.

    Parameters
    ----------
    shape : tuple of int
        ``(nrows, ncols)`` of a frame.
    trace_halfwidth : float
        Columns either side of the trace centre (:func:`tsoreduce.reference.trace_x_center`) left out.
    pixeldq : numpy.ndarray, optional
        uint32 ``(nrows, ncols)`` PIXELDQ.

    Returns
    -------
    numpy.ndarray
        Boolean ``(nrows, ncols)`` mask, True where the pixel enters the fit.
    """
    ny, nx = shape
    xc = ref.trace_x_center(np.arange(ny))
    cols = np.arange(nx)[None, :]
    mask = np.abs(cols - xc[:, None]) > trace_halfwidth
    mask[:, :instrument.N_REFERENCE_COLUMNS] = True
    if pixeldq is not None:
        bad = (np.asarray(pixeldq) & ~np.uint32(DQ.REFERENCE_PIXEL)) != 0
        mask &= ~bad
    return mask


def _line_projector(groups: np.ndarray) -> np.ndarray:
    """``m x m`` projector removing an intercept + slope in group number."""
    a = np.stack([np.ones(groups.size), groups.astype(float)], axis=1)
    return np.eye(groups.size) - a @ np.linalg.solve(a.T @ a, a.T)


def _gamma(k: int) -> np.ndarray:
    """Design structure: column j of the EMI model is ``vec(G Gamma_j B^T)`` with G = [cos theta_g |
    sin theta_g] (group factors) and B = [cos phi_p | sin phi_p] (pixel factors)."""
    gam = np.zeros((2 * k, 2 * k, 2 * k))
    for j in range(k):
        # a_j cos(theta+phi) = a_j (c_theta c_phi - s_theta s_phi)
        gam[j, j, j] = 1.0
        gam[j, k + j, k + j] = -1.0
        # b_j sin(theta+phi) = b_j (s_theta c_phi + c_theta s_phi)
        gam[k + j, k + j, j] = 1.0
        gam[k + j, j, k + j] = 1.0
    return gam


def _normal(gam, h, s):
    """N_jl = sum_abcd Gamma_j[a,b] Gamma_l[c,d] H[a,c] S[b,d]  (= Gm kron(H, S) Gm^T)."""
    gm = gam.reshape(gam.shape[0], -1)
    return gm @ np.kron(h, s) @ gm.T


def correct_emi(ramp: RampData, *, frequencies=("Hz390",), harmonics=(1, 2, 3, 4),
                fit_per: str = "integration", trace_halfwidth: float = 10.0, first_fit_group: int | None = None,
                robust: bool = True, inplace: bool = False) -> tuple[RampData, dict]:
    """Fit and subtract the EMI tones from every read.

    Method: the module docstring (jwst ``emicorr`` "joint" algorithm as a linear least-squares fit;
    JWST pipeline documentation, emicorr step; jwst issue #7729 -- docs/sources.md).

    Parameters
    ----------
    ramp : tsoreduce.datamodel.RampData
        Raw ramps ``(nints, ngroups, 416, 72)`` in DN (after DQ init, before saturation/linearity).
        ``meta["INTSTART"]`` (1-based) places a segment in the exposure's time line and
        ``meta["NGROUPS"]`` (default: the data) sets the integration length.
    frequencies : sequence of str
        Names from :data:`tsoreduce.instrument.EMI_FREQUENCIES` (default ``["Hz390"]``).
    harmonics : sequence of int
        Harmonic numbers applied to every named frequency (default 1, 2, 3, 4).
    fit_per : {"integration", "exposure"}
        One set of amplitudes per integration (default) or one for the whole exposure.
    trace_halfwidth : float
        Columns either side of the trace centre excluded from the fit.
    first_fit_group : int, optional
        First group used in the fit (e.g. after the RSCD-affected groups); default: the first
        usable group.  Falls back to all usable groups if fewer than 3 would remain.
    robust : bool
        Drop fit pixels with outlying line-fit residual rms (hot / unstable pixels).
    inplace : bool
        Subtract from ``ramp.data`` itself (only for callers owning the array, e.g. Stage 1's
        working copy).

    Returns
    -------
    ramp : tsoreduce.datamodel.RampData
        The corrected ramps (DN); ``meta["S_EMICOR"]`` is COMPLETE when a fit was made.
    diagnostics : dict
        ``frequencies`` (Hz, ``(K,)``), ``amplitude`` (DN, ``(nints, K)``), ``phase`` (rad at t = 0
        of the exposure, ``(nints, K)``), ``fit_groups`` and ``n_fit_pixels``.  If the EMI cannot be
        fitted (fewer than 3 usable groups, or every tone degenerate) the data are returned
        unchanged with a WARNING and ``diagnostics["skipped"]`` set to the reason.

    Raises
    ------
    ConfigError
        For an unknown frequency name or ``fit_per`` value.
    """
    if fit_per not in ("integration", "exposure"):
        raise ConfigError(f"emi.fit_per: {fit_per!r} is not 'integration' or 'exposure'")
    freqs = emi_frequencies(frequencies, harmonics)
    nints, ngroups, ny, nx = ramp.data.shape
    groups = _fit_groups(ramp.groupdq, first_fit_group)
    data = ramp.data if inplace else ramp.data.copy()
    diag = {"frequencies": freqs, "fit_groups": groups}
    if groups.size < 3:
        msg = (f"EMI correction skipped: {groups.size} usable groups, at least 3 are needed to separate "
               "the EMI from each pixel's ramp")
        log.warning(msg)
        diag["skipped"] = msg
        return ramp.replace(data=data), diag

    int_offset = int(ramp.meta.get("INTSTART", 1)) - 1
    ng_exp = int(ramp.meta.get("NGROUPS", ngroups))
    t_int, t_group, t_pixel = instrument.pixel_read_time_offsets(nints, ng_exp, int_offset=int_offset,
                                                          shape=(ny, nx))
    times = (t_int, t_group[:ngroups], t_pixel)
    freqs = diag["frequencies"] = _separable_tones(freqs, times[1], groups)
    if freqs.size == 0:
        diag["skipped"] = "all tones degenerate"
        return ramp.replace(data=data), diag
    if groups.size < 5:
        log.warning("EMI: only %d groups in the fit; amplitudes will be noisy", groups.size)

    sel = emi_fit_pixels((ny, nx), trace_halfwidth, ramp.pixeldq).ravel()
    weights = np.ones((nints, int(sel.sum())))
    if robust:
        weights[:] = _stable_pixels(data, groups, sel)
    betas = _fit_tones(data, freqs, times, groups, sel, weights, fit_per)
    _subtract_tones(data, betas, freqs, times)

    k = freqs.size
    a, b = betas[:, :k], betas[:, k:]
    diag["amplitude"] = np.hypot(a, b)
    diag["phase"] = np.arctan2(-b, a)          # a cos + b sin = A cos(x + phase)
    diag["n_fit_pixels"] = weights.sum(axis=1)
    log.info("EMI: fitted %d tone(s) %s Hz per %s on %d pixels x %d groups; median amplitudes %s DN",
             k, np.array2string(freqs, precision=3), fit_per, int(sel.sum()), groups.size,
             np.array2string(np.median(diag["amplitude"], axis=0), precision=3))
    meta = dict(ramp.meta)
    meta["S_EMICOR"] = "COMPLETE"
    return ramp.replace(data=data, meta=meta), diag


def _fit_groups(groupdq, first_fit_group) -> np.ndarray:
    """The groups of the fit: the usable ones, from ``first_fit_group`` on when >= 3 remain."""
    g0, g1 = usable_group_range(groupdq)
    if first_fit_group is not None and g1 - max(g0, first_fit_group) + 1 >= 3:
        g0 = max(g0, int(first_fit_group))
    return np.arange(g0, g1 + 1)


def _separable_tones(freqs, t_group, groups) -> np.ndarray:
    """The tones that survive the per-pixel line removal.

    A tone whose phase advances by a whole number of cycles per group is constant along each ramp:
    it cannot be separated from the ramps (and does not bias slopes), so it is dropped (WARNING).
    """
    proj = _line_projector(groups)
    keep = []
    for f in freqs:
        theta = 2 * np.pi * f * t_group[groups]
        gnorm = np.sum((proj @ np.cos(theta)) ** 2 + (proj @ np.sin(theta)) ** 2)
        if gnorm < 1e-6 * groups.size:
            log.warning("EMI: the %.3f Hz tone is in phase from group to group (constant along each "
                        "ramp); it cannot be separated from the per-pixel ramps and does not bias slopes "
                        "-- dropped from the fit", f)
        else:
            keep.append(f)
    return np.asarray(keep, float)


def _stable_pixels(data, groups, sel) -> np.ndarray:
    """0/1 weights of the fit pixels: hot / unstable pixels (line-fit residual rms > 4x the median)
    get 0.

    They are persistent, so they are found once per segment from the residual rms of up to 5
    integrations; no EMI model is needed at this level (the EMI adds a few DN to every pixel).
    """
    nints = data.shape[0]
    a_line = np.stack([np.ones(groups.size), groups.astype(float)], axis=1)
    a_pinv = np.linalg.solve(a_line.T @ a_line, a_line.T)                   # (2, m)
    probe = np.linspace(0, nints - 1, min(nints, 5)).astype(int)
    rms = np.empty((probe.size, int(sel.sum())))
    for n, i in enumerate(probe):
        y = data[i][groups].reshape(groups.size, -1)[:, sel].astype(np.float64)
        y -= a_line @ (a_pinv @ y)
        rms[n] = np.sqrt(np.mean(y * y, axis=0))
    rms = np.median(rms, axis=0)
    good = rms <= 4.0 * np.median(rms)
    log.info("EMI: %d of %d fit pixels rejected as hot/unstable (residual rms > 4x median)",
             rms.size - int(good.sum()), rms.size)
    return good


def _group_factors(freqs, t_int_i, t_group_sel) -> np.ndarray:
    """``[cos theta | sin theta]`` of the tones at the given groups of one integration, ``(m, 2K)``."""
    theta = 2 * np.pi * freqs[None, :] * (t_int_i + t_group_sel)[:, None]
    return np.concatenate([np.cos(theta), np.sin(theta)], axis=1)


def _pixel_factors(freqs, t_pixel) -> np.ndarray:
    """``[cos phi | sin phi]`` of the tones at every pixel's read time, ``(npix, 2K)``."""
    phi = 2 * np.pi * freqs[None, :] * t_pixel.ravel()[:, None]
    return np.concatenate([np.cos(phi), np.sin(phi)], axis=1)


def _solve(nmat, rhs) -> np.ndarray:
    """The tone amplitudes from the normal equations, scaled to unit diagonal (WARNING when
    ill-conditioned: a least-squares pseudo-inverse)."""
    scale = np.sqrt(np.diag(nmat))
    scale[scale == 0] = 1.0
    nn = nmat / np.outer(scale, scale)
    cond = np.linalg.cond(nn)
    if not np.isfinite(cond) or cond > 1e10:
        log.warning("EMI: ill-conditioned fit (condition number %.3g); using a least-squares "
                    "pseudo-inverse", cond)
    return np.linalg.lstsq(nn, rhs / scale, rcond=1e-12)[0] / scale


def _fit_tones(data, freqs, times, groups, sel, weights, fit_per) -> np.ndarray:
    """Amplitudes ``(nints, 2K)`` (cosine then sine terms) of the joint fit of the tones and the
    per-pixel lines, per integration or once for the exposure."""
    t_int, t_group, t_pixel = times
    nints, k = data.shape[0], freqs.size
    b_sel = _pixel_factors(freqs, t_pixel)[sel]
    gam = _gamma(k)
    proj = _line_projector(groups)

    def normal_equations(i):
        y = data[i][groups].reshape(groups.size, -1)[:, sel].astype(np.float64)   # (m, nsel)
        bw = b_sel * weights[i][:, None]
        gp = proj @ _group_factors(freqs, t_int[i], t_group[groups])             # (m, 2K)
        r = gam.reshape(gam.shape[0], -1) @ (gp.T @ (y @ bw)).ravel()
        return _normal(gam, gp.T @ gp, b_sel.T @ bw), r

    betas = np.zeros((nints, 2 * k))
    if fit_per == "integration":
        for i in range(nints):
            betas[i] = _solve(*normal_equations(i))
        return betas
    ntot, rtot = np.zeros((2 * k, 2 * k)), np.zeros(2 * k)
    for i in range(nints):
        nmat, rhs = normal_equations(i)
        ntot += nmat
        rtot += rhs
    betas[:] = _solve(ntot, rtot)
    return betas


def _subtract_tones(data, betas, freqs, times) -> None:
    """Subtract the full (unprojected) tone model from every group and pixel of ``data``, in place."""
    t_int, t_group, t_pixel = times
    nints, ngroups, ny, nx = data.shape
    gam = _gamma(freqs.size)
    bt = _pixel_factors(freqs, t_pixel).T.astype(np.float64)
    for i in range(nints):
        mix = np.tensordot(betas[i], gam, axes=1)
        model = (_group_factors(freqs, t_int[i], t_group) @ mix) @ bt           # (ngroups, npix)
        data[i] -= model.reshape(ngroups, ny, nx).astype(np.float32)


def emi_periodogram(ramp: RampData, integration: int = 0, *, trace_halfwidth: float = 10.0,
                    fmin: float = 5.0, fmax: float = 1600.0, nfreq: int = 4000):
    """Lomb-Scargle periodogram of the line-subtracted reads of the EMI-fit pixels of one integration.

    Reads are averaged over the 4 columns of each amplifier quad (read simultaneously) to keep the
    series short.  Used for the before/after diagnostic figure (astropy ``LombScargle``, standard
    normalisation, ``method="fast"``).

    Parameters
    ----------
    ramp : tsoreduce.datamodel.RampData
        Ramps ``(nints, ngroups, nrows, ncols)`` in DN.
    integration : int
        Index of the integration analysed.
    trace_halfwidth : float
        As for :func:`emi_fit_pixels`.
    fmin, fmax : float
        Frequency range in Hz.
    nfreq : int
        Number of frequencies on a linear grid.

    Returns
    -------
    frequency : numpy.ndarray
        ``(nfreq,)`` Hz.
    power : numpy.ndarray
        ``(nfreq,)`` periodogram power (zeros when fewer than 3 usable groups).
    """
    from astropy.timeseries import LombScargle

    nints, ngroups, ny, nx = ramp.data.shape
    g0, g1 = usable_group_range(ramp.groupdq)
    groups = np.arange(g0, g1 + 1)
    freq = np.linspace(fmin, fmax, nfreq)
    if groups.size < 3:
        return freq, np.zeros(nfreq)
    _, t_group, t_pixel = instrument.pixel_read_time_offsets(1, ngroups, shape=(ny, nx))
    sel = emi_fit_pixels((ny, nx), trace_halfwidth, ramp.pixeldq)
    y = ramp.data[integration][groups].astype(np.float64)
    a = np.stack([np.ones(groups.size), groups.astype(float)], axis=1)
    flat = y.reshape(groups.size, -1)
    flat -= a @ np.linalg.lstsq(a, flat, rcond=None)[0]
    y = flat.reshape(groups.size, ny, nx)
    # average selected pixels per (group, row, quad)
    nq = nx // 4
    w = sel.reshape(ny, nq, 4).astype(float)
    num = (y.reshape(groups.size, ny, nq, 4) * w).sum(-1)
    den = w.sum(-1)
    ok = den > 0
    vals = np.where(ok, num / np.where(ok, den, 1), np.nan)
    t = t_group[groups][:, None, None] + t_pixel.reshape(ny, nq, 4)[None, :, :, 0]
    m = np.broadcast_to(ok, vals.shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        power = LombScargle(t[m], vals[m]).power(freq, method="fast")
    return freq, power
