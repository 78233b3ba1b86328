"""The data types of the LRS simulator: its configuration (:class:`LRSSimConfig`), its truth
(:class:`LRSTruth`) and its output (:class:`LRSSimulation`).  Public through :mod:`tsoreduce.simulate.lrs`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from .. import instrument as inst
from .._util import document_fields, field_doc
from ..errors import ConfigError
from . import _lrs_scene as scene

__all__ = ["LRSSimConfig", "LRSTruth", "LRSSimulation", "SECONDS_PER_DAY"]

SECONDS_PER_DAY = 86400.0


@document_fields
@dataclass
class LRSSimConfig:
    """Parameters of a simulated MIRI LRS SLITLESSPRISM TSO.

    Defaults give a 60-integration x 30-group exposure with a transit centred in it; every effect is on.
    Each field's description lives in its ``metadata["doc"]`` (:func:`tsoreduce._util.field_doc`), from
    which the Parameters section below and the run-config schema (``input.simulate``) are built.

    Raises
    ------
    ConfigError
        On an impossible value (checked at construction).

    Notes
    -----
    Size and timing
        nints (60), ngroups (30), nsegments (1; integrations split as evenly as possible, earlier
        segments one larger), seed (0), start_bjd_tdb (60000.0, BMJD_TDB = BJD_TDB - 2400000.5 of the
        exposure start), target_name, tframe (instrument.TFRAME = 0.15904 s, FAST SLITLESSPRISM).
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
        Spectrum per row: blackbody photon flux x row bandwidth |d lambda / d row| x an APPROXIMATE
        P750L efficiency curve (``_lrs_scene.p750l_throughput``), so the brightest pixel sits near
        5.1 um (row ~ 385) as in the MIRISim NGTS-10 SLITLESSPRISM simulation
        (ERS_NGTS10_2022_new_drift_041 rateints, distributed with kevin218/Eureka).

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

    Settling (MIRI idle-recovery ramp, Bell et al. 2023, arXiv:2301.06350)
        settling_amplitude (0.02), settling_tau_s (None -> 10 % of the series so it is visible in short
        simulations; real value ~ 1800 s): flux multiplied by ``1 - A exp(-t/tau)``, t from exposure start.

    Drift
        drift_x_px (0.03 px: linear drift of the trace centre across the series, centred on 0),
        jitter_x_px (0.01 px rms per integration), width_jitter (0.002: rms fractional change of the
        PSF width per integration).  These are the 0.01-0.05 px scale typical of MIRI TSO decorrelation studies, larger than
        flight: measured on the Eureka! ``ypos`` regressors of a WASP-107b MIRI LRS reduction (GO 1280) which show
        ~ 0.001 px rms jitter and ~ 0.007 px peak-to-peak drift over 7 h; set jitter_x_px = 0.001,
        drift_x_px = 0.007 for flight-like values.

    Background (zodiacal + telescope thermal, dispersed; rises toward long wavelength)
        background_dn_s (3.0 DN/s per pixel at 10 um), background_scale_um (2.0: e-folding in
        wavelength, ~ 22 DN/s at 14 um, 0.25 at 5 um), background_col_gradient (0.05: fractional
        change across the 72 columns), background_variation (0.003 rms fractional per integration).

    Detector (MIRIMAGE)
        gain (instrument.GAIN = 3.1 e-/DN, Bell et al. 2023), read_noise_dn (instrument.READ_NOISE_DN =
        6 DN per read, 5 % pixel scatter), bias_dn (12000 DN: the raw MIRI pedestal; per-amplifier
        offsets +-100 DN and 50 DN pixel scatter; never subtracted by a MIRI pipeline, it cancels in
        slopes), dark_rate_dn_s (0.1 DN/s with 30 % log-normal pattern) and hot_pixel_fraction (0.002,
        10-100x dark), nonlinearity_coeffs ((0, 1, 8e-7, 1.5e-11): corrected = sum c_k raw**k, i.e. the
        correction is +3.8 % at raw 30000 DN and +10 % at 60000 DN, of the order of the MIRI
        non-linearity described by Morrison et al. 2023, PASP 135, 075004)
        with nonlinearity_scatter (0.05 fractional pixel scatter of c_2, c_3), saturation_dn
        (instrument.SATURATION_DN = 60000 DN, 1 % pixel scatter).

    RSCD / reset transient (jwst rscd and reset steps; Morrison et al. 2023)
        An additive offset ``-A (1 - exp(-g / rscd_tau_groups))`` on group g (lowers the slope of the
        first ~ 3 tau groups), ``A = rscd_amplitude_dn (15 DN) + rscd_flux_fraction (0.003) x the
        previous integration's accumulated charge`` (reset-switch charge decay); rscd_tau_groups (3.0);
        rscd_first_int_anomaly (True: integration 0 has no previous charge, so it differs).

    Cosmic rays
        cosmic_ray_rate_cm2_s (5 /cm^2/s, the galactic cosmic-ray flux expected at L2 quoted for JWST
        detectors; MIRI pixel pitch 25 um -> ~ 4 hits per 30-group integration), amplitudes
        log-uniform in [cosmic_ray_min_dn, cosmic_ray_max_dn] = [50, 5000] DN, in light-sensitive
        columns 4-71, arriving between two reads (group 1 .. ngroups-1) so each one is a jump.

    EMI (jwst issue #7729; JWST pipeline documentation, emicorr step)
        emi_components (((390.625, 4.0),): (frequency Hz, amplitude DN) pairs; a frequency may be a
        jwst emicorr name from ``instrument.EMI_FREQUENCIES``, e.g. ``("Hz10", 1.0)``), emi_harmonics (False; True adds 781.25 Hz at
        0.75 DN and 1562.5 Hz at 0.22 DN, the Eureka! remove390 waveform).  Each read gets
        ``sum A sin(2 pi f t + phase)`` with ``t`` from :func:`instrument.pixel_read_time_offsets`;
        the phases are random and recorded.
    """

    # size and timing
    nints: int = field_doc(60, 'integrations in the exposure')
    ngroups: int = field_doc(30, 'groups per integration (>= 2)')
    nsegments: int = field_doc(1,
        'exposure segments; integrations split as evenly as possible, earlier segments one larger')
    seed: int = field_doc(0, 'random seed; every effect draws from its own stream spawned from it')
    start_bjd_tdb: float = field_doc(60000.0, 'exposure start, BMJD_TDB (BJD_TDB - 2400000.5), days')
    target_name: str = field_doc("SIM-LRS-1", 'TARGNAME written into the products')
    tframe: float = field_doc(inst.TFRAME,
        'frame time, s (0.15904 s, FAST SLITLESSPRISM); an integration lasts (ngroups + 1) * tframe (FASTR1: one reset frame)')
    # switches
    transit: bool = field_doc(True, 'switch: inject the transit')
    settling: bool = field_doc(True, 'switch: inject the detector settling ramp')
    drift: bool = field_doc(True, 'switch: inject trace drift, jitter and PSF-width jitter')
    background: bool = field_doc(True, 'switch: inject the dispersed sky + thermal background')
    poisson: bool = field_doc(True, 'switch: Poisson noise of the accumulated charge')
    read_noise: bool = field_doc(True, 'switch: read noise on every read')
    nonlinearity: bool = field_doc(True, 'switch: apply the inverse of the linearity polynomial')
    dark: bool = field_doc(True, 'switch: dark current and hot pixels')
    rscd: bool = field_doc(True, 'switch: the RSCD / reset transient at the start of each ramp')
    cosmic_rays: bool = field_doc(True, 'switch: cosmic-ray jumps')
    saturation: bool = field_doc(True,
        'switch: clip reads at the per-pixel saturation (off: still clipped to the 16-bit ADC range 0-65535)')
    emi: bool = field_doc(True, "switch: EMI sinusoids at each pixel's read time")
    # star and trace
    star_teff_k: float = field_doc(5000.0, 'stellar effective temperature of the blackbody spectrum, K')
    peak_rate_dn_s: float = field_doc(2000.0,
        'rate in the brightest trace pixel before transit/settling, DN/s (a 30-group ramp reaches ~ 12000 + 9500 DN, below saturation; see LRSSimConfig.saturating)')
    psf_extra_sigma_px: float = field_doc(0.45,
        'px added in quadrature to the 0.42 lambda/D diffraction sigma (sigma = 0.75 px at 5 um, 1.52 px at 12 um, as the flight MIRI imager FWHMs)')
    psf_wing_fraction: float = field_doc(0.03, 'fraction of the flux in the PSF halo')
    psf_wing_scale: float = field_doc(4.0, 'width of the PSF halo in units of the core sigma')
    # transit
    rp_rs: float = field_doc(0.12, 'planet-to-star radius ratio of the flat part of the spectrum')
    feature_amplitude: float = field_doc(0.005, 'amplitude of a Gaussian feature in Rp/Rs')
    feature_center_um: float = field_doc(7.7,
        'centre of the feature, um (where SO2 absorbs: Powell et al. 2024, Nature 626, 979)')
    feature_width_um: float = field_doc(0.4, 'Gaussian sigma of the feature, um')
    rp_rs_spectrum: object = field_doc(None,
        'instead of rp_rs + feature: a callable f(wavelength_um) -> Rp/Rs or a (wavelength_um, rp_rs) table')
    t0_bjd_tdb: float | None = field_doc(None, 'mid-transit time, BMJD_TDB; None -> middle of the series')
    period_days: float | None = field_doc(None, 'orbital period, days; None -> 10 x the series length')
    a_rs: float | None = field_doc(None,
        'a/Rs; None -> solved so the T14 duration is transit_duration_fraction of the series (Winn 2010 eq. 14)')
    transit_duration_fraction: float = field_doc(0.4,
        'T14 as a fraction of the series, used when a_rs is None')
    impact_parameter: float = field_doc(0.3, 'impact parameter b, used when inc_deg is None')
    inc_deg: float | None = field_doc(None, 'inclination, deg; None -> from impact_parameter and a_rs')
    ecc: float = field_doc(0.0, 'eccentricity')
    w_deg: float = field_doc(90.0, 'argument of periastron, deg')
    u1: float = field_doc(0.1, 'quadratic limb-darkening coefficient u1 (weak mid-IR limb darkening)')
    u2: float = field_doc(0.1, 'quadratic limb-darkening coefficient u2')
    transit_supersample: int = field_doc(5,
        'sub-samples per integration over which the transit model is averaged')
    # settling
    settling_amplitude: float = field_doc(0.02,
        'fractional depth A of the settling ramp, flux x (1 - A exp(-t/tau))')
    settling_tau_s: float | None = field_doc(None,
        'settling time constant, s; None -> 10 % of the series (visible in short simulations; flight ~ 1800 s)')
    # drift
    drift_x_px: float = field_doc(0.03,
        'linear drift of the trace centre across the series, px, centred on 0 (flight-like: 0.007)')
    jitter_x_px: float = field_doc(0.01,
        'rms jitter of the trace centre per integration, px (flight-like: 0.001)')
    width_jitter: float = field_doc(0.002, 'rms fractional change of the PSF width per integration')
    # background
    background_dn_s: float = field_doc(3.0, 'background per pixel at 10 um, DN/s')
    background_scale_um: float = field_doc(2.0,
        'e-folding wavelength of the background rise, um (~ 22 DN/s at 14 um, 0.25 at 5 um)')
    background_col_gradient: float = field_doc(0.05,
        'fractional change of the background across the 72 columns')
    background_variation: float = field_doc(0.003, 'rms fractional background change per integration')
    # detector
    gain: float = field_doc(inst.GAIN, 'gain, e-/DN (3.1, Bell et al. 2023)')
    read_noise_dn: float = field_doc(inst.READ_NOISE_DN, 'read noise per read, DN (6, 5 % pixel scatter)')
    bias_dn: float = field_doc(12000.0,
        'raw pedestal, DN (per-amplifier offsets +-100 DN, 50 DN pixel scatter; cancels in slopes)')
    dark_rate_dn_s: float = field_doc(0.1, 'dark current, DN/s (30 % log-normal pattern)')
    hot_pixel_fraction: float = field_doc(0.002, 'fraction of hot pixels (10-100 x dark)')
    nonlinearity_coeffs: tuple = field_doc((0.0, 1.0, 8e-7, 1.5e-11),
        'linearity polynomial, corrected = sum c_k raw**k (+3.8 % at raw 30000 DN, +10 % at 60000 DN, the order of Morrison et al. 2023)')
    nonlinearity_scatter: float = field_doc(0.05, 'fractional pixel scatter of c_2 and c_3')
    saturation_dn: float = field_doc(inst.SATURATION_DN, 'saturation, DN (60000, 1 % pixel scatter)')
    # rscd
    rscd_amplitude_dn: float = field_doc(15.0, 'constant part of the reset transient amplitude, DN')
    rscd_flux_fraction: float = field_doc(0.003,
        "part of the amplitude proportional to the previous integration's charge")
    rscd_tau_groups: float = field_doc(3.0, 'e-folding of the transient, groups')
    rscd_first_int_anomaly: bool = field_doc(True,
        'integration 0 has no previous charge, so its transient differs')
    # cosmic rays
    cosmic_ray_rate_cm2_s: float = field_doc(5.0,
        'cosmic-ray rate, /cm^2/s (expected at L2; ~ 4 hits per 30-group integration)')
    cosmic_ray_min_dn: float = field_doc(50.0, 'smallest cosmic-ray amplitude, DN (log-uniform)')
    cosmic_ray_max_dn: float = field_doc(5000.0, 'largest cosmic-ray amplitude, DN')
    # emi
    emi_components: tuple = field_doc(((inst.EMI_FREQUENCIES["Hz390"], 4.0),),
        '(frequency Hz or jwst emicorr name such as Hz10, amplitude DN) pairs')
    emi_harmonics: bool = field_doc(False,
        'add 781.25 Hz at 0.75 DN and 1562.5 Hz at 0.22 DN (the Eureka! remove390 waveform)')

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
        try:
            if any(len(c) != 2 for c in self.emi_components):
                raise TypeError
        except TypeError:
            bad("emi_components", "must be a sequence of (frequency Hz or name, amplitude DN) pairs")
        self.emi_list()  # unknown frequency names raise here

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
        """``[(frequency Hz, amplitude DN), ...]`` injected when ``emi`` is on: ``emi_components``
        (a frequency may be given by its jwst emicorr name, e.g. ``"Hz10"``) plus the harmonics."""
        comps = []
        for f, a in self.emi_components:
            if isinstance(f, str):
                if f not in inst.EMI_FREQUENCIES:
                    raise ConfigError(f"LRSSimConfig.emi_components: unknown EMI frequency name {f!r}; "
                                      f"known: {', '.join(inst.EMI_FREQUENCIES)}")
                f = inst.EMI_FREQUENCIES[f]
            comps.append((float(f), float(a)))
        if self.emi_harmonics:
            f0 = inst.EMI_FREQUENCIES["Hz390"]
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

    Parameters
    ----------
    wavelength : ``(416,)`` um per row (NaN outside rows 7-394).
    rp_rs : ``(416,)`` injected Rp/Rs per row (zeros when ``transit`` is off).
    star_spectrum : ``(416,)`` DN/s per row summed over columns, before transit and settling.
    trace_x : ``(nints, 416)`` column of the trace centre (0-based pixel centres).
    trace_sigma : ``(416,)`` px, cross-dispersion Gaussian sigma of the PSF core.
    trace_width_scale : ``(nints,)`` multiplicative PSF-width jitter.
    rate_star, rate_background : float32 ``(nints, 416, 72)`` DN/s, noiseless, after transit, settling
        and drift (what a perfect Stage 1 would measure, dark removed).
    transit_lc : ``(nints, 416)`` relative transit flux per row.
    settling : ``(nints,)`` multiplicative settling factor.
    white_flux : ``(nints,)`` total star flux relative to its no-transit, no-settling value.
    times_bjd_tdb : ``(nints,)`` mid-integration BMJD_TDB (days, as IntTimes.mid_bjd_tdb).
    transit : dict t0 (BMJD_TDB), period (d), a_rs, inc (deg), ecc, w (deg), u1, u2, plus
        exp_time_days, supersample and enabled.
    cosmic_rays : structured array, :data:`COSMIC_RAY_DTYPE`.
    emi : dict frequencies (Hz), amplitudes (DN), phases (rad), arrays of equal length.
    nonlinearity_coeffs : ``(ncoeffs, 416, 72)`` (corrected = sum_k c_k raw**k).
    dark : ``(416, 72)`` DN/s.
    bias : ``(416, 72)`` DN.
    gain : ``(416, 72)`` e-/DN.
    read_noise_dn : ``(416, 72)`` DN per read.
    saturation_dn : ``(416, 72)`` DN.
    rscd : dict amplitude_dn, flux_fraction, tau_groups, first_int_anomaly (enabled=False if off).
    config : dict, the :class:`LRSSimConfig` that produced it.

    Notes
    -----
    Detector truths of a switched-off effect are neutral: dark 0, read noise 0, identity linearity
    (0, 1, 0, ...), saturation 65535 (the ADC limit), no cosmic rays, no EMI components.
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
    """Output of :func:`simulate_lrs`: the uncal ramp segments (in time order) and the truth.

    Parameters
    ----------
    segments : list of RampData
        The uncal segments in time order.
    truth : LRSTruth
        Everything injected.
    """

    segments: list
    truth: LRSTruth
