"""The noiseless astrophysical scene of the LRS simulator: star, trace, transit, settling, background.

Private helpers of :mod:`tsoreduce.simulate.lrs`; every function is pure and vectorised over
integrations.  Physical sources are given per function.
"""

from __future__ import annotations

import numpy as np
from scipy.special import erf

from .. import reference as ref

# JWST primary mirror diameter (m) and MIRI imager pixel scale (arcsec/pix); the LRS shares the imager
# detector (JDox "MIRI Detector Overview": 0.11"/pix; JWST 6.5 m aperture).
JWST_DIAMETER_M = 6.5
MIRI_PIXSCALE_ARCSEC = 0.11
_RAD_TO_ARCSEC = 180.0 / np.pi * 3600.0

# Planck constants (SI) for the stellar blackbody
_H = 6.62607015e-34
_C = 2.99792458e8
_KB = 1.380649e-23


def diffraction_sigma_px(wavelength_um) -> np.ndarray:
    """Gaussian sigma (pix) of a diffraction-limited core, ``0.42 lambda / D`` (the best Gaussian fit to
    an Airy core) in MIRI imager pixels: 0.61 px at 5 um, 1.45 px at 12 um."""
    lam_m = np.asarray(wavelength_um, float) * 1e-6
    return 0.42 * lam_m / JWST_DIAMETER_M * _RAD_TO_ARCSEC / MIRI_PIXSCALE_ARCSEC


def trace_sigma_px(wavelength_um, extra_sigma_px: float) -> np.ndarray:
    """Cross-dispersion sigma (pix): diffraction core added in quadrature to a wavelength-independent
    broadening (detector scattering / "cruciform", pointing jitter).  With ``extra_sigma_px = 0.45``
    this reproduces the in-flight MIRI imager FWHMs of JDox "MIRI Point Spread Function"
    (F560W 0.207", F1280W 0.420" -> sigma 0.80 / 1.62 px)."""
    return np.hypot(diffraction_sigma_px(wavelength_um), extra_sigma_px)


def extended_wavelength(rows) -> np.ndarray:
    """Wavelength (um) of ``rows`` from the bundled specwcs, linearly extrapolated beyond rows 7-394
    (used only for the smooth background, never for the star)."""
    rows = np.asarray(rows, float)
    t = ref.specwcs_table()
    r = np.asarray(t["row"], float)
    w = np.asarray(t["wavelength"], float)
    lo, hi = np.polyfit(r[:10], w[:10], 1), np.polyfit(r[-10:], w[-10:], 1)
    out = np.interp(rows, r, w)
    out = np.where(rows < r[0], np.polyval(lo, rows), out)
    return np.where(rows > r[-1], np.polyval(hi, rows), out)


_PCE_PEAK_UM, _PCE_SIGMA_UM, _PCE_CUTON_UM, _PCE_CUTON_WIDTH_UM = 8.0, 3.2, 4.8, 0.12


def _pce_shape(lam):
    return (np.exp(-0.5 * ((lam - _PCE_PEAK_UM) / _PCE_SIGMA_UM) ** 2)
            / (1.0 + np.exp(-(lam - _PCE_CUTON_UM) / _PCE_CUTON_WIDTH_UM)))


def p750l_throughput(wavelength_um) -> np.ndarray:
    """APPROXIMATE relative photon-to-electron efficiency of MIRI LRS P750L (prism + optics + Si:As QE),
    peak-normalised to 1; 0 where the wavelength is NaN.

    A smooth stand-in for the PCE curve of JDox "MIRI Low Resolution Spectroscopy" / Kendrew et al.
    2015 (PASP 127, 623): a broad Gaussian peaking at 8.0 um (sigma 3.2 um) times a logistic cut-on at
    4.8 um, so it falls toward 5 um and beyond 12 um.  Checked against the MIRISim NGTS-10
    SLITLESSPRISM rateints (ERS_NGTS10_2022_new_drift_041, distributed with kevin218/Eureka;
    a 4400 K star through MIRISim's PCE): the row-summed
    count-rate spectrum agrees within ~ 20 % from 5.4 to 11.7 um (MIRISim cuts off at 12 um; we keep a
    gentle decline to 14 um).  Not a calibrated curve: only the spectral shape depends on it, the
    absolute level is set by ``peak_rate_dn_s``.
    """
    lam = np.asarray(wavelength_um, float)
    grid = np.linspace(4.0, 15.0, 2201)
    t = _pce_shape(lam) / np.max(_pce_shape(grid))
    return np.where(np.isfinite(lam), t, 0.0)


def photon_spectrum_per_row(wavelength_um: np.ndarray, teff_k: float) -> np.ndarray:
    """Relative detected photon rate per detector row, shape ``(nrows,)``: blackbody photon flux
    ``B_lambda(Teff) * lambda / (h c)`` times the row's bandwidth ``|d lambda / d row|`` times
    :func:`p750l_throughput`.  Zero in rows without a wavelength (NaN), i.e. outside rows 7-394."""
    lam = np.asarray(wavelength_um, float)
    ok = np.isfinite(lam)
    lam_m = np.where(ok, lam, 10.0) * 1e-6
    x = _H * _C / (lam_m * _KB * teff_k)
    b_lambda = 2 * _H * _C**2 / lam_m**5 / np.expm1(x)
    photons = b_lambda * lam_m / (_H * _C)
    dlam = np.abs(np.gradient(np.where(ok, lam, np.nan)))
    dlam = np.where(np.isfinite(dlam), dlam, 0.0)
    out = photons * dlam * p750l_throughput(np.where(ok, lam, np.nan))
    out = np.where(ok, out, 0.0)
    return out / out.max()


def cross_dispersion_profile(x_center: np.ndarray, sigma: np.ndarray, ncols: int,
                             wing_fraction: float, wing_scale: float) -> np.ndarray:
    """Fraction of a row's flux landing in each column, pixel-integrated.

    ``x_center`` and ``sigma`` broadcast to ``(..., nrows)``; returns ``(..., nrows, ncols)``.  Profile:
    ``(1 - f) G(sigma) + f G(wing_scale * sigma)`` (Gaussian core plus a broad Gaussian wing standing in
    for the MIRI PSF's extended halo); each Gaussian is integrated over the pixel ``[c - 0.5, c + 0.5]``
    with erf differences, so the sum over an infinitely wide row is 1.
    """
    edges = np.arange(ncols + 1, dtype=float) - 0.5
    xc = np.asarray(x_center, float)[..., None]
    s = np.asarray(sigma, float)[..., None]

    def integrated(sig):
        cdf = 0.5 * (1.0 + erf((edges - xc) / (np.sqrt(2.0) * sig)))
        return np.diff(cdf, axis=-1)

    prof = integrated(s)
    if wing_fraction > 0:
        prof = (1.0 - wing_fraction) * prof + wing_fraction * integrated(s * wing_scale)
    return prof


def rp_rs_per_row(wavelength_um: np.ndarray, cfg) -> np.ndarray:
    """Injected Rp/Rs per row ``(nrows,)``: ``cfg.rp_rs_spectrum`` (callable of wavelength in um, or a
    ``(wavelength_um, rp_rs)`` table interpolated linearly) when given, else ``cfg.rp_rs`` plus a Gaussian
    absorption feature of amplitude ``cfg.feature_amplitude`` (in Rp/Rs) at ``cfg.feature_center_um``
    with sigma ``cfg.feature_width_um``.  Rows without a wavelength get the value at the nearest end."""
    lam = np.asarray(wavelength_um, float)
    ok = np.isfinite(lam)
    good = lam[ok]
    spec = cfg.rp_rs_spectrum
    if spec is None:
        vals = cfg.rp_rs + cfg.feature_amplitude * np.exp(
            -0.5 * ((good - cfg.feature_center_um) / cfg.feature_width_um) ** 2)
    elif callable(spec):
        vals = np.asarray(spec(good), float) * np.ones_like(good)
    else:
        w, r = (np.asarray(a, float) for a in spec)
        order = np.argsort(w)
        vals = np.interp(good, w[order], r[order])
    out = np.empty_like(lam)
    out[ok] = vals
    idx = np.flatnonzero(ok)
    out[: idx[0]] = vals[0]
    out[idx[-1] + 1:] = vals[-1]
    return out


def solve_a_rs(period: float, duration: float, rp_rs: float, b: float) -> float:
    """a/Rs giving a total transit duration T14 = ``duration`` for a circular orbit of ``period`` (same
    units) and impact parameter ``b`` (Winn 2010, eq. 14): ``sin(pi T14 / P) = sqrt((1+k)^2 - b^2) /
    (a sin i)`` with ``a cos i = b``."""
    a_sin_i = np.sqrt((1.0 + rp_rs) ** 2 - b**2) / np.sin(np.pi * duration / period)
    return float(np.hypot(a_sin_i, b))


def transit_light_curves(times: np.ndarray, rp_rows: np.ndarray, tp: dict, exp_time: float,
                         supersample: int) -> np.ndarray:
    """batman quadratic-limb-darkened transit for every row, ``(nints, nrows)`` relative flux.

    ``tp`` holds t0, period, a_rs, inc, ecc, w, u1, u2 (days, degrees).  Rows sharing an Rp/Rs share one
    batman call; ``exp_time`` (days) with ``supersample`` > 1 averages the model over each integration.
    """
    import batman

    params = batman.TransitParams()
    params.t0, params.per, params.rp = tp["t0"], tp["period"], float(rp_rows[0])
    params.a, params.inc, params.ecc, params.w = tp["a_rs"], tp["inc"], tp["ecc"], tp["w"]
    params.limb_dark, params.u = "quadratic", [tp["u1"], tp["u2"]]
    kw = {"supersample_factor": supersample, "exp_time": exp_time} if supersample > 1 else {}
    model = batman.TransitModel(params, np.asarray(times, float), **kw)
    uniq, inverse = np.unique(np.round(rp_rows, 12), return_inverse=True)
    curves = np.empty((uniq.size, len(times)))
    for j, rp in enumerate(uniq):
        params.rp = float(rp)
        curves[j] = model.light_curve(params)
    return curves[inverse].T


def settling_curve(t_from_start_s: np.ndarray, amplitude: float, tau_s: float) -> np.ndarray:
    """MIRI detector settling ("idle recovery") ramp, ``1 - A exp(-t / tau)``, shape of ``t``.

    Source: the exponential ramp in flux at the start of every MIRI TSO (Bell et al. 2023,
    arXiv:2301.06350; 1-3 % over ~30-60 min)."""
    return 1.0 - amplitude * np.exp(-np.asarray(t_from_start_s, float) / tau_s)
