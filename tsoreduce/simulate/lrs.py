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

import logging

import numpy as np

from .. import instrument as inst
from .. import reference as ref
from ..datamodel import DQ, IntTimes, RampData, RateData
from . import _lrs_files as files
from . import _lrs_scene as scene
from ._lrs_types import SECONDS_PER_DAY, LRSSimConfig, LRSSimulation, LRSTruth
from . import _lrs_detector as det
from ._lrs_detector import COSMIC_RAY_DTYPE, apply_linearity_polynomial, invert_linearity_polynomial

__all__ = [
    "LRSSimConfig", "LRSTruth", "LRSSimulation", "simulate_lrs", "iter_lrs_segments", "simulate_lrs_rateints",
    "write_lrs_simulation", "load_lrs_truth", "apply_linearity_polynomial",
    "invert_linearity_polynomial", "COSMIC_RAY_DTYPE",
]

log = logging.getLogger(__name__)

#: the PIXELDQ flags of the reference columns in real pipeline rateints (MIRISim NGTS-10 product)
_REFPIX_RATE_DQ = DQ.REFERENCE_PIXEL | DQ.NON_SCIENCE | DQ.NO_LIN_CORR

_STREAMS = ("scene", "detector", "emi", "cosmic_rays", "noise", "rate_noise")


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

    Parameters
    ----------
    cfg : LRSSimConfig, optional
        The simulation (default ``LRSSimConfig()``).

    Returns
    -------
    truth : LRSTruth
        Everything injected (built before the first segment).
    segments : iterator of RampData
        The segments in time order, identical to ``simulate_lrs(cfg).segments``.

    Raises
    ------
    ConfigError
        An invalid configuration.
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

    The whole exposure is held in memory (``nints x ngroups x 120 kB``); :func:`iter_lrs_segments`
    builds one segment at a time.

    Parameters
    ----------
    cfg : LRSSimConfig, optional
        The simulation (default ``LRSSimConfig()``).

    Returns
    -------
    LRSSimulation
        ``segments``: list of :class:`~tsoreduce.datamodel.RampData`, one per exposure segment in time
        order, data float32 ``(nints_seg, ngroups, 416, 72)`` in integer-valued DN, PIXELDQ
        REFERENCE_PIXEL on columns 0-3, int_times (BMJD_TDB) and JWST-like meta (INTSTART/INTEND/
        EXSEGNUM/EXSEGTOT per segment); ``truth`` (:class:`LRSTruth`).

    Raises
    ------
    ConfigError
        An invalid configuration.
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

    Parameters
    ----------
    cfg : LRSSimConfig, optional
        The simulation (default ``LRSSimConfig()``).

    Returns
    -------
    rates : RateData
        data/err/var_poisson/var_rnoise float32 ``(nints, 416, 72)`` DN/s, DQ with
        REFERENCE_PIXEL | NON_SCIENCE | NO_LIN_CORR on columns 0-3 (as real pipeline rateints), the
        default wavelength map, int_times and meta of the whole exposure (INTSTART = 1).
    truth : LRSTruth
        Everything injected.

    Raises
    ------
    ConfigError
        An invalid configuration.
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

    Parameters
    ----------
    cfg : LRSSimConfig or None
        The simulation (None: ``LRSSimConfig()``).
    outdir : str or pathlib.Path
        Output directory (created if needed).
    overwrite : bool
        Replace existing files.
    spectrum_edges_um : array_like, optional
        Increasing bin edges (um) of ``injected_spectrum.ecsv`` (default 5-12 um in 0.5 um bins).

    Returns
    -------
    dict
        ``uncal`` [Path, ...], ``truth`` Path, ``spectrum`` Path, ``references`` {reftype: Path} (the
        five our Stage 1 reads), ``jwst_references`` {reftype: Path} (all six).

    Raises
    ------
    OverwriteError
        A target file exists and ``overwrite`` is False (checked before simulating).
    ConfigError
        An invalid configuration.
    """
    cfg = LRSSimConfig() if cfg is None else cfg
    edges = files.DEFAULT_SPECTRUM_EDGES_UM if spectrum_edges_um is None else spectrum_edges_um
    paths = files.simulation_paths(cfg, outdir, overwrite=overwrite)  # refuse before simulating
    truth, segments = iter_lrs_segments(cfg)
    return files.write_simulation(cfg, paths, truth, segments, overwrite=overwrite, spectrum_edges_um=edges)


def load_lrs_truth(path) -> LRSTruth:
    """Read the ``simulation_truth.npz`` written by :func:`write_lrs_simulation`.

    Parameters
    ----------
    path : str or pathlib.Path
        The ``.npz`` file.

    Returns
    -------
    LRSTruth
        The truth as it was written.

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    ValueError
        The file is not an LRS truth file.
    """
    return files.load_truth(path)
