"""Realistic synthetic MIRI LRS SLITLESSPRISM time series with known truth.

``simulate_lrs(cfg)`` builds uncal-level ramps (one :class:`~tsoreduce.datamodel.RampData` per exposure
segment) and an :class:`LRSTruth` that records every injected quantity; ``simulate_lrs_rateints(cfg)``
is a fast rate-level shortcut (rateints with ramp-fit noise) for Stage 2/3 tests;
``write_lrs_simulation(cfg, outdir)`` writes the uncal segments, the truth, the injected spectrum and
CRDS-format reference files matching the truth.

Geometry: 416 rows x 72 columns, dispersion along rows (wavelength decreasing with row: the bundled
default map, ``reference.DEFAULT_WAVELENGTH_MAP`` = CRDS specwcs_0009, the one Stage 2 falls back to, so
injected and recovered spectra share one wavelength scale; trace centre from specwcs_0006), columns
0-3 are reference pixels (no light), FASTR1 readout with
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

Examples
--------
>>> from tsoreduce.simulate import LRSSimConfig, simulate_lrs, simulate_lrs_rateints
>>> sim = simulate_lrs(LRSSimConfig(nints=20, ngroups=10, nsegments=2, seed=1))
>>> [s.data.shape for s in sim.segments]
[(10, 10, 416, 72), (10, 10, 416, 72)]
>>> rates, truth = simulate_lrs_rateints(LRSSimConfig(nints=20))   # no ramps: fast
>>> table = truth.injected_spectrum([5.0, 6.0, 7.0, 8.0])          # depth in ppm per bin
>>> quiet = LRSSimConfig(poisson=False, read_noise=False, cosmic_rays=False, emi=False)  # noiseless

:func:`iter_lrs_segments` yields the segments one at a time (bounded memory, used by
:func:`write_lrs_simulation`).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field

import numpy as np

from .. import instrument as inst
from .. import reference as ref
from ..datamodel import DQ, IntTimes, RampData, RateData
from ..errors import ConfigError
from . import _lrs_scene as scene
from . import _lrs_detector as det
from ._lrs_detector import COSMIC_RAY_DTYPE, apply_linearity_polynomial, invert_linearity_polynomial

__all__ = [
    "LRSSimConfig", "LRSTruth", "LRSSimulation", "simulate_lrs", "iter_lrs_segments", "simulate_lrs_rateints",
    "write_lrs_simulation", "load_lrs_truth", "apply_linearity_polynomial",
    "invert_linearity_polynomial", "COSMIC_RAY_DTYPE",
]

log = logging.getLogger(__name__)

SECONDS_PER_DAY = 86400.0
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

    Raises :class:`~tsoreduce.errors.ConfigError` on an impossible value.
    """

    nints: int = 60
    ngroups: int = 30
    nsegments: int = 1
    seed: int = 0
    start_bjd_tdb: float = 60000.0
    target_name: str = "SIM-LRS-1"
    tframe: float = inst.TFRAME
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
    gain: float = inst.GAIN
    read_noise_dn: float = inst.READ_NOISE_DN
    bias_dn: float = 12000.0
    dark_rate_dn_s: float = 0.1
    hot_pixel_fraction: float = 0.002
    nonlinearity_coeffs: tuple = (0.0, 1.0, 8e-7, 1.5e-11)
    nonlinearity_scatter: float = 0.05
    saturation_dn: float = inst.SATURATION_DN
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
    emi_components: tuple = ((inst.EMI_FREQUENCIES["Hz390"], 4.0),)
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

    Attributes
    ----------
    wavelength : ``(416,)`` um per row (NaN outside rows 7-394).
    rp_rs : ``(416,)`` injected Rp/Rs per row (zeros when ``transit`` is off).
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
        exp_time_days, supersample and enabled.
    cosmic_rays : structured array, :data:`COSMIC_RAY_DTYPE`.
    emi : dict frequencies (Hz), amplitudes (DN), phases (rad), arrays of equal length.
    nonlinearity_coeffs : ``(ncoeffs, 416, 72)`` (corrected = sum_k c_k raw**k).
    dark : ``(416, 72)`` DN/s;  bias : ``(416, 72)`` DN;  gain : ``(416, 72)`` e-/DN;
    read_noise_dn : ``(416, 72)`` DN per read;  saturation_dn : ``(416, 72)`` DN.
    Detector truths of a switched-off effect are neutral: dark 0, read noise 0, identity linearity
    (0, 1, 0, ...), saturation 65535 (the ADC limit), no cosmic rays, no EMI components.
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
    prof0[:, :inst.N_REFERENCE_COLUMNS] = 0.0
    scale = cfg.peak_rate_dn_s / np.max(spec[:, None] * prof0)
    spec_dn = spec * scale  # DN/s per row if the whole profile landed on the detector
    star_spectrum = spec_dn * prof0.sum(axis=1)

    rp = scene.rp_rs_per_row(lam, cfg)
    tp = cfg.transit_parameters()
    exp_time = cfg.ngroups * cfg.tframe / SECONDS_PER_DAY
    tp_full = dict(tp, exp_time_days=exp_time, supersample=int(cfg.transit_supersample),
                   enabled=bool(cfg.transit))
    if cfg.transit:
        tlc = scene.transit_light_curves(times.mid_bjd_tdb, rp, tp, exp_time, cfg.transit_supersample)
    else:
        tlc = np.ones((nints, nr))
        rp = np.zeros(nr)  # nothing injected: the truth spectrum is flat zero
    t_rel_s = (times.mid_bjd_tdb - cfg.start_bjd_tdb) * SECONDS_PER_DAY
    tau = cfg.settling_tau_s if cfg.settling_tau_s is not None else \
        0.1 * cfg.series_duration_days * SECONDS_PER_DAY
    settle = scene.settling_curve(t_rel_s, cfg.settling_amplitude, tau) if cfg.settling else np.ones(nints)

    rate_star = np.empty((nints, nr, nc), np.float32)
    for a in range(0, nints, 64):  # chunks bound the erf temporaries
        b = min(a + 64, nints)
        prof = scene.cross_dispersion_profile(trace_x[a:b], sigma[None, :] * wscale[a:b, None], nc,
                                              cfg.psf_wing_fraction, cfg.psf_wing_scale)
        prof[..., :inst.N_REFERENCE_COLUMNS] = 0.0
        rate_star[a:b] = (spec_dn[None, :, None] * tlc[a:b, :, None] * settle[a:b, None, None] * prof)

    if cfg.background:
        lam_ext = scene.extended_wavelength(rows)
        brow = cfg.background_dn_s * np.exp((lam_ext - 10.0) / cfg.background_scale_um)
        cols = np.arange(nc, dtype=float)
        bcol = 1.0 + cfg.background_col_gradient * (cols - 0.5 * (nc + inst.N_REFERENCE_COLUMNS - 1)) / nc
        bcol[:inst.N_REFERENCE_COLUMNS] = 0.0
        bint = (1.0 + cfg.background_variation * bvar) * settle
        rate_bkg = (bint[:, None, None] * brow[None, :, None] * bcol[None, None, :]).astype(np.float32)
    else:
        rate_bkg = np.zeros((nints, nr, nc), np.float32)

    base_total = float(star_spectrum.sum())
    white = rate_star.reshape(nints, -1).sum(axis=1, dtype=np.float64) / base_total
    return dict(wavelength=lam, rp_rs=rp, star_spectrum=star_spectrum, trace_x=trace_x, trace_sigma=sigma,
                trace_width_scale=wscale, rate_star=rate_star, rate_background=rate_bkg, transit_lc=tlc,
                settling=settle, white_flux=white, transit=tp_full, settling_tau_s=tau)


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
        "EXP_TYPE": "MIR_LRS-SLITLESS", "SUBARRAY": inst.SUBARRAY_NAME, "READPATT": "FASTR1",
        "NFRAMES": 1, "GROUPGAP": 0, "NGROUPS": cfg.ngroups, "NINTS": cfg.nints, "NRESETS": 1,
        "TFRAME": cfg.tframe, "TGROUP": tgroup, "TSAMPLE": inst.PIXEL_CLOCK * 1e6,
        "EFFINTTM": (cfg.ngroups - 1) * tgroup, "EFFEXPTM": cfg.nints * (cfg.ngroups - 1) * tgroup,
        "DURATION": cfg.nints * cfg.integration_duration_s,
        "INTSTART": start + 1, "INTEND": stop, "EXSEGNUM": seg + 1, "EXSEGTOT": cfg.nsegments,
        "TSOVISIT": True, "ZEROFRAM": False, "TARGNAME": cfg.target_name,
        "SUBSTRT1": inst.SUBSTRT1, "SUBSTRT2": inst.SUBSTRT2, "SUBSIZE1": inst.SUBARRAY_SHAPE[1],
        "SUBSIZE2": inst.SUBARRAY_SHAPE[0], "FASTAXIS": 1, "SLOWAXIS": 2,
        # EXPSTART/EXPMID/EXPEND are MJD UTC in JWST headers; the simulation has one time scale, so
        # they hold the BMJD_TDB values (the INT_TIMES table carries the exact times)
        "EXPSTART": float(cfg.start_bjd_tdb),
        "EXPMID": float(cfg.start_bjd_tdb + 0.5 * cfg.series_duration_days),
        "EXPEND": float(cfg.start_bjd_tdb + cfg.series_duration_days),
        "DATE-OBS": iso[:10], "TIME-OBS": iso[11:], "PROGRAM": "00000", "OBSERVTN": "001", "VISIT": "001",
        "EXPOSURE": "00001", "BUNIT": "DN", "SIMULATD": True, "SIMSEED": int(cfg.seed),
        "ORIGIN": "tsoreduce.simulate",
    }


def _build_truth(cfg: LRSSimConfig, shape=inst.SUBARRAY_SHAPE):
    seqs = _streams(cfg.seed)
    times = _int_times(cfg)
    parts = _scene(cfg, np.random.default_rng(seqs["scene"]), times, shape)
    maps = det.detector_maps(cfg, np.random.default_rng(seqs["detector"]), shape)
    hits = det.cosmic_rays(cfg, np.random.default_rng(seqs["cosmic_rays"]), shape)
    emi = det.emi_truth(cfg, np.random.default_rng(seqs["emi"]))
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


def iter_lrs_segments(cfg: LRSSimConfig | None = None):
    """Like :func:`simulate_lrs` but builds the segments lazily, one at a time (memory bounded by one
    segment: ``nints_seg x ngroups x 416 x 72 x 4`` bytes).

    Returns ``(truth, iterator)``; the iterator yields the :class:`~tsoreduce.datamodel.RampData`
    segments in time order, identical to ``simulate_lrs(cfg).segments``.
    """
    cfg = LRSSimConfig() if cfg is None else cfg
    _announce(cfg, "ramps")
    shape = inst.SUBARRAY_SHAPE
    truth, times, maps, seqs = _build_truth(cfg, shape)
    builder = det.RampBuilder(cfg, {"rate_star": truth.rate_star, "rate_background": truth.rate_background},
                              maps, truth.cosmic_rays, truth.emi, seqs["noise"], shape)
    pixeldq = np.zeros(shape, np.uint32)
    pixeldq[:, :inst.N_REFERENCE_COLUMNS] = DQ.REFERENCE_PIXEL

    def segments():
        for s, (a, b) in enumerate(cfg.segment_bounds()):
            data = np.empty((b - a, cfg.ngroups) + shape, np.float32)
            for k, i in enumerate(range(a, b)):
                builder.integration(i, out=data[k])
            yield RampData(data=data, pixeldq=pixeldq.copy(), int_times=times.select(slice(a, b)),
                           meta=_meta(cfg, s, a, b, times))

    return truth, segments()


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
    EXSEGNUM/EXSEGTOT per segment); and ``truth`` (:class:`LRSTruth`).  The whole exposure is held in
    memory (``nints x ngroups x 120 kB``); :func:`iter_lrs_segments` builds one segment at a time.

    Raises :class:`~tsoreduce.errors.ConfigError` for an invalid configuration.
    """
    truth, segments = iter_lrs_segments(cfg)
    return LRSSimulation(segments=list(segments), truth=truth)


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
    shape = inst.SUBARRAY_SHAPE
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
    dq[..., :inst.N_REFERENCE_COLUMNS] = _REFPIX_RATE_DQ
    meta = _meta(cfg, 0, 0, cfg.nints, times)
    meta.update(BUNIT="DN/s", EXSEGNUM=1, EXSEGTOT=1, R_SPCWCS=ref.wavelength_map_label())
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
    * ``references/tsoreduce_sim_miri_{linearity,dark,gain,readnoise,saturation,mask}.fits``:
      CRDS-layout reference files in jwst's conventions (4-D MIRI dark, READNOISE as CDS noise, MASK
      with DQ_DEF) equal to the injected detector properties (loadable with
      ``tsoreduce.reference.load_linearity`` etc., and by jwst's detector1 steps as
      ``override_<reftype>``).

    Returns
    -------
    dict(uncal=[Path, ...], truth=Path, spectrum=Path, references={reftype: Path} (the five our
    Stage 1 reads), jwst_references={reftype: Path} (all six)).

    Raises :class:`~tsoreduce.errors.OverwriteError` if a target file exists and ``overwrite`` is False
    (checked before simulating).
    """
    from ._lrs_files import DEFAULT_SPECTRUM_EDGES_UM, write_simulation

    cfg = LRSSimConfig() if cfg is None else cfg
    edges = DEFAULT_SPECTRUM_EDGES_UM if spectrum_edges_um is None else spectrum_edges_um
    return write_simulation(cfg, outdir, iter_lrs_segments, overwrite=overwrite, spectrum_edges_um=edges)


def load_lrs_truth(path) -> LRSTruth:
    """Read the ``simulation_truth.npz`` written by :func:`write_lrs_simulation`.

    Raises FileNotFoundError if absent, ValueError if the file is not an LRS truth file."""
    from ._lrs_files import load_truth

    return load_truth(path)
