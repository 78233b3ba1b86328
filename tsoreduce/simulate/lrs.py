"""Realistic synthetic MIRI LRS SLITLESSPRISM time series with known truth.

``simulate_lrs(cfg)`` builds uncal-level ramps (one :class:`~tsoreduce.datamodel.RampData` per exposure
segment) and an :class:`LRSTruth` that records every injected quantity; ``simulate_lrs_rateints(cfg)``
is a fast rate-level shortcut (rateints with ramp-fit noise) for Stage 2/3 tests;
``write_lrs_simulation(cfg, outdir)`` writes the uncal segments, the truth, the injected spectrum and
CRDS-format reference files matching the truth.

Geometry: 416 rows x 72 columns, dispersion along rows (wavelength decreasing with row, bundled specwcs
``jwst_miri_specwcs_0006``), columns 0-3 are reference pixels (no light), FASTR1 readout with
TFRAME = 0.15904 s and one reset frame between integrations.

Order in which a read is built (per integration; group ``g`` holds ``g + 1`` frames of charge)::

    electrons/frame = (star + background + dark) * gain * TFRAME          [Poisson if cfg.poisson]
    linear DN       = bias + cumsum_g(electrons) / gain + cosmic-ray steps + RSCD transient
    raw DN          = inverse of the linearity polynomial (corrected = sum_k c_k raw**k)
    raw DN         += read noise (independent per read) + EMI (sinusoids at each pixel's read time)
    raw DN          = clip(raw, 0, saturation), rounded to integers (uncal data are uint16)

Every effect is switched by a bool of :class:`LRSSimConfig` and documented there with its source.
Random draws come from independent streams per effect (``numpy.random.SeedSequence(seed).spawn``),
so switching one effect off leaves the others' realisations unchanged, and a seed reproduces a
simulation exactly.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field

import numpy as np

from .. import reference as ref
from ..datamodel import DQ, IntTimes, RampData, RateData
from ..errors import ConfigError
from . import _lrs_scene as scene
from ._lrs_kernels import POISSON_INVERSION_MAX, poisson_by_inversion, raw_reads

__all__ = [
    "LRSSimConfig", "LRSTruth", "LRSSimulation", "simulate_lrs", "simulate_lrs_rateints",
    "write_lrs_simulation", "load_lrs_truth", "apply_linearity_polynomial",
    "invert_linearity_polynomial", "COSMIC_RAY_DTYPE",
]

log = logging.getLogger(__name__)

SECONDS_PER_DAY = 86400.0
#: MIRI Si:As pixel pitch 25 um (JDox "MIRI Detector Overview") -> pixel area in cm^2
PIXEL_AREA_CM2 = (25e-4) ** 2
#: one record per injected cosmic ray; ``integration`` is global over segments (0-based), ``group`` is
#: the first group (0-based) whose read contains the deposited charge.
COSMIC_RAY_DTYPE = np.dtype([("integration", np.int64), ("group", np.int64), ("row", np.int64),
                             ("col", np.int64), ("amplitude_dn", np.float64)])
#: the PIXELDQ flags of the reference columns in real pipeline rateints (MIRISim NGTS-10 product)
_REFPIX_RATE_DQ = DQ.REFERENCE_PIXEL | DQ.NON_SCIENCE | DQ.NO_LIN_CORR

_STREAMS = ("scene", "detector", "emi", "cosmic_rays", "noise", "rate_noise")


@dataclass
class LRSSimConfig:
    """Parameters of a simulated MIRI LRS SLITLESSPRISM TSO.  Defaults give a 60-integration x
    30-group exposure with a transit centred in it; every effect is on.

    Size and timing
        nints (60), ngroups (30), nsegments (1; integrations split as evenly as possible, earlier
        segments one larger), seed (0), start_bjd_tdb (60000.0, BMJD_TDB = BJD_TDB - 2400000.5 of the
        exposure start), target_name, tframe (reference.TFRAME = 0.15904 s, FAST SLITLESSPRISM).
        An integration lasts ``(ngroups + 1) * tframe`` (FASTR1: one reset frame).

    Switches (bool, all True by default)
        transit, settling, drift, background, poisson, read_noise, nonlinearity, dark, rscd,
        cosmic_rays, saturation, emi.  With ``saturation=False`` reads are still clipped to the 16-bit
        ADC range 0-65535.

    Star and trace
        star_teff_k (5000 K blackbody), peak_rate_dn_s (2000 DN/s in the brightest trace pixel before
        transit/settling: a 30-group ramp reaches ~ 12000 + 9500 DN, below saturation; see
        :meth:`saturating`), psf_extra_sigma_px (0.45 px added in quadrature to the 0.42 lambda/D
        diffraction sigma, JWST D = 6.5 m, 0.11"/pix: sigma = 0.75 px at 5 um, 1.52 px at 12 um,
        matching the flight MIRI imager FWHMs), psf_wing_fraction (0.03) and psf_wing_scale (4x sigma)
        for the PSF halo.  Trace centre per row from the bundled specwcs (``reference.trace_x_center``).

    Transit (batman, quadratic limb darkening)
        rp_rs (0.12) + a Gaussian feature of feature_amplitude (0.005 in Rp/Rs) at feature_center_um
        (7.7 um, where SO2 absorbs: Powell et al. 2024, Nature 626, 979) with feature_width_um (0.4);
        or rp_rs_spectrum: a callable ``f(wavelength_um) -> Rp/Rs`` or a ``(wavelength_um, rp_rs)``
        table.  t0_bjd_tdb (None -> middle of the series), period_days (None -> 10 x the series
        length), a_rs (None -> solved so the T14 duration is transit_duration_fraction = 0.4 of the
        series, Winn 2010 eq. 14), impact_parameter (0.3, used when inc_deg is None), ecc (0), w_deg
        (90), u1, u2 (0.1, 0.1: weak mid-IR limb darkening), transit_supersample (5: the model is
        averaged over each integration).  The default orbit is a short-period toy (P ~ 49 min,
        a/Rs ~ 8.6) chosen so a 5-minute simulation holds a whole transit with baseline on both sides.

    Settling (MIRI idle-recovery ramp, Bell et al. 2023; anchors.md)
        settling_amplitude (0.02), settling_tau_s (None -> 10 % of the series so it is visible in short
        simulations; real value ~ 1800 s): flux multiplied by ``1 - A exp(-t/tau)``, t from exposure start.

    Drift
        drift_x_px (0.03 px: linear drift of the trace centre across the series, centred on 0),
        jitter_x_px (0.01 px rms per integration), width_jitter (0.002: rms fractional change of the
        PSF width per integration).  Typical of MIRI LRS trace-position regressors (Bell et al. 2024).

    Background (zodiacal + telescope thermal, dispersed; rises toward long wavelength)
        background_dn_s (3.0 DN/s per pixel at 10 um), background_scale_um (2.0: e-folding in
        wavelength, ~ 22 DN/s at 14 um, 0.25 at 5 um), background_col_gradient (0.05: fractional
        change across the 72 columns), background_variation (0.003 rms fractional per integration).

    Detector (MIRIMAGE)
        gain (reference.GAIN = 3.1 e-/DN, Bell et al. 2023), read_noise_dn (reference.READ_NOISE_DN =
        6 DN per read, 5 % pixel scatter), bias_dn (12000 DN: the raw MIRI pedestal; per-amplifier
        offsets +-100 DN and 50 DN pixel scatter; never subtracted by a MIRI pipeline, it cancels in
        slopes), dark_rate_dn_s (0.1 DN/s with 30 % log-normal pattern) and hot_pixel_fraction (0.002,
        10-100x dark), nonlinearity_coeffs ((0, 1, 8e-7, 1.5e-11): corrected = sum c_k raw**k, i.e. a
        response 3.6 % low at 30000 DN and 9 % at 60000 DN, the scale of the CRDS MIRI linearity files)
        with nonlinearity_scatter (0.05 fractional pixel scatter of c_2, c_3), saturation_dn
        (reference.SATURATION_DN = 60000 DN, 1 % pixel scatter).

    RSCD / reset transient (jwst rscd and reset steps; anchors.md 2.2)
        An additive offset ``-A (1 - exp(-g / rscd_tau_groups))`` on group g (lowers the slope of the
        first ~ 3 tau groups), ``A = rscd_amplitude_dn (15 DN) + rscd_flux_fraction (0.003) x the
        previous integration's accumulated charge`` (reset-switch charge decay); rscd_tau_groups (3.0);
        rscd_first_int_anomaly (True: integration 0 has no previous charge, so it differs).

    Cosmic rays
        cosmic_ray_rate_cm2_s (5 /cm^2/s, the JWST L2 design value; pixel 25 um), amplitudes
        log-uniform in [cosmic_ray_min_dn, cosmic_ray_max_dn] = [50, 5000] DN, in light-sensitive
        columns 4-71, arriving between two reads (group 1 .. ngroups-1) so each one is a jump.

    EMI (jwst #7729, emicorr; anchors.md 2.1)
        emi_components (((390.625, 4.0),): (frequency Hz, amplitude DN) pairs, e.g. add
        ``(reference.EMI_FREQUENCIES["Hz10"], 1.0)``), emi_harmonics (False; True adds 781.25 Hz at
        0.75 DN and 1562.5 Hz at 0.22 DN, the Eureka! remove390 waveform).  Each read gets
        ``sum A sin(2 pi f t + phase)`` with ``t`` from :func:`reference.pixel_read_time_offsets`;
        the phases are random and recorded.

    Raises :class:`~tsoreduce.errors.ConfigError` on an impossible value.
    """

    nints: int = 60
    ngroups: int = 30
    nsegments: int = 1
    seed: int = 0
    start_bjd_tdb: float = 60000.0
    target_name: str = "SIM-LRS-1"
    tframe: float = ref.TFRAME
    # switches
    transit: bool = True
    settling: bool = True
    drift: bool = True
    background: bool = True
    poisson: bool = True
    read_noise: bool = True
    nonlinearity: bool = True
    dark: bool = True
    rscd: bool = True
    cosmic_rays: bool = True
    saturation: bool = True
    emi: bool = True
    # star and trace
    star_teff_k: float = 5000.0
    peak_rate_dn_s: float = 2000.0
    psf_extra_sigma_px: float = 0.45
    psf_wing_fraction: float = 0.03
    psf_wing_scale: float = 4.0
    # transit
    rp_rs: float = 0.12
    feature_amplitude: float = 0.005
    feature_center_um: float = 7.7
    feature_width_um: float = 0.4
    rp_rs_spectrum: object = None
    t0_bjd_tdb: float | None = None
    period_days: float | None = None
    a_rs: float | None = None
    transit_duration_fraction: float = 0.4
    impact_parameter: float = 0.3
    inc_deg: float | None = None
    ecc: float = 0.0
    w_deg: float = 90.0
    u1: float = 0.1
    u2: float = 0.1
    transit_supersample: int = 5
    # settling
    settling_amplitude: float = 0.02
    settling_tau_s: float | None = None
    # drift
    drift_x_px: float = 0.03
    jitter_x_px: float = 0.01
    width_jitter: float = 0.002
    # background
    background_dn_s: float = 3.0
    background_scale_um: float = 2.0
    background_col_gradient: float = 0.05
    background_variation: float = 0.003
    # detector
    gain: float = ref.GAIN
    read_noise_dn: float = ref.READ_NOISE_DN
    bias_dn: float = 12000.0
    dark_rate_dn_s: float = 0.1
    hot_pixel_fraction: float = 0.002
    nonlinearity_coeffs: tuple = (0.0, 1.0, 8e-7, 1.5e-11)
    nonlinearity_scatter: float = 0.05
    saturation_dn: float = ref.SATURATION_DN
    # RSCD
    rscd_amplitude_dn: float = 15.0
    rscd_flux_fraction: float = 0.003
    rscd_tau_groups: float = 3.0
    rscd_first_int_anomaly: bool = True
    # cosmic rays
    cosmic_ray_rate_cm2_s: float = 5.0
    cosmic_ray_min_dn: float = 50.0
    cosmic_ray_max_dn: float = 5000.0
    # EMI
    emi_components: tuple = ((ref.EMI_FREQUENCIES["Hz390"], 4.0),)
    emi_harmonics: bool = False

    def __post_init__(self):
        def bad(name, why):
            raise ConfigError(f"LRSSimConfig.{name} = {getattr(self, name)!r}: {why}")

        for name in ("nints", "ngroups", "nsegments", "transit_supersample"):
            if int(getattr(self, name)) != getattr(self, name) or getattr(self, name) < 1:
                bad(name, "must be a positive integer")
        if self.ngroups < 2:
            bad("ngroups", "a ramp needs at least 2 groups")
        if self.nsegments > self.nints:
            bad("nsegments", f"cannot exceed nints = {self.nints}")
        for name in ("tframe", "peak_rate_dn_s", "gain", "star_teff_k", "saturation_dn",
                     "background_scale_um", "feature_width_um", "rscd_tau_groups",
                     "cosmic_ray_min_dn", "transit_duration_fraction"):
            if not getattr(self, name) > 0:
                bad(name, "must be > 0")
        for name in ("read_noise_dn", "dark_rate_dn_s", "background_dn_s", "settling_amplitude",
                     "cosmic_ray_rate_cm2_s", "psf_extra_sigma_px", "hot_pixel_fraction"):
            if getattr(self, name) < 0:
                bad(name, "must be >= 0")
        if self.cosmic_ray_max_dn < self.cosmic_ray_min_dn:
            bad("cosmic_ray_max_dn", "must be >= cosmic_ray_min_dn")
        if not 0 <= self.psf_wing_fraction < 1:
            bad("psf_wing_fraction", "must be in [0, 1)")
        if not 0 <= self.impact_parameter < 1 + self.rp_rs:
            bad("impact_parameter", "no transit for b >= 1 + Rp/Rs")
        if not 0 < self.transit_duration_fraction < 1:
            bad("transit_duration_fraction", "must be in (0, 1)")
        if len(self.nonlinearity_coeffs) < 2:
            bad("nonlinearity_coeffs", "need at least (c0, c1)")
        if self.saturation_dn > 65535:
            bad("saturation_dn", "exceeds the 16-bit ADC range")

    # ---- derived timing -------------------------------------------------------------------------
    @property
    def integration_duration_s(self) -> float:
        """Seconds per integration including the FASTR1 reset frame: ``(ngroups + 1) * tframe``."""
        return (self.ngroups + 1) * self.tframe

    @property
    def series_duration_days(self) -> float:
        return self.nints * self.integration_duration_s / SECONDS_PER_DAY

    def segment_bounds(self) -> list[tuple[int, int]]:
        """``[(start, stop), ...]`` 0-based integration ranges of the segments (``np.array_split`` sizes)."""
        sizes = [len(a) for a in np.array_split(np.arange(self.nints), self.nsegments)]
        stops = np.cumsum(sizes)
        return [(int(s - n), int(s)) for s, n in zip(stops, sizes)]

    def transit_parameters(self) -> dict:
        """The transit parameters actually injected: t0 (BMJD_TDB), period (days), a_rs, inc (deg),
        ecc, w (deg), u1, u2, with the defaults resolved (see the class docstring)."""
        t0 = self.t0_bjd_tdb if self.t0_bjd_tdb is not None else \
            self.start_bjd_tdb + 0.5 * self.series_duration_days
        period = self.period_days if self.period_days is not None else 10.0 * self.series_duration_days
        if self.a_rs is not None:
            a_rs = float(self.a_rs)
        else:
            a_rs = scene.solve_a_rs(period, self.transit_duration_fraction * self.series_duration_days,
                                    self.rp_rs, self.impact_parameter)
        inc = self.inc_deg if self.inc_deg is not None else \
            float(np.degrees(np.arccos(self.impact_parameter / a_rs)))
        return dict(t0=float(t0), period=float(period), a_rs=a_rs, inc=float(inc), ecc=float(self.ecc),
                    w=float(self.w_deg), u1=float(self.u1), u2=float(self.u2))

    def emi_list(self) -> list[tuple[float, float]]:
        comps = [(float(f), float(a)) for f, a in self.emi_components]
        if self.emi_harmonics:
            f0 = ref.EMI_FREQUENCIES["Hz390"]
            comps += [(2 * f0, 0.75), (4 * f0, 0.22)]
        return comps

    @classmethod
    def saturating(cls, **overrides) -> "LRSSimConfig":
        """A configuration whose brightest trace pixels saturate within a 30-group ramp
        (peak_rate_dn_s = 15000: 12000 DN bias + 15000 DN/s x 4.77 s > 60000 DN)."""
        kw = dict(peak_rate_dn_s=15000.0)
        kw.update(overrides)
        return cls(**kw)

    def to_dict(self) -> dict:
        """JSON-friendly copy (``rp_rs_spectrum`` given as its repr when callable)."""
        d = dataclasses.asdict(self)
        spec = self.rp_rs_spectrum
        if callable(spec):
            d["rp_rs_spectrum"] = repr(spec)
        elif spec is not None:
            d["rp_rs_spectrum"] = [np.asarray(a, float).tolist() for a in spec]
        d["nonlinearity_coeffs"] = list(self.nonlinearity_coeffs)
        d["emi_components"] = [list(c) for c in self.emi_components]
        return d


@dataclass
class LRSTruth:
    """Everything injected into a simulation.  Shapes use ``nints`` (all segments), 416 rows, 72 cols.

    Attributes
    ----------
    wavelength : ``(416,)`` um per row (NaN outside rows 7-394).
    rp_rs : ``(416,)`` injected Rp/Rs per row.
    star_spectrum : ``(416,)`` DN/s per row summed over columns, before transit and settling.
    trace_x : ``(nints, 416)`` column of the trace centre (0-based pixel centres).
    trace_sigma : ``(416,)`` px, cross-dispersion Gaussian sigma of the PSF core.
    trace_width_scale : ``(nints,)`` multiplicative PSF-width jitter.
    rate_star, rate_background : float32 ``(nints, 416, 72)`` DN/s, noiseless, after transit, settling
        and drift (what a perfect Stage 1 would measure, dark removed).
    transit_lc : ``(nints, 416)`` relative transit flux per row;  settling : ``(nints,)``.
    white_flux : ``(nints,)`` total star flux relative to its no-transit, no-settling value.
    times_bjd_tdb : ``(nints,)`` mid-integration BMJD_TDB (days, as IntTimes.mid_bjd_tdb).
    transit : dict t0 (BMJD_TDB), period (d), a_rs, inc (deg), ecc, w (deg), u1, u2, plus
        exp_time_days and supersample.
    cosmic_rays : structured array, :data:`COSMIC_RAY_DTYPE`.
    emi : dict frequencies (Hz), amplitudes (DN), phases (rad), arrays of equal length.
    nonlinearity_coeffs : ``(ncoeffs, 416, 72)`` (corrected = sum_k c_k raw**k).
    dark : ``(416, 72)`` DN/s;  bias : ``(416, 72)`` DN;  gain : ``(416, 72)`` e-/DN;
    read_noise_dn : ``(416, 72)`` DN per read;  saturation_dn : ``(416, 72)`` DN.
    rscd : dict amplitude_dn, flux_fraction, tau_groups, first_int_anomaly (enabled=False if off).
    config : dict, the :class:`LRSSimConfig` that produced it.
    """

    wavelength: np.ndarray
    rp_rs: np.ndarray
    star_spectrum: np.ndarray
    trace_x: np.ndarray
    trace_sigma: np.ndarray
    trace_width_scale: np.ndarray
    rate_star: np.ndarray
    rate_background: np.ndarray
    transit_lc: np.ndarray
    settling: np.ndarray
    white_flux: np.ndarray
    times_bjd_tdb: np.ndarray
    transit: dict
    cosmic_rays: np.ndarray
    emi: dict
    nonlinearity_coeffs: np.ndarray
    dark: np.ndarray
    bias: np.ndarray
    gain: np.ndarray
    read_noise_dn: np.ndarray
    saturation_dn: np.ndarray
    rscd: dict
    config: dict = field(default_factory=dict)

    @property
    def nints(self) -> int:
        return self.times_bjd_tdb.size

    def transit_depth_per_row(self) -> np.ndarray:
        """``(Rp/Rs)^2`` per row, ``(416,)``."""
        return self.rp_rs**2

    def injected_spectrum(self, edges_um):
        """Binned injected transmission spectrum.

        Parameters
        ----------
        edges_um : array ``(nbins + 1,)`` of increasing bin edges in um; a row belongs to bin ``j`` when
            ``edges[j] <= wavelength < edges[j + 1]``.

        Returns
        -------
        astropy Table with columns wavelength (flux-weighted mean wavelength of the bin's rows, um),
        wavelength_lower, wavelength_upper (um), transit_depth (ppm: mean of (Rp/Rs)^2 over the bin's
        rows weighted by the stellar flux, i.e. what the transit of the summed light curve measures) and
        rp_rs (sqrt of the depth).  Empty bins give NaN.
        """
        from astropy import units as u
        from astropy.table import Table

        edges = np.asarray(edges_um, float)
        if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
            raise ConfigError(f"injected_spectrum: edges_um must be increasing, length >= 2; got {edges}")
        lam = self.wavelength
        w = self.star_spectrum
        nb = edges.size - 1
        depth = np.full(nb, np.nan)
        centre = np.full(nb, np.nan)
        for j in range(nb):
            sel = np.isfinite(lam) & (lam >= edges[j]) & (lam < edges[j + 1]) & (w > 0)
            if sel.any():
                depth[j] = np.sum(w[sel] * self.rp_rs[sel] ** 2) / np.sum(w[sel])
                centre[j] = np.sum(w[sel] * lam[sel]) / np.sum(w[sel])
        t = Table()
        t["wavelength"] = centre * u.um
        t["wavelength_lower"] = edges[:-1] * u.um
        t["wavelength_upper"] = edges[1:] * u.um
        t["transit_depth"] = depth * 1e6
        t["transit_depth"].unit = "ppm"
        t["rp_rs"] = np.sqrt(depth)
        t.meta["source"] = "tsoreduce.simulate LRS injection (flux-weighted (Rp/Rs)^2 per bin)"
        return t


@dataclass
class LRSSimulation:
    """Output of :func:`simulate_lrs`: the uncal ramp segments (in time order) and the truth."""

    segments: list
    truth: LRSTruth


# ------------------------------------------------------------------------------------------------
# linearity polynomial
# ------------------------------------------------------------------------------------------------
def apply_linearity_polynomial(raw, coeffs) -> np.ndarray:
    """``corrected = sum_k c_k raw**k`` (the CRDS MIRI linearity convention), Horner scheme.

    raw : any shape ``(..., ny, nx)``; coeffs : ``(ncoeffs,)`` or ``(ncoeffs, ny, nx)``.  float64 result.
    """
    raw = np.asarray(raw, np.float64)
    c = np.asarray(coeffs, np.float64)
    if c.ndim == 1:
        c = c[:, None, None] if raw.ndim >= 2 else c
    out = np.zeros(np.broadcast_shapes(raw.shape, c.shape[1:]))
    for k in range(c.shape[0] - 1, -1, -1):
        out = out * raw + c[k]
    return out


def invert_linearity_polynomial(corrected, coeffs, *, tol_dn: float = 1e-6, max_iter: int = 30) -> np.ndarray:
    """Raw DN whose linearity correction equals ``corrected`` (Newton iterations, float64).

    Used to impose the detector non-linearity on the simulated linear ramps, so that the CRDS-style
    correction ``sum_k c_k raw**k`` exactly recovers them.  Requires the polynomial to be increasing
    over the range (true for the MIRI-like defaults).  Raises ``ArithmeticError`` if it fails to converge.
    """
    y = np.asarray(corrected, np.float64)
    c = np.asarray(coeffs, np.float64)
    if c.ndim == 1:
        c = c[:, None, None]
    deriv = np.array([k * c[k] for k in range(1, c.shape[0])])
    x = y.copy()
    for _ in range(max_iter):
        f = apply_linearity_polynomial(x, c) - y
        d = apply_linearity_polynomial(x, deriv)
        step = f / d
        x -= step
        if np.max(np.abs(step), initial=0.0) < tol_dn:
            return x
    raise ArithmeticError("invert_linearity_polynomial did not converge")


# ------------------------------------------------------------------------------------------------
# building blocks
# ------------------------------------------------------------------------------------------------
def _streams(seed: int) -> dict:
    children = np.random.SeedSequence(seed).spawn(len(_STREAMS))
    return dict(zip(_STREAMS, children))


def _int_times(cfg: LRSSimConfig) -> IntTimes:
    """Integration i spans ``[start + i * cycle, start + (i + 1) * cycle)`` with
    ``cycle = (ngroups + 1) * tframe`` (reset frame + ngroups reads); mid = the middle of that span."""
    cycle = cfg.integration_duration_s / SECONDS_PER_DAY
    i = np.arange(cfg.nints, dtype=float)
    start = cfg.start_bjd_tdb + i * cycle
    return IntTimes(np.arange(1, cfg.nints + 1), start, start + 0.5 * cycle, start + cycle)


def _detector_maps(cfg: LRSSimConfig, rng: np.random.Generator, shape) -> dict:
    """Per-pixel detector properties (always drawn in the same order; zeroed/neutral when switched off)."""
    nr, nc = shape
    amp = rng.uniform(-100.0, 100.0, 4)
    bias = cfg.bias_dn + amp[np.arange(nc) % 4][None, :] + rng.normal(0.0, 50.0, shape)
    dark = cfg.dark_rate_dn_s * rng.lognormal(0.0, 0.3, shape)
    hot = rng.random(shape) < cfg.hot_pixel_fraction
    dark = np.where(hot, dark * rng.uniform(10.0, 100.0, shape), dark)
    rn = cfg.read_noise_dn * (1.0 + 0.05 * rng.standard_normal(shape)).clip(0.5, None)
    sat = cfg.saturation_dn * (1.0 + 0.01 * rng.standard_normal(shape))
    sat = np.minimum(sat, 65535.0)
    c = np.asarray(cfg.nonlinearity_coeffs, float)
    coeffs = np.broadcast_to(c[:, None, None], (c.size,) + tuple(shape)).copy()
    scat = 1.0 + cfg.nonlinearity_scatter * rng.standard_normal(shape)
    coeffs[2:] *= scat[None]
    if not cfg.dark:
        dark = np.zeros(shape)
    if not cfg.nonlinearity:
        coeffs = np.zeros_like(coeffs)
        coeffs[1] = 1.0
    if not cfg.saturation:
        sat = np.full(shape, 65535.0)
    return dict(bias=bias, dark=dark, read_noise_dn=rn, saturation_dn=sat, nonlinearity_coeffs=coeffs,
                gain=np.full(shape, cfg.gain))


def _scene(cfg: LRSSimConfig, rng: np.random.Generator, times: IntTimes, shape) -> dict:
    """Noiseless star and background rates per integration and their ingredients."""
    nr, nc = shape
    nints = cfg.nints
    rows = np.arange(nr, dtype=float)
    lam = ref.wavelength_of_row(rows)
    sigma = scene.trace_sigma_px(np.where(np.isfinite(lam), lam, 10.0), cfg.psf_extra_sigma_px)
    x0 = ref.trace_x_center(rows)
    # per-integration drift, drawn whether or not used so other draws stay put
    frac = (np.arange(nints) + 0.5) / nints - 0.5
    jit = rng.standard_normal(nints)
    wjit = rng.standard_normal(nints)
    bvar = rng.standard_normal(nints)
    if cfg.drift:
        dx = cfg.drift_x_px * frac + cfg.jitter_x_px * jit
        wscale = 1.0 + cfg.width_jitter * wjit
    else:
        dx, wscale = np.zeros(nints), np.ones(nints)
    trace_x = x0[None, :] + dx[:, None]

    spec = scene.photon_spectrum_per_row(lam, cfg.star_teff_k)
    prof0 = scene.cross_dispersion_profile(x0, sigma, nc, cfg.psf_wing_fraction, cfg.psf_wing_scale)
    prof0[:, :ref.N_REFERENCE_COLUMNS] = 0.0
    scale = cfg.peak_rate_dn_s / np.max(spec[:, None] * prof0)
    spec_dn = spec * scale  # DN/s per row if the whole profile landed on the detector
    star_spectrum = spec_dn * prof0.sum(axis=1)

    rp = scene.rp_rs_per_row(lam, cfg)
    tp = cfg.transit_parameters()
    exp_time = cfg.ngroups * cfg.tframe / SECONDS_PER_DAY
    tp_full = dict(tp, exp_time_days=exp_time, supersample=int(cfg.transit_supersample))
    if cfg.transit:
        tlc = scene.transit_light_curves(times.mid_bjd_tdb, rp, tp, exp_time, cfg.transit_supersample)
    else:
        tlc = np.ones((nints, nr))
    t_rel_s = (times.mid_bjd_tdb - cfg.start_bjd_tdb) * SECONDS_PER_DAY
    tau = cfg.settling_tau_s if cfg.settling_tau_s is not None else \
        0.1 * cfg.series_duration_days * SECONDS_PER_DAY
    settle = scene.settling_curve(t_rel_s, cfg.settling_amplitude, tau) if cfg.settling else np.ones(nints)

    rate_star = np.empty((nints, nr, nc), np.float32)
    for a in range(0, nints, 64):  # chunks bound the erf temporaries
        b = min(a + 64, nints)
        prof = scene.cross_dispersion_profile(trace_x[a:b], sigma[None, :] * wscale[a:b, None], nc,
                                              cfg.psf_wing_fraction, cfg.psf_wing_scale)
        prof[..., :ref.N_REFERENCE_COLUMNS] = 0.0
        rate_star[a:b] = (spec_dn[None, :, None] * tlc[a:b, :, None] * settle[a:b, None, None] * prof)

    if cfg.background:
        lam_ext = scene.extended_wavelength(rows)
        brow = cfg.background_dn_s * np.exp((lam_ext - 10.0) / cfg.background_scale_um)
        cols = np.arange(nc, dtype=float)
        bcol = 1.0 + cfg.background_col_gradient * (cols - 0.5 * (nc + ref.N_REFERENCE_COLUMNS - 1)) / nc
        bcol[:ref.N_REFERENCE_COLUMNS] = 0.0
        bint = (1.0 + cfg.background_variation * bvar) * settle
        rate_bkg = (bint[:, None, None] * brow[None, :, None] * bcol[None, None, :]).astype(np.float32)
    else:
        rate_bkg = np.zeros((nints, nr, nc), np.float32)

    base_total = float(star_spectrum.sum())
    white = rate_star.reshape(nints, -1).sum(axis=1, dtype=np.float64) / base_total
    return dict(wavelength=lam, rp_rs=rp, star_spectrum=star_spectrum, trace_x=trace_x, trace_sigma=sigma,
                trace_width_scale=wscale, rate_star=rate_star, rate_background=rate_bkg, transit_lc=tlc,
                settling=settle, white_flux=white, transit=tp_full, settling_tau_s=tau)


def _cosmic_rays(cfg: LRSSimConfig, rng: np.random.Generator, shape) -> np.ndarray:
    """Poisson number of hits per integration over the light-sensitive pixels during the
    ``(ngroups - 1) * tframe`` between the first and last read; log-uniform amplitudes."""
    nr, nc = shape
    ncol_light = nc - ref.N_REFERENCE_COLUMNS
    mean = cfg.cosmic_ray_rate_cm2_s * PIXEL_AREA_CM2 * nr * ncol_light * (cfg.ngroups - 1) * cfg.tframe
    counts = rng.poisson(mean, cfg.nints)
    n = int(counts.sum())
    hits = np.zeros(n, COSMIC_RAY_DTYPE)
    hits["integration"] = np.repeat(np.arange(cfg.nints), counts)
    hits["group"] = rng.integers(1, cfg.ngroups, n)
    hits["row"] = rng.integers(0, nr, n)
    hits["col"] = rng.integers(ref.N_REFERENCE_COLUMNS, nc, n)
    lo, hi = np.log(cfg.cosmic_ray_min_dn), np.log(cfg.cosmic_ray_max_dn)
    hits["amplitude_dn"] = np.exp(rng.uniform(lo, hi, n))
    if not cfg.cosmic_rays:
        return hits[:0]
    return hits


def _emi_truth(cfg: LRSSimConfig, rng: np.random.Generator) -> dict:
    comps = cfg.emi_list()
    phases = rng.uniform(0.0, 2 * np.pi, max(len(comps), 1))[:len(comps)]
    if not cfg.emi:
        comps, phases = [], phases[:0]
    return dict(frequencies=np.array([c[0] for c in comps], float),
                amplitudes=np.array([c[1] for c in comps], float), phases=np.asarray(phases, float))


def _rscd_truth(cfg: LRSSimConfig) -> dict:
    return dict(enabled=bool(cfg.rscd), amplitude_dn=float(cfg.rscd_amplitude_dn),
                flux_fraction=float(cfg.rscd_flux_fraction), tau_groups=float(cfg.rscd_tau_groups),
                first_int_anomaly=bool(cfg.rscd_first_int_anomaly))


def _meta(cfg: LRSSimConfig, seg: int, start: int, stop: int, times: IntTimes) -> dict:
    from astropy.time import Time

    t_start = Time(cfg.start_bjd_tdb, format="mjd", scale="tdb")
    iso = t_start.isot
    tgroup = cfg.tframe
    return {
        "TELESCOP": "JWST", "INSTRUME": "MIRI", "DETECTOR": "MIRIMAGE", "FILTER": "P750L",
        "EXP_TYPE": "MIR_LRS-SLITLESS", "SUBARRAY": ref.SUBARRAY_NAME, "READPATT": "FASTR1",
        "NFRAMES": 1, "GROUPGAP": 0, "NGROUPS": cfg.ngroups, "NINTS": cfg.nints, "NRESETS": 1,
        "TFRAME": cfg.tframe, "TGROUP": tgroup, "TSAMPLE": ref.PIXEL_CLOCK * 1e6,
        "EFFINTTM": (cfg.ngroups - 1) * tgroup, "EFFEXPTM": cfg.nints * (cfg.ngroups - 1) * tgroup,
        "DURATION": cfg.nints * cfg.integration_duration_s,
        "INTSTART": start + 1, "INTEND": stop, "EXSEGNUM": seg + 1, "EXSEGTOT": cfg.nsegments,
        "TSOVISIT": True, "ZEROFRAM": False, "TARGNAME": cfg.target_name,
        "SUBSTRT1": ref.SUBSTRT1, "SUBSTRT2": ref.SUBSTRT2, "SUBSIZE1": ref.SUBARRAY_SHAPE[1],
        "SUBSIZE2": ref.SUBARRAY_SHAPE[0], "FASTAXIS": 1, "SLOWAXIS": 2,
        "EXPSTART": float(cfg.start_bjd_tdb), "EXPMID": float(cfg.start_bjd_tdb + 0.5 * cfg.series_duration_days),
        "EXPEND": float(cfg.start_bjd_tdb + cfg.series_duration_days),
        "DATE-OBS": iso[:10], "TIME-OBS": iso[11:], "PROGRAM": "00000", "OBSERVTN": "001", "VISIT": "001",
        "EXPOSURE": "00001", "BUNIT": "DN", "SIMULATD": True, "SIMSEED": int(cfg.seed),
        "ORIGIN": "tsoreduce.simulate",
    }


# ------------------------------------------------------------------------------------------------
# ramps
# ------------------------------------------------------------------------------------------------
def _poisson_frames(rng: np.random.Generator, per_frame: np.ndarray, nframes: int) -> np.ndarray:
    """Independent Poisson charge (e-) of ``nframes`` frames, float64 ``(nframes, ny, nx)``.

    Exact in both regimes: faint pixels (mean < 50 e-/frame, ~ 95 % of the subarray) by CDF inversion
    of numpy uniforms in a numba kernel (4-5x faster than ``Generator.poisson`` for small means), bright
    trace pixels with ``Generator.poisson``.  Deterministic for a given generator state."""
    u = rng.random((nframes,) + per_frame.shape)
    frames = np.zeros_like(u)
    poisson_by_inversion(per_frame, u, frames)
    bright = per_frame >= POISSON_INVERSION_MAX
    if bright.any():
        frames[:, bright] = rng.poisson(per_frame[bright], size=(nframes, int(bright.sum())))
    return frames


class _RampBuilder:
    """Builds one integration's raw reads, ``(ngroups, nrows, ncols)`` float32, from the truth."""

    def __init__(self, cfg: LRSSimConfig, truth_parts: dict, maps: dict, hits: np.ndarray, emi: dict,
                 noise_seq: np.random.SeedSequence, shape):
        self.cfg, self.p, self.maps, self.emi = cfg, truth_parts, maps, emi
        self.shape = shape
        ng = cfg.ngroups
        self.noise_seqs = noise_seq.spawn(cfg.nints)
        self.hits_by_int = {}
        for h in hits:
            self.hits_by_int.setdefault(int(h["integration"]), []).append(h)
        g = np.arange(ng, dtype=float)
        self.rscd_shape = -(1.0 - np.exp(-g / cfg.rscd_tau_groups))  # (ngroups,)
        t_int, t_group, t_pix = ref.pixel_read_time_offsets(cfg.nints, ng, shape=shape)
        self.t_int, self.t_group = t_int, t_group
        self.emi_pix = []
        for f, a, ph in zip(emi["frequencies"], emi["amplitudes"], emi["phases"]):
            b = 2 * np.pi * f * t_pix + ph
            self.emi_pix.append((f, a, np.cos(b), np.sin(b)))

    def electrons_rate(self, i: int) -> np.ndarray:
        """e-/s per pixel in integration i (star + background + dark)."""
        p, m = self.p, self.maps
        return (p["rate_star"][i].astype(np.float64) + p["rate_background"][i] + m["dark"]) * self.cfg.gain

    def integration(self, i: int, out: np.ndarray | None = None) -> np.ndarray:
        """Raw reads of global integration ``i``, float32 ``(ngroups, nrows, ncols)`` integer DN."""

        cfg, m = self.cfg, self.maps
        ng = cfg.ngroups
        nr, nc = self.shape
        rng = np.random.default_rng(self.noise_seqs[i])
        per_frame = self.electrons_rate(i) * cfg.tframe  # e- per frame
        if cfg.poisson:
            frames = _poisson_frames(rng, per_frame, ng)
        else:
            frames = np.broadcast_to(per_frame, (ng, nr, nc)).copy()
        for h in self.hits_by_int.get(i, ()):
            # deposited between reads g-1 and g: the cumulative sum carries it to every later read
            frames[int(h["group"]), int(h["row"]), int(h["col"])] += h["amplitude_dn"] * cfg.gain
        if cfg.rscd:
            if i == 0 and cfg.rscd_first_int_anomaly:
                prev = 0.0
            else:
                prev = self.electrons_rate(max(i - 1, 0)) / cfg.gain * ng * cfg.tframe
            rscd_amp = np.broadcast_to(cfg.rscd_amplitude_dn + cfg.rscd_flux_fraction * prev, (nr, nc))
        else:
            rscd_amp = np.zeros((nr, nc))
        rn_draw = rng.standard_normal((ng, nr, nc), dtype=np.float32)
        if not cfg.read_noise:
            rn_draw[...] = 0.0
        ne = len(self.emi_pix)
        sin_g, cos_g = np.zeros((ne, ng)), np.zeros((ne, ng))
        cos_p, sin_p = np.zeros((ne, nr, nc)), np.zeros((ne, nr, nc))
        for e, (f, a, cb, sb) in enumerate(self.emi_pix):
            ag = 2 * np.pi * f * (self.t_int[i] + self.t_group)
            sin_g[e], cos_g[e] = a * np.sin(ag), a * np.cos(ag)
            cos_p[e], sin_p[e] = cb, sb
        if out is None:
            out = np.empty((ng, nr, nc), np.float32)
        raw_reads(frames, float(cfg.gain), self.rscd_shape, np.ascontiguousarray(rscd_amp, np.float64),
                  m["bias"], m["nonlinearity_coeffs"], bool(cfg.nonlinearity), rn_draw,
                  m["read_noise_dn"], sin_g, cos_g, cos_p, sin_p, m["saturation_dn"], out)
        return out


def _build_truth(cfg: LRSSimConfig, shape=ref.SUBARRAY_SHAPE):
    seqs = _streams(cfg.seed)
    times = _int_times(cfg)
    parts = _scene(cfg, np.random.default_rng(seqs["scene"]), times, shape)
    maps = _detector_maps(cfg, np.random.default_rng(seqs["detector"]), shape)
    hits = _cosmic_rays(cfg, np.random.default_rng(seqs["cosmic_rays"]), shape)
    emi = _emi_truth(cfg, np.random.default_rng(seqs["emi"]))
    truth = LRSTruth(
        wavelength=parts["wavelength"], rp_rs=parts["rp_rs"], star_spectrum=parts["star_spectrum"],
        trace_x=parts["trace_x"], trace_sigma=parts["trace_sigma"],
        trace_width_scale=parts["trace_width_scale"], rate_star=parts["rate_star"],
        rate_background=parts["rate_background"], transit_lc=parts["transit_lc"],
        settling=parts["settling"], white_flux=parts["white_flux"], times_bjd_tdb=times.mid_bjd_tdb.copy(),
        transit=parts["transit"], cosmic_rays=hits, emi=emi,
        nonlinearity_coeffs=maps["nonlinearity_coeffs"], dark=maps["dark"], bias=maps["bias"],
        gain=maps["gain"], read_noise_dn=maps["read_noise_dn"], saturation_dn=maps["saturation_dn"],
        rscd=_rscd_truth(cfg), config=cfg.to_dict())
    truth.config["settling_tau_s_used"] = parts["settling_tau_s"]
    return truth, times, maps, seqs


def _announce(cfg: LRSSimConfig, what: str) -> None:
    off = [n for n in ("transit", "settling", "drift", "background", "poisson", "read_noise",
                       "nonlinearity", "dark", "rscd", "cosmic_rays", "saturation", "emi")
           if not getattr(cfg, n)]
    log.info("simulating MIRI LRS %s: %d integrations x %d groups in %d segment(s), seed %d%s", what,
             cfg.nints, cfg.ngroups, cfg.nsegments, cfg.seed,
             f"; effects off: {', '.join(off)}" if off else "")


def simulate_lrs(cfg: LRSSimConfig | None = None) -> LRSSimulation:
    """Simulate uncal ramps of a MIRI LRS SLITLESSPRISM TSO.

    Parameters
    ----------
    cfg : :class:`LRSSimConfig` (default: ``LRSSimConfig()``).

    Returns
    -------
    :class:`LRSSimulation` with ``segments``: list of :class:`~tsoreduce.datamodel.RampData`, one per
    exposure segment in time order, data float32 ``(nints_seg, ngroups, 416, 72)`` in integer-valued DN,
    PIXELDQ REFERENCE_PIXEL on columns 0-3, int_times (BMJD_TDB) and JWST-like meta (INTSTART/INTEND/
    EXSEGNUM/EXSEGTOT per segment); and ``truth`` (:class:`LRSTruth`).

    Raises :class:`~tsoreduce.errors.ConfigError` for an invalid configuration.
    """
    cfg = LRSSimConfig() if cfg is None else cfg
    _announce(cfg, "ramps")
    shape = ref.SUBARRAY_SHAPE
    truth, times, maps, seqs = _build_truth(cfg, shape)
    builder = _RampBuilder(cfg, {"rate_star": truth.rate_star, "rate_background": truth.rate_background},
                           maps, truth.cosmic_rays, truth.emi, seqs["noise"], shape)
    pixeldq = np.zeros(shape, np.uint32)
    pixeldq[:, :ref.N_REFERENCE_COLUMNS] = DQ.REFERENCE_PIXEL
    segments = []
    for s, (a, b) in enumerate(cfg.segment_bounds()):
        data = np.empty((b - a, cfg.ngroups) + shape, np.float32)
        for k, i in enumerate(range(a, b)):
            builder.integration(i, out=data[k])
        segments.append(RampData(data=data, pixeldq=pixeldq.copy(), int_times=times.select(slice(a, b)),
                                 meta=_meta(cfg, s, a, b, times)))
    return LRSSimulation(segments=segments, truth=truth)


def _ols_weights(ngroups: int, tframe: float):
    """Unweighted least-squares slope weights over reads at ``k * tframe``: returns ``(w, S, coef_p)``
    with slope = sum w_k y_k / S, read-noise variance rn^2 / S and Poisson variance
    coef_p * rate_DN / gain (Poisson covariance of cumulative reads: rate dt min(j, k))."""
    t = np.arange(ngroups) * tframe
    w = t - t.mean()
    s = float(np.sum(w**2))
    k = np.arange(ngroups)
    cov = np.minimum.outer(k, k) * tframe
    coef_p = float(w @ cov @ w) / s**2
    return w, s, coef_p


def simulate_lrs_rateints(cfg: LRSSimConfig | None = None):
    """Fast rate-level simulation: rateints as a perfect Stage 1 would produce them, without ramps.

    Each pixel's rate is the noiseless ``rate_star + rate_background`` (DN/s; dark subtracted) plus
    Gaussian noise with the variance of an unweighted least-squares fit of all ``ngroups`` reads
    (Poisson: ``6 (N^2 + 1) / (5 N (N^2 - 1)) * rate / (gain * tframe)`` for uniform reads, computed
    exactly from the read covariance; read noise ``12 rn^2 / (N (N^2 - 1) tframe^2)``).  Cosmic rays
    (same hits as :func:`simulate_lrs` of the same config) are left unflagged: each biases its pixel's
    rate by ``A * sum_{k >= g} w_k / S`` (the OLS response to a step), producing realistic outliers.
    Ramp-only effects (nonlinearity, rscd, saturation, emi) are not modelled here (logged).

    Returns
    -------
    (RateData, LRSTruth): data/err/var_poisson/var_rnoise float32 ``(nints, 416, 72)`` DN/s, DQ with
    REFERENCE_PIXEL | NON_SCIENCE | NO_LIN_CORR on columns 0-3 (as real pipeline rateints), the default
    wavelength map, int_times and meta of the whole exposure (INTSTART = 1).
    """
    cfg = LRSSimConfig() if cfg is None else cfg
    _announce(cfg, "rateints")
    skipped = [n for n in ("nonlinearity", "rscd", "saturation", "emi") if getattr(cfg, n)]
    if skipped:
        log.info("rate-level simulation ignores ramp-only effects: %s", ", ".join(skipped))
    shape = ref.SUBARRAY_SHAPE
    truth, times, maps, seqs = _build_truth(cfg, shape)
    w, s, coef_p = _ols_weights(cfg.ngroups, cfg.tframe)
    model = truth.rate_star.astype(np.float64) + truth.rate_background
    rng = np.random.default_rng(seqs["rate_noise"])
    rn2 = maps["read_noise_dn"] ** 2 / s
    var_r = np.broadcast_to(rn2 if cfg.read_noise else np.zeros(shape), model.shape)
    dark = maps["dark"]
    data = model.copy()
    var_p_model = coef_p * np.maximum(model + dark, 0.0) / cfg.gain if cfg.poisson else np.zeros_like(model)
    data += rng.standard_normal(model.shape) * np.sqrt(var_p_model + var_r)
    cum_w = np.cumsum(w[::-1])[::-1] / s  # response of the slope to a step starting at group g
    for h in truth.cosmic_rays:
        data[h["integration"], h["row"], h["col"]] += h["amplitude_dn"] * cum_w[h["group"]]
    var_p = coef_p * np.maximum(data + dark, 0.0) / cfg.gain if cfg.poisson else np.zeros_like(data)
    dq = np.zeros(model.shape, np.uint32)
    dq[..., :ref.N_REFERENCE_COLUMNS] = _REFPIX_RATE_DQ
    meta = _meta(cfg, 0, 0, cfg.nints, times)
    meta.update(BUNIT="DN/s", EXSEGNUM=1, EXSEGTOT=1)
    rates = RateData(data=data, err=np.sqrt(var_p + var_r), dq=dq, var_poisson=var_p,
                     var_rnoise=np.array(var_r), wavelength=ref.default_wavelength_map(shape),
                     int_times=times, meta=meta, units="DN/s")
    return rates, truth


def write_lrs_simulation(cfg: LRSSimConfig | None, outdir, *, overwrite: bool = False,
                         spectrum_edges_um=None) -> dict:
    """Simulate (:func:`simulate_lrs`) and write the result to ``outdir`` (created if needed).

    Files
    -----
    * uncal segments named like JWST's, ``jw00000001001_01101_00001-seg001_mirimage_uncal.fits``
      (no ``-segNNN`` for an unsegmented exposure), via :func:`tsoreduce.io.write_uncal`;
    * ``simulation_truth.npz`` (read back with :func:`load_lrs_truth`);
    * ``injected_spectrum.ecsv``: :meth:`LRSTruth.injected_spectrum` for ``spectrum_edges_um``
      (default 5-12 um in 0.5 um bins);
    * ``references/tsoreduce_sim_miri_{linearity,dark,gain,readnoise,saturation}.fits``: CRDS-layout
      reference files equal to the injected detector properties (loadable with
      ``tsoreduce.reference.load_linearity`` etc.).

    Returns
    -------
    dict(uncal=[Path, ...], truth=Path, spectrum=Path, references={reftype: Path}).

    Raises :class:`~tsoreduce.errors.OverwriteError` if a target file exists and ``overwrite`` is False
    (checked before simulating).
    """
    from ._lrs_files import DEFAULT_SPECTRUM_EDGES_UM, write_simulation

    cfg = LRSSimConfig() if cfg is None else cfg
    edges = DEFAULT_SPECTRUM_EDGES_UM if spectrum_edges_um is None else spectrum_edges_um
    return write_simulation(cfg, outdir, simulate_lrs, overwrite=overwrite, spectrum_edges_um=edges)


def load_lrs_truth(path) -> LRSTruth:
    """Read the ``simulation_truth.npz`` written by :func:`write_lrs_simulation`.

    Raises FileNotFoundError if absent, ValueError if the file is not an LRS truth file."""
    from ._lrs_files import load_truth

    return load_truth(path)
