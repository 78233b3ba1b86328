"""Stage 1 runner: uncal ramps -> rateints (DN/s), in the MIRI calwebb_detector1 order.

Order (JWST pipeline documentation, calwebb_detector1 for MIRI): dq_init -> emi -> saturation ->
reset (RSCD group drop) -> linearity -> dark -> jump -> ramp_fit.

Memory: :func:`run_stage1` makes one private working copy of the ramp data and GROUPDQ (or none with
``copy=False``) and every step then works in place on it.  :func:`run_stage1_segment` reads one uncal
file in chunks of integrations sized from ``memory.limit_gb`` (a flight segment of ~200 integrations x
100 groups holds 0.6 G samples, ~7 GB of working set in one piece) and joins the chunks' rateints;
:func:`run_stage1_files` does that file by file, so the peak memory is one chunk plus the rateints.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import numpy as np

from ..config import Param, validate
from ..datamodel import DQ, RampData, RateData, concatenate
from ..errors import ConfigError, ReferenceFileError
from .. import reference as ref
from . import calibrate, emi as emimod, jumps, rampfit, reset
from .dq_init import dq_init as _dq_init, flag_saturation as _flag_saturation

log = logging.getLogger(__name__)

__all__ = ["CONFIG_SCHEMA", "run_stage1", "run_stage1_segment", "run_stage1_files", "chunk_plan",
           "resolve_references"]

CONFIG_SCHEMA = {
    "dq_init": {
        "skip": Param(False, bool, "skip DQ initialisation (first/last group flags, reference columns)"),
        "flag_first_group": Param(True, bool, "flag group 0 of every integration DO_NOT_USE"),
        "flag_last_group": Param(True, bool, "flag the last group of every integration DO_NOT_USE "
                                             "(MIRI last-frame pull-down)"),
    },
    "emi": {
        "skip": Param(False, bool, "skip the EMI (390 Hz) correction"),
        "frequencies": Param(["Hz390"], list, "EMI tones to fit, names of reference.EMI_FREQUENCIES",
                             item_type=str),
        "harmonics": Param([1, 2, 3, 4], list, "harmonic numbers fitted for every named tone",
                           item_type=int, min=1),
        "fit_per": Param("integration", str, "fit amplitude/phase per integration or once per exposure",
                         choices=("integration", "exposure")),
        "trace_halfwidth": Param(10.0, float, "columns either side of the trace excluded from the EMI fit",
                                 min=0),
        "robust": Param(True, bool, "drop hot/unstable pixels from the EMI fit"),
        "skip_reset_groups": Param(True, bool, "fit the EMI only on groups after the reset drop "
                                               "(when >= 3 remain)"),
    },
    "saturation": {
        "skip": Param(False, bool, "skip saturation flagging"),
        "threshold_dn": Param(None, float, "saturation threshold in DN; null: the saturation reference "
                                           "if given, else reference.SATURATION_DN", nullable=True, min=0),
        "n_pix_grow": Param(1, int, "grow saturation flags to a (2n+1)^2 box", min=0, max=5),
    },
    "reset": {
        "skip": Param(False, bool, "skip the RSCD / reset group drop"),
        "n_groups": Param(12, int, "number of leading groups flagged DO_NOT_USE (clipped so >= 2 remain)",
                          min=0),
    },
    "linearity": {
        "skip": Param(False, bool, "skip the linearity correction"),
        "method": Param("auto", str, "auto: the reference if available, else none with a WARNING; "
                                     "reference (required); self (experimental self-calibration from "
                                     "bright-ramp curvature); none (identity, WARNING)",
                        choices=("auto", "reference", "self", "none")),
        "n_bright": Param(300, int, "bright pixels used by the self-calibration", min=10),
    },
    "dark": {
        "skip": Param(False, bool, "skip dark subtraction (without a dark reference it is skipped with a "
                                   "log line: dark current is removed with the background in Stage 2)"),
    },
    "jump": {
        "skip": Param(False, bool, "skip jump detection"),
        "method": Param("time_domain", str, "time_domain (across integrations), up_the_ramp (within "
                                            "each ramp) or both",
                        choices=("time_domain", "up_the_ramp", "both")),
        "up_the_ramp": {
            "threshold": Param(4.0, float, "sigma threshold of the two-point difference test", min=1),
            "flag_4_neighbors": Param(False, bool, "also flag the 4 neighbours of large jumps"),
            "neighbor_threshold": Param(10.0, float, "sigma above which neighbours are flagged", min=1),
        },
        "time_domain": {
            "threshold": Param(5.0, float, "sigma threshold against the pixel's temporal scatter", min=1),
            "window": Param(15, int, "running-median window in integrations", min=3),
            "noise_floor": Param(1.0, float, "floor on the noise as a multiple of the read+Poisson "
                                             "model", min=0),
            "min_integrations": Param(5, int, "below this number of integrations the up-the-ramp "
                                              "method is used instead (WARNING)", min=3),
        },
    },
    "ramp_fit": {
        "skip": Param(False, bool, "must stay false: the ramp fit produces the rateints"),
        "read_noise_dn": Param(None, float, "read noise per read (DN); null: readnoise reference or "
                                            "reference.READ_NOISE_DN", nullable=True, min=0),
        "gain": Param(None, float, "gain (e-/DN) for the Poisson variance; null: gain reference or "
                                   "reference.GAIN", nullable=True, min=0),
        "units": Param("DN/s", str, "rateints units: DN/s (as the STScI pipeline) or e-/s (rates, ERR "
                                    "and variances multiplied by the gain)", choices=("DN/s", "e-/s")),
    },
    "memory": {
        "limit_gb": Param(3.0, float, "target peak memory (GB) of Stage 1 on one uncal file: a segment "
                                      "whose working set is larger is processed in chunks of "
                                      "integrations (time-domain jumps get halo integrations)", min=0.5),
        "chunk_integrations": Param(None, int, "integrations per chunk (without halos); null: derived "
                                               "from limit_gb", nullable=True, min=1),
    },
    "references": {
        "saturation": Param(None, str, "saturation reference file (CRDS format)", nullable=True),
        "linearity": Param(None, str, "linearity reference file", nullable=True),
        "dark": Param(None, str, "dark reference file", nullable=True),
        "gain": Param(None, str, "gain reference file", nullable=True),
        "readnoise": Param(None, str, "read-noise reference file (DN)", nullable=True),
        "readnoise_convention": Param("auto", str, "cds: the file holds the noise of a read difference "
                                                   "(CRDS/stcal convention, divided by sqrt 2); per_read; "
                                                   "auto: per_read if DESCRIP says 'per read'/'DN/read', "
                                                   "else cds", choices=("auto", "cds", "per_read")),
        "use_crds_cache": Param(True, bool, "look up missing references in $CRDS_PATH (never downloads)"),
    },
}

_REFTYPES = ("saturation", "linearity", "dark", "gain", "readnoise")


def _readnoise_is_cds(path, convention: str) -> bool:
    if convention != "auto":
        return convention == "cds"
    from astropy.io import fits
    descrip = str(fits.getheader(path, 0).get("DESCRIP", "")).lower()
    return not ("per read" in descrip or "dn/read" in descrip)


def resolve_references(cfg_refs: dict, references: dict | None, meta: dict) -> dict:
    """Arrays for each reference type: ``references[...]`` (array or path) first, then the config path,
    then the CRDS cache (if enabled); missing types are absent from the result.

    Raises ReferenceFileError for an unknown key or an unreadable file.
    """
    references = dict(references or {})
    unknown = set(references) - set(_REFTYPES) - {"linearity_dq", "dark_dq"}
    if unknown:
        raise ReferenceFileError(f"references: unknown reference type(s) {sorted(unknown)}; "
                                 f"known: {list(_REFTYPES)}")
    out = {}
    for rt in _REFTYPES:
        val = references.get(rt)
        if val is None:
            val = cfg_refs.get(rt)
        if val is None and cfg_refs.get("use_crds_cache", True) and hasattr(ref, "find_reference"):
            val = ref.find_reference(rt, meta=meta)
        if val is None:
            continue
        if isinstance(val, (str, Path)):
            loader = getattr(ref, f"load_{rt}", None)
            if loader is None:
                raise ReferenceFileError(f"no loader for {rt} references in tsoreduce.reference")
            arr, dq = loader(val, meta, with_dq=True)
            out[rt] = arr
            out[f"{rt}_dq"] = dq
            if rt == "readnoise" and _readnoise_is_cds(val, cfg_refs.get("readnoise_convention", "auto")):
                # stcal (ramp_fit_data) treats READNOISE as the noise of a CDS pair: one read is /sqrt(2)
                out[rt] = arr / np.sqrt(2.0)
                log.info("readnoise reference %s taken as CDS noise (divided by sqrt 2 per read)", val)
        else:
            out[rt] = np.asarray(val)
    for k in ("linearity_dq", "dark_dq"):
        if references.get(k) is not None:
            out[k] = np.asarray(references[k])
    return out


def _emi_plot(before, after, plot_dir, diag):
    from ..plotting import detector as pd
    fb, pb = emimod.emi_periodogram(before)
    fa, pa = emimod.emi_periodogram(after)
    pd.plot_emi_periodogram(fb, pb, pa, diag.get("frequencies"), path=Path(plot_dir) / "stage1_emi.png")


def run_stage1(ramp: RampData, config: dict | None = None, *, plot_dir=None, references: dict | None = None,
               copy: bool = True) -> RateData:
    """Run Stage 1 on one exposure or segment and return its rateints.

    Parameters
    ----------
    ramp : RampData ``(nints, ngroups, 416, 72)`` raw DN (uncal).
    config : the ``stage1`` section (validated against :data:`CONFIG_SCHEMA`; None = defaults).
    plot_dir : directory for diagnostic figures (EMI periodogram, jump map, rate image), or None.
    references : optional dict of reference arrays or file paths keyed ``saturation``, ``linearity``
        (COEFFS ``(ncoeffs, ny, nx)``), ``dark``, ``gain``, ``readnoise`` (DN per read when an array),
        plus optional ``linearity_dq`` / ``dark_dq``.  They override the config's ``references`` paths.
    copy : work on a private copy of the data and GROUPDQ (default).  ``False`` lets the steps modify
        ``ramp``'s arrays in place (for callers that drop the ramp afterwards; saves one segment of RAM).

    Returns
    -------
    RateData in DN/s (or e-/s with ``ramp_fit.units``): data, err, dq, var_poisson, var_rnoise;
    ``int_times`` and ``meta`` propagated, with
    the step status keywords (S_DQINIT, S_EMICOR, S_SATURA, S_RSCD, S_LINEAR, S_DARK, S_JUMP, S_RAMP).

    Raises ConfigError for an invalid config, ReferenceFileError for unusable references,
    NotImplementedStepError never (every option is implemented).
    """
    cfg = validate(config, CONFIG_SCHEMA, "stage1")
    if cfg["ramp_fit"]["skip"]:
        raise ConfigError("stage1.ramp_fit.skip: the ramp fit cannot be skipped (it makes the rateints)")
    refs = resolve_references(cfg["references"], references, ramp.meta)
    if copy:
        ramp = ramp.replace(data=ramp.data.copy(), groupdq=ramp.groupdq.copy(), pixeldq=ramp.pixeldq.copy())
    gdq = ramp.groupdq
    nints, ngroups = ramp.nints, ramp.ngroups
    log.info("Stage 1: %d integrations x %d groups x %d x %d", nints, ngroups, *ramp.data.shape[2:])
    if plot_dir is not None:
        Path(plot_dir).mkdir(parents=True, exist_ok=True)

    probe = None
    if plot_dir is not None:
        # the brightest science pixel of integration 0 shows what each calibration step does
        span = np.asarray(ramp.data[0, -1], float) - np.asarray(ramp.data[0, 0], float)
        span[:, :ref.N_REFERENCE_COLUMNS] = -np.inf
        probe = np.unravel_index(int(np.argmax(np.where(np.isfinite(span), span, -np.inf))), span.shape)
        raw_probe = np.array(ramp.data[0, :, probe[0], probe[1]], float)

    # 1. DQ init
    c = cfg["dq_init"]
    if c["skip"]:
        log.info("dq_init: skipped by configuration")
    else:
        ramp = _dq_init(ramp, flag_first_group=c["flag_first_group"],
                             flag_last_group=c["flag_last_group"], out=gdq)

    # 2. EMI
    c = cfg["emi"]
    if c["skip"]:
        log.info("emi: skipped by configuration")
    else:
        first_fit = None
        if c["skip_reset_groups"] and not cfg["reset"]["skip"]:
            first_fit = cfg["reset"]["n_groups"]
        before = None
        if plot_dir is not None:
            before = ramp.select_integrations(slice(0, 1)).copy()
        ramp, diag = emimod.correct_emi(ramp, frequencies=c["frequencies"], harmonics=c["harmonics"],
                                        fit_per=c["fit_per"], trace_halfwidth=c["trace_halfwidth"],
                                        first_fit_group=first_fit, robust=c["robust"], inplace=True)
        if plot_dir is not None and "skipped" not in diag:
            _emi_plot(before, ramp.select_integrations(slice(0, 1)), plot_dir, diag)
            from ..plotting import detector as pd
            pd.plot_emi_amplitudes(diag, path=Path(plot_dir) / "stage1_emi_amplitudes.png")

    # 3. saturation
    c = cfg["saturation"]
    if c["skip"]:
        log.info("saturation: skipped by configuration")
    else:
        thr = c["threshold_dn"]
        if thr is None:
            thr = refs.get("saturation")
            if thr is None:
                log.info("saturation: no reference; using the default threshold %.0f DN", ref.SATURATION_DN)
        ramp = _flag_saturation(ramp, saturation=thr, n_pix_grow=c["n_pix_grow"], out=gdq)

    # 4. reset / RSCD group drop
    c = cfg["reset"]
    if c["skip"]:
        log.info("reset: skipped by configuration")
    else:
        ramp = reset.flag_reset_groups(ramp, n_groups=c["n_groups"], out=gdq)

    # 5. linearity
    c = cfg["linearity"]
    method = c["method"]
    if c["skip"] or method == "none":
        log.warning("linearity: NOT corrected (%s); slopes of bright pixels carry the detector "
                    "non-linearity", "skipped by configuration" if c["skip"] else "method 'none'")
    else:
        coeffs = refs.get("linearity")
        if method == "reference" and coeffs is None:
            raise ReferenceFileError("stage1.linearity.method is 'reference' but no linearity reference "
                                     "was given (references.linearity) or found in the CRDS cache")
        if coeffs is not None and method in ("auto", "reference"):
            ramp = calibrate.apply_linearity(ramp, coeffs, coeff_dq=refs.get("linearity_dq"), inplace=True)
        elif method == "auto":
            log.warning("linearity: no linearity reference given or found -- NO linearity correction "
                        "(identity). Give references.linearity, or method 'self' for the experimental "
                        "self-calibration; the non-linearity is mostly a multiplicative slope error that "
                        "cancels in relative light curves")
        else:
            coeffs, info = calibrate.self_calibrate_linearity(ramp, n_bright=c["n_bright"])
            if coeffs is None:
                log.warning("linearity: no reference file and the self-calibration is not usable (%s): "
                            "NO linearity correction applied", info["reason"])
            else:
                log.warning("linearity: no reference file -- SELF-CALIBRATED correction from the curvature "
                            "of %d bright ramps: beta = %.3g +/- %.2g /DN (corrected = raw + beta raw^2 + "
                            "2 beta^2 raw^3)", info["n_pixels"], info["beta"], info["beta_err"])
                ramp = calibrate.apply_linearity(ramp, coeffs, inplace=True)
                ramp.meta["LINSELF"] = float(info["beta"])

    # 6. dark
    c = cfg["dark"]
    if c["skip"]:
        log.info("dark: skipped by configuration")
    elif refs.get("dark") is None:
        log.info("dark: no dark reference given or found; skipped (the dark current is removed with the "
                 "background in Stage 2)")
    else:
        ramp = calibrate.subtract_dark(ramp, refs["dark"], dark_dq=refs.get("dark_dq"), inplace=True)

    if probe is not None:
        from ..plotting import detector as pd
        sat_groups = np.count_nonzero(ramp.groupdq[0] & np.uint32(DQ.SATURATED), axis=0)
        pd.plot_calibration_steps(raw_probe, ramp.data[0, :, probe[0], probe[1]],
                                  ramp.groupdq[0, :, probe[0], probe[1]], sat_groups, pixel=probe,
                                  path=Path(plot_dir) / "stage1_calibration.png")

    # noise model shared by jump detection and ramp fitting
    rf = cfg["ramp_fit"]
    rn = rf["read_noise_dn"] if rf["read_noise_dn"] is not None else refs.get("readnoise", ref.READ_NOISE_DN)
    gain = rf["gain"] if rf["gain"] is not None else refs.get("gain", ref.GAIN)
    gain = _usable_noise_map(ramp, gain, "gain", ref.GAIN, "e-/DN", DQ.NO_GAIN_VALUE, "NGAINDEF")
    rn = _usable_noise_map(ramp, rn, "read noise", ref.READ_NOISE_DN, "DN", DQ.UNRELIABLE_ERROR, "NRNDEF")
    s_ref = rampfit.poisson_signal_per_group(ramp)

    # 7. jumps
    c = cfg["jump"]
    if c["skip"]:
        log.info("jump: skipped by configuration")
    else:
        method = c["method"]
        td = c["time_domain"]
        if method in ("time_domain", "both") and nints < td["min_integrations"]:
            log.warning("jump: %d integrations < %d; using the up-the-ramp method instead of the time "
                        "domain", nints, td["min_integrations"])
            method = "up_the_ramp"
        g0, g1 = rampfit.usable_group_range(ramp.groupdq)
        if g1 - g0 == 1 and method == "both":
            # a flag on the only difference would leave no slope; the time domain replaces it instead
            log.warning("jump: one usable difference per ramp (NGROUPS = %d); method 'both' runs the "
                        "time-domain detector only", ngroups)
            method = "time_domain"
        elif g1 - g0 == 1 and method == "up_the_ramp":
            log.warning("jump: one usable difference per ramp (NGROUPS = %d); an up-the-ramp jump leaves "
                        "that integration without a slope (NaN, DO_NOT_USE) -- method 'time_domain' "
                        "replaces such a difference by its running median instead", ngroups)
        u = c["up_the_ramp"]
        if method == "up_the_ramp" and not u["flag_4_neighbors"] and plot_dir is None:
            # one pass over the data: jump detection fused with the ramp fit (identical results)
            ramp, rates = jumps.detect_jumps_and_fit(ramp, threshold=u["threshold"], read_noise=rn, gain=gain,
                                                     signal_per_group=s_ref, out={"gdq": gdq})
            log.info("Stage 1 done: rateints %s, %d NaN rates", rates.data.shape,
                     int(np.count_nonzero(~np.isfinite(rates.data))))
            return _convert_units(rates, rf["units"], gain)
        if method in ("up_the_ramp", "both"):
            ramp = jumps.detect_jumps_up_the_ramp(
                ramp, threshold=u["threshold"], flag_4_neighbors=u["flag_4_neighbors"],
                neighbor_threshold=u["neighbor_threshold"], read_noise=rn, gain=gain,
                signal_per_group=s_ref, out=gdq)
        if method in ("time_domain", "both"):
            ramp = jumps.detect_jumps_time_domain(ramp, threshold=td["threshold"], window=td["window"],
                                                  noise_floor=td["noise_floor"], read_noise=rn, gain=gain,
                                                  out=gdq)
        if plot_dir is not None:
            from ..plotting import detector as pd
            pd.plot_jump_map(jumps.jump_counts(ramp), nints=nints, path=Path(plot_dir) / "stage1_jumps.png")

    # 8. ramp fit
    rates = rampfit.fit_ramps(ramp, read_noise=rn, gain=gain, signal_per_group=s_ref)
    if plot_dir is not None:
        from ..plotting import detector as pd
        pd.plot_rate_image(rates, path=Path(plot_dir) / "stage1_rates.png")
        usable = (ramp.groupdq[0, :, probe[0], probe[1]] & np.uint32(DQ.DO_NOT_USE | DQ.SATURATED)) == 0
        pd.plot_ramp_residuals(ramp.data, rates.data, rampfit.group_time(ramp.meta), pixel=probe,
                               usable=usable, path=Path(plot_dir) / "stage1_ramp_fit.png")
    nbad = int(np.count_nonzero(~np.isfinite(rates.data)))
    log.info("Stage 1 done: rateints %s, %d NaN rates", rates.data.shape, nbad)
    return _convert_units(rates, rf["units"], gain)


def _usable_noise_map(ramp: RampData, value, what: str, default: float, unit: str, flag: DQ, keyword: str):
    """``value`` (scalar or ``(ny, nx)`` reference map) with non-finite or <= 0 pixels set to ``default``.

    Such pixels are counted in a WARNING, flagged ``flag`` in ``ramp.pixeldq`` (in place; the ramp fit
    carries PIXELDQ into every integration's DQ) and counted in ``ramp.meta[keyword]`` (a rateints
    header keyword).  JWST has no read-noise bit: a defaulted read noise makes the ERR unreliable, so
    it is flagged UNRELIABLE_ERROR; a defaulted gain NO_GAIN_VALUE (JWST DQ flag definitions).
    """
    if not isinstance(value, np.ndarray) or value.ndim == 0:
        return value
    bad = ~(np.isfinite(value) & (value > 0))
    n = int(np.count_nonzero(bad))
    ramp.meta[keyword] = n
    if n == 0:
        return value
    if bad.shape == ramp.pixeldq.shape:
        ramp.pixeldq[bad] |= np.uint32(flag)
    log.warning("%s reference: %d pixel(s) non-finite or <= 0 set to the default %g %s and flagged %s "
                "(header %s)", what, n, default, unit, flag.name, keyword)
    return np.where(bad, default, value)


def _convert_units(rates: RateData, units: str, gain) -> RateData:
    """DN/s -> ``units``: for e-/s, rates and ERR times the gain (e-/DN, scalar or ``(ny, nx)``
    map), variances times gain^2.  The gain used is recorded in ``meta['GAINUSED']`` (scalar: the
    value; map: its median)."""
    if units == "DN/s":
        return rates
    g = np.asarray(gain, np.float32)
    meta = dict(rates.meta)
    meta["BUNIT"] = units
    meta["GAINUSED"] = float(np.median(g))
    log.info("ramp_fit: rates converted DN/s -> %s with gain %s e-/DN", units,
             f"{float(g):.3f}" if g.ndim == 0 else f"map (median {float(np.median(g)):.3f})")
    return rates.replace(data=rates.data * g, err=rates.err * g, var_poisson=rates.var_poisson * (g * g),
                         var_rnoise=rates.var_rnoise * (g * g), meta=meta, units=units)


#: bytes of working set per ramp sample while :func:`run_stage1` runs on a chunk (float32 data, uint32
#: GROUPDQ and its jump-flag copy, the transient uint16/float32 read), and the fixed overhead of the
#: process; measured with ``python benchmarks/bench_stage1.py --memory`` (7.3 GB for 200 x 100 groups)
_BYTES_PER_SAMPLE = 12.0
_BASE_GB = 0.7
#: bytes per pixel and integration of a rateints (float32 SCI, ERR, VAR_POISSON, VAR_RNOISE; uint32 DQ)
_RATE_BYTES_PER_PIXEL = 20.0


def chunk_plan(nints: int, ngroups: int, config: dict | None = None,
               frame_shape=ref.SUBARRAY_SHAPE) -> list[tuple[int, int, int, int]]:
    """How :func:`run_stage1_segment` splits a file of ``nints`` integrations.

    Returns ``(read_start, read_stop, keep_start, keep_stop)`` per chunk (0-based integrations of the
    file): the chunk reads ``read_start:read_stop`` and keeps the rateints of ``keep_start:keep_stop``.
    With the time-domain jump method every chunk reads ``window // 2`` extra integrations on each side
    (halos) so the running median around a kept integration is the one the whole segment would give;
    the per-pixel noise (MAD) and the reference signal per group are then estimated per chunk.
    """
    cfg = validate(config, CONFIG_SCHEMA, "stage1")
    mem = cfg["memory"]
    j = cfg["jump"]
    halo = 0
    if not j["skip"] and j["method"] in ("time_domain", "both"):
        halo = j["time_domain"]["window"] // 2
    per_int = float(ngroups * frame_shape[0] * frame_shape[1]) * _BYTES_PER_SAMPLE
    if mem["chunk_integrations"] is not None:
        core = int(mem["chunk_integrations"])
    else:
        core = int((mem["limit_gb"] - _BASE_GB) * 1e9 // per_int) - 2 * halo
        if core < 1:
            log.warning("stage1.memory.limit_gb = %.2f GB cannot hold one integration of %d groups with "
                        "its halos; using chunks of %d integrations", mem["limit_gb"], ngroups,
                        max(2 * halo, 8))
            core = max(2 * halo, 8)
    if core >= nints:
        return [(0, nints, 0, nints)]
    nchunks = -(-nints // core)
    core = -(-nints // nchunks)                       # even chunk sizes
    plan = []
    for a in range(0, nints, core):
        b = min(a + core, nints)
        plan.append((max(a - halo, 0), min(b + halo, nints), a, b))
    return plan


def run_stage1_segment(path, config: dict | None = None, *, plot_dir=None, references: dict | None = None,
                       progress: bool = False) -> RateData:
    """Stage 1 on one uncal file, in chunks of integrations with bounded memory.

    The chunks come from :func:`chunk_plan` (``stage1.memory``); each is read with
    ``tsoreduce.io.read_uncal(path, integrations=...)``, run through :func:`run_stage1` in place and
    dropped; the kept integrations' rateints are joined in order.  Figures are made for the first chunk.

    Returns RateData (DN/s) ``(nints, 416, 72)`` of the whole file.  Raises what
    :func:`tsoreduce.io.read_uncal` and :func:`run_stage1` raise.
    """
    from .. import io as tio
    from astropy.io import fits
    import gc

    cfg = validate(config, CONFIG_SCHEMA, "stage1")
    try:
        hdr = fits.getheader(path, "SCI")
        nints, ngroups = int(hdr["NAXIS4"]), int(hdr["NAXIS3"])
    except (OSError, KeyError, IndexError):
        nints = ngroups = None                         # read_uncal raises the named error
    if nints is None:
        return run_stage1(tio.read_uncal(path), cfg, plot_dir=plot_dir, references=references, copy=False)
    plan = chunk_plan(nints, ngroups, cfg, frame_shape=(int(hdr["NAXIS2"]), int(hdr["NAXIS1"])))
    if len(plan) == 1:
        return run_stage1(tio.read_uncal(path), cfg, plot_dir=plot_dir, references=references, copy=False)
    log.info("Stage 1: %s in %d chunks of <= %d integrations (memory.limit_gb %.1f)", Path(path).name,
             len(plan), max(b - a for _, _, a, b in plan), cfg["memory"]["limit_gb"])
    parts = []
    iterator = plan
    if progress:
        from tqdm.auto import tqdm
        iterator = tqdm(plan, desc=f"Stage 1 {Path(path).name}", unit="chunk", leave=False)
    once = _OncePerMessage()
    log.addFilter(once)                               # every chunk repeats the same step warnings
    try:
        for k, (ra, rb, ka, kb) in enumerate(iterator):
            ramp = tio.read_uncal(path, integrations=(ra, rb))
            rates = run_stage1(ramp, cfg, plot_dir=plot_dir if k == 0 else None, references=references,
                               copy=False)
            del ramp
            parts.append(rates.select_integrations(slice(ka - ra, kb - ra)))
            del rates
            gc.collect()
    finally:
        log.removeFilter(once)
    return concatenate(parts, release=True)


class _OncePerMessage(logging.Filter):
    """Let each distinct WARNING (or worse) through once; INFO and DEBUG pass unchanged."""

    def __init__(self):
        super().__init__()
        self.seen = set()

    def filter(self, record):
        if record.levelno < logging.WARNING:
            return True
        msg = record.getMessage()
        if msg in self.seen:
            return False
        self.seen.add(msg)
        return True


def run_stage1_files(paths, config: dict | None = None, *, plot_dir=None, references: dict | None = None,
                     output_dir=None, overwrite: bool = False, provenance: dict | None = None) -> RateData:
    """Run Stage 1 file by file (each with :func:`run_stage1_segment`) and join the rateints in time order.

    Segments are ordered by INTSTART.  With ``output_dir`` each segment's rateints is written there
    (``*_rateints.fits``, via :func:`tsoreduce.io.write_rateints`).  The rateints of all segments stay in
    memory (20 bytes per pixel and integration: 1.07 GB for 1779 SLITLESSPRISM integrations), so
    ``stage1.memory.limit_gb`` bounds the whole call: each segment is chunked to fit the budget left
    beside the rateints already held, and the join releases the parts field by field.
    :func:`tsoreduce.pipeline.run_stage1_files` writes each segment and keeps nothing.

    Parameters
    ----------
    paths : iterable of uncal paths (or a glob string).
    config, plot_dir, references : as for :func:`run_stage1` (figures of the first segment only).
    output_dir, overwrite, provenance : per-segment rateints output (optional).

    Returns the concatenated RateData.  Raises ProductError subclasses for unreadable files.
    """
    import glob

    if isinstance(paths, (str, Path)):
        paths = sorted(glob.glob(str(paths))) if any(ch in str(paths) for ch in "*?[") else [paths]
    paths = [Path(p) for p in paths]
    if not paths:
        raise ConfigError("run_stage1_files: no input files")
    order = []
    from astropy.io import fits
    for p in paths:
        try:
            start = int(fits.getheader(p, 0).get("INTSTART", 1))
        except OSError:
            start = 1
        order.append((start, str(p)))
    cfg = validate(config, CONFIG_SCHEMA, "stage1")
    limit = cfg["memory"]["limit_gb"]
    parts = []
    held_gb = 0.0
    for k, (_, p) in enumerate(sorted(order)):
        log.info("Stage 1: segment %d/%d %s", k + 1, len(order), Path(p).name)
        seg_cfg = copy.deepcopy(cfg)
        # the rateints already held count against the budget (never below the schema's minimum)
        seg_cfg["memory"]["limit_gb"] = max(limit - held_gb, 0.5)
        rates = run_stage1_segment(p, seg_cfg, plot_dir=plot_dir if k == 0 else None, references=references)
        held_gb += _RATE_BYTES_PER_PIXEL * rates.data.size / 1e9
        if output_dir is not None:
            out = Path(output_dir)
            out.mkdir(parents=True, exist_ok=True)
            name = Path(p).name.replace("_uncal", "_rateints")
            if name == Path(p).name:
                name = Path(p).stem + "_rateints.fits"
            tio_write(out / name, rates, overwrite=overwrite, provenance=provenance)
        parts.append(rates)
        del rates
    return parts[0] if len(parts) == 1 else concatenate(parts, release=True)


def tio_write(path, rates, **kwargs):
    from .. import io as tio
    tio.write_rateints(path, rates, **kwargs)
