"""Stage 1 runner: uncal ramps -> rateints (DN/s), in the MIRI calwebb_detector1 order.

Order (JWST pipeline documentation, calwebb_detector1 for MIRI): dq_init -> emi -> saturation ->
reset (RSCD group drop) -> linearity -> dark -> jump -> ramp_fit; one private function per step
(``_step_*``) calls the step's module.

:func:`run` obeys the stage contract (:mod:`tsoreduce.contract`): it makes one private working copy
of the ramp's data, GROUPDQ and PIXELDQ, every step works in place on that copy, and the input is
never modified.  Reading uncal files (in chunks of integrations bounded by ``stage1.memory``) is the
file-level runner's job: :func:`tsoreduce.pipeline.run_stage1_segment`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..config import Param, validate
from ..contract import StageResult
from ..datamodel import DQ, RampData, RateData
from ..errors import ConfigError, ReferenceFileError
from .. import reference as ref
from .. import instrument
from . import calibrate, emi as emimod, jumps, rampfit, reset
from .dq_init import dq_init as _dq_init, flag_saturation as _flag_saturation

log = logging.getLogger(__name__)

__all__ = ["CONFIG_SCHEMA", "run", "run_stage1", "resolve_references"]

CONFIG_SCHEMA = {
    "dq_init": {
        "skip": Param(False, bool, "skip DQ initialisation (first/last group flags, reference columns)"),
        "flag_first_group": Param(True, bool, "flag group 0 of every integration DO_NOT_USE"),
        "flag_last_group": Param(True, bool, "flag the last group of every integration DO_NOT_USE "
                                             "(MIRI last-frame pull-down)"),
    },
    "emi": {
        "skip": Param(False, bool, "skip the EMI (390 Hz) correction"),
        "frequencies": Param(["Hz390"], list, "EMI tones to fit, names of instrument.EMI_FREQUENCIES",
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
                                           "if given, else instrument.SATURATION_DN", nullable=True, min=0),
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
                                            "instrument.READ_NOISE_DN", nullable=True, min=0),
        "gain": Param(None, float, "gain (e-/DN) for the Poisson variance; null: gain reference or "
                                   "instrument.GAIN", nullable=True, min=0),
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
    """The reference arrays of Stage 1, by type.

    For each type (saturation, linearity, dark, gain, readnoise) the first found wins: ``references``
    (array or path), then the config's path, then the CRDS cache when ``use_crds_cache`` (never
    downloads); missing types are absent from the result.  A read-noise file is taken as the noise of a
    CDS pair (the CRDS/stcal convention, JWST pipeline documentation of the READNOISE reference) and
    divided by sqrt 2 per read unless ``readnoise_convention`` or its DESCRIP says per read.

    Parameters
    ----------
    cfg_refs : dict
        The validated ``stage1.references`` section.
    references : dict or None
        Arrays or paths by type, plus optional ``linearity_dq`` / ``dark_dq`` arrays.
    meta : dict
        The ramp's header keywords (subarray, detector) used to cut and find the references.

    Returns
    -------
    dict
        Arrays by type (``(nrows, ncols)`` maps; ``linearity`` ``(ncoeffs, nrows, ncols)``; ``dark``
        3-D or 4-D), with ``<type>_dq`` PIXELDQ arrays for the files read.

    Raises
    ------
    ReferenceFileError
        For an unknown reference type or a type without a loader; the loaders raise it for an
        unreadable file.
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


def _plots():
    """The Stage 1 figure module, imported only when figures are asked for (matplotlib is slow to load)."""
    from ..plotting import detector as plots
    return plots


def _prepare(config, references, meta) -> tuple[dict, dict]:
    """The validated ``stage1`` section and the resolved reference arrays (before any work)."""
    cfg = validate(config, CONFIG_SCHEMA, "stage1")
    if cfg["ramp_fit"]["skip"]:
        raise ConfigError("stage1.ramp_fit.skip: the ramp fit cannot be skipped (it makes the rateints)")
    return cfg, resolve_references(cfg["references"], references, meta)


def run(ramp: RampData, config: dict | None = None, *, plot_dir=None,
        references: dict | None = None) -> StageResult:
    """Run Stage 1 on one exposure or segment: uncal ramps -> rateints.

    The steps follow the MIRI order of the JWST pipeline's ``calwebb_detector1`` (jwst-pipeline
    documentation, "calwebb_detector1: Stage 1 Detector Processing"): DQ init, EMI, saturation,
    reset (RSCD group drop), linearity, dark, jump, ramp fit.  ``ramp`` is not modified: the steps
    work in place on one private copy of its data, GROUPDQ, PIXELDQ and meta.

    Parameters
    ----------
    ramp : tsoreduce.datamodel.RampData
        Raw ramps ``(nints, ngroups, nrows, ncols)`` in DN (uncal; SLITLESSPRISM 416 x 72).
    config : dict, optional
        The ``stage1`` section, validated against :data:`CONFIG_SCHEMA` (None: the defaults).
    plot_dir : str or pathlib.Path, optional
        Directory for the diagnostic figures (EMI periodogram and amplitudes, calibration steps of
        the brightest pixel, jump map, rate image, ramp residuals); None: no figures.
    references : dict, optional
        Reference arrays or file paths keyed ``saturation`` (DN), ``linearity`` (COEFFS
        ``(ncoeffs, nrows, ncols)``), ``dark`` (DN), ``gain`` (e-/DN), ``readnoise`` (DN per read
        when an array), plus optional ``linearity_dq`` / ``dark_dq``; they override the config's
        ``references`` paths (:func:`resolve_references`).

    Returns
    -------
    tsoreduce.contract.StageResult
        ``product``: RateData ``(nints, nrows, ncols)`` in DN/s (or e-/s with ``ramp_fit.units``)
        with ERR, DQ, VAR_POISSON, VAR_RNOISE, the ramp's ``int_times`` and ``meta`` plus the step
        status keywords (S_DQINIT, S_EMICOR, S_SATURA, S_RSCD, S_LINEAR, S_DARK, S_JUMP, S_RAMP).
        ``diagnostics``: ``emi`` (the EMI fit's frequencies, amplitudes, phases), ``jump_method``,
        ``n_jump_pixels`` (``(nints,)`` pixels with a JUMP_DET group), ``linearity_self``
        (self-calibration result, if used), ``n_nan_rates``, ``gain_defaulted`` /
        ``readnoise_defaulted`` pixel counts.
        ``figures``: the paths written into ``plot_dir``.

    Raises
    ------
    ConfigError
        For an invalid ``config`` (including ``ramp_fit.skip``).
    ReferenceFileError
        For unusable references, or ``linearity.method: reference`` without a linearity reference.
    """
    cfg, refs = _prepare(config, references, ramp.meta)
    work = ramp.replace(data=ramp.data.copy(), groupdq=ramp.groupdq.copy(), pixeldq=ramp.pixeldq.copy(),
                        meta=dict(ramp.meta))
    return _run_steps(work, cfg, refs, plot_dir)


#: the same object under the name of earlier versions
run_stage1 = run


def _run_in_place(ramp: RampData, config: dict | None = None, *, plot_dir=None,
                  references: dict | None = None) -> StageResult:
    """:func:`run` without the working copy: the steps modify ``ramp``'s arrays and meta.

    Only for a caller that read ``ramp`` itself and drops it afterwards (the chunked file reader
    :func:`tsoreduce.pipeline.run_stage1_segment`), which saves one chunk of memory.
    """
    cfg, refs = _prepare(config, references, ramp.meta)
    return _run_steps(ramp, cfg, refs, plot_dir)


def _run_steps(ramp: RampData, cfg: dict, refs: dict, plot_dir) -> StageResult:
    """The Stage 1 steps in order, in place on ``ramp`` (a working copy the caller owns)."""
    nints, ngroups = ramp.nints, ramp.ngroups
    log.info("Stage 1: %d integrations x %d groups x %d x %d", nints, ngroups, *ramp.data.shape[2:])
    diag: dict = {"nints": nints, "ngroups": ngroups}
    figs: list[Path] = []
    probe = raw_probe = None
    if plot_dir is not None:
        Path(plot_dir).mkdir(parents=True, exist_ok=True)
        probe = _probe_pixel(ramp)
        raw_probe = np.array(ramp.data[0, :, probe[0], probe[1]], float)
    gdq = ramp.groupdq
    ramp = _step_dq_init(ramp, cfg["dq_init"], gdq)
    ramp = _step_emi(ramp, cfg, plot_dir, diag, figs)
    ramp = _step_saturation(ramp, cfg["saturation"], refs, gdq)
    ramp = _step_reset(ramp, cfg["reset"], gdq)
    ramp = _step_linearity(ramp, cfg["linearity"], refs, diag)
    ramp = _step_dark(ramp, cfg["dark"], refs)
    if probe is not None:
        figs.append(_plot_calibration(ramp, raw_probe, probe, plot_dir))
    rn, gain = _noise_model(ramp, cfg["ramp_fit"], refs, diag)
    rates = _jumps_and_ramp_fit(ramp, cfg, rn, gain, plot_dir, diag, figs)
    if plot_dir is not None:
        figs.extend(_plot_ramp_fit(ramp, rates, probe, plot_dir))
    if diag["jump_method"] != "skipped":
        # from the rateints DQ (a small array), not GROUPDQ: no pass over the ramps
        diag["n_jump_pixels"] = np.count_nonzero(rates.dq & np.uint32(DQ.JUMP_DET), axis=(1, 2))
    diag["n_nan_rates"] = int(np.count_nonzero(~np.isfinite(rates.data)))
    log.info("Stage 1 done: rateints %s, %d NaN rates", rates.data.shape, diag["n_nan_rates"])
    return StageResult(_convert_units(rates, cfg["ramp_fit"]["units"], gain), diag, figs)


def _probe_pixel(ramp: RampData) -> tuple[int, int]:
    """The brightest science pixel of integration 0: the figures show what each step does to it."""
    span = np.asarray(ramp.data[0, -1], float) - np.asarray(ramp.data[0, 0], float)
    span[:, :instrument.N_REFERENCE_COLUMNS] = -np.inf
    return np.unravel_index(int(np.argmax(np.where(np.isfinite(span), span, -np.inf))), span.shape)


def _step_dq_init(ramp: RampData, c: dict, gdq) -> RampData:
    if c["skip"]:
        log.info("dq_init: skipped by configuration")
        return ramp
    return _dq_init(ramp, flag_first_group=c["flag_first_group"], flag_last_group=c["flag_last_group"],
                    out=gdq)


def _step_emi(ramp: RampData, cfg: dict, plot_dir, diag: dict, figs: list) -> RampData:
    c = cfg["emi"]
    if c["skip"]:
        log.info("emi: skipped by configuration")
        return ramp
    first_fit = None
    if c["skip_reset_groups"] and not cfg["reset"]["skip"]:
        first_fit = cfg["reset"]["n_groups"]
    before = ramp.select_integrations(slice(0, 1)).copy() if plot_dir is not None else None
    ramp, emi_diag = emimod.correct_emi(ramp, frequencies=c["frequencies"], harmonics=c["harmonics"],
                                        fit_per=c["fit_per"], trace_halfwidth=c["trace_halfwidth"],
                                        first_fit_group=first_fit, robust=c["robust"], inplace=True)
    diag["emi"] = emi_diag
    if plot_dir is not None and "skipped" not in emi_diag:
        pd = _plots()
        fb, pb = emimod.emi_periodogram(before)
        _, pa = emimod.emi_periodogram(ramp.select_integrations(slice(0, 1)))
        figs.append(Path(plot_dir) / "stage1_emi.png")
        pd.plot_emi_periodogram(fb, pb, pa, emi_diag.get("frequencies"), path=figs[-1])
        figs.append(Path(plot_dir) / "stage1_emi_amplitudes.png")
        pd.plot_emi_amplitudes(emi_diag, path=figs[-1])
    return ramp


def _step_saturation(ramp: RampData, c: dict, refs: dict, gdq) -> RampData:
    if c["skip"]:
        log.info("saturation: skipped by configuration")
        return ramp
    thr = c["threshold_dn"]
    if thr is None:
        thr = refs.get("saturation")
        if thr is None:
            log.info("saturation: no reference; using the default threshold %.0f DN", instrument.SATURATION_DN)
    return _flag_saturation(ramp, saturation=thr, n_pix_grow=c["n_pix_grow"], out=gdq)


def _step_reset(ramp: RampData, c: dict, gdq) -> RampData:
    if c["skip"]:
        log.info("reset: skipped by configuration")
        return ramp
    return reset.flag_reset_groups(ramp, n_groups=c["n_groups"], out=gdq)


def _step_linearity(ramp: RampData, c: dict, refs: dict, diag: dict) -> RampData:
    method = c["method"]
    if c["skip"] or method == "none":
        log.warning("linearity: NOT corrected (%s); slopes of bright pixels carry the detector "
                    "non-linearity", "skipped by configuration" if c["skip"] else "method 'none'")
        return ramp
    coeffs = refs.get("linearity")
    if method == "reference" and coeffs is None:
        raise ReferenceFileError("stage1.linearity.method is 'reference' but no linearity reference "
                                 "was given (references.linearity) or found in the CRDS cache")
    if coeffs is not None and method in ("auto", "reference"):
        return calibrate.apply_linearity(ramp, coeffs, coeff_dq=refs.get("linearity_dq"), inplace=True)
    if method == "auto":
        log.warning("linearity: no linearity reference given or found -- NO linearity correction "
                    "(identity). Give references.linearity, or method 'self' for the experimental "
                    "self-calibration; the non-linearity is mostly a multiplicative slope error that "
                    "cancels in relative light curves")
        return ramp
    coeffs, info = calibrate.self_calibrate_linearity(ramp, n_bright=c["n_bright"])
    diag["linearity_self"] = info
    if coeffs is None:
        log.warning("linearity: no reference file and the self-calibration is not usable (%s): "
                    "NO linearity correction applied", info["reason"])
        return ramp
    log.warning("linearity: no reference file -- SELF-CALIBRATED correction from the curvature "
                "of %d bright ramps: beta = %.3g +/- %.2g /DN (corrected = raw + beta raw^2 + "
                "2 beta^2 raw^3)", info["n_pixels"], info["beta"], info["beta_err"])
    ramp = calibrate.apply_linearity(ramp, coeffs, inplace=True)
    ramp.meta["LINSELF"] = float(info["beta"])
    return ramp


def _step_dark(ramp: RampData, c: dict, refs: dict) -> RampData:
    if c["skip"]:
        log.info("dark: skipped by configuration")
        return ramp
    if refs.get("dark") is None:
        log.info("dark: no dark reference given or found; skipped (the dark current is removed with the "
                 "background in Stage 2)")
        return ramp
    return calibrate.subtract_dark(ramp, refs["dark"], dark_dq=refs.get("dark_dq"), inplace=True)


def _plot_calibration(ramp: RampData, raw_probe, probe, plot_dir) -> Path:
    path = Path(plot_dir) / "stage1_calibration.png"
    sat_groups = np.count_nonzero(ramp.groupdq[0] & np.uint32(DQ.SATURATED), axis=0)
    _plots().plot_calibration_steps(raw_probe, ramp.data[0, :, probe[0], probe[1]],
                                    ramp.groupdq[0, :, probe[0], probe[1]], sat_groups, pixel=probe,
                                    path=path)
    return path


def _noise_model(ramp: RampData, rf: dict, refs: dict, diag: dict):
    """Read noise (DN per read) and gain (e-/DN), scalars or ``(nrows, ncols)`` maps, shared by the jump
    detection and the ramp fit."""
    rn = rf["read_noise_dn"] if rf["read_noise_dn"] is not None else refs.get("readnoise", instrument.READ_NOISE_DN)
    gain = rf["gain"] if rf["gain"] is not None else refs.get("gain", instrument.GAIN)
    gain = _usable_noise_map(ramp, gain, "gain", instrument.GAIN, "e-/DN", DQ.NO_GAIN_VALUE, "NGAINDEF")
    rn = _usable_noise_map(ramp, rn, "read noise", instrument.READ_NOISE_DN, "DN", DQ.UNRELIABLE_ERROR, "NRNDEF")
    diag["gain_defaulted"] = int(ramp.meta.get("NGAINDEF", 0))
    diag["readnoise_defaulted"] = int(ramp.meta.get("NRNDEF", 0))
    return rn, gain


def _jump_method(ramp: RampData, c: dict) -> str:
    """The jump method that can run on this ramp (a WARNING when it differs from the configured one)."""
    method = c["method"]
    td = c["time_domain"]
    if method in ("time_domain", "both") and ramp.nints < td["min_integrations"]:
        log.warning("jump: %d integrations < %d; using the up-the-ramp method instead of the time "
                    "domain", ramp.nints, td["min_integrations"])
        method = "up_the_ramp"
    g0, g1 = rampfit.usable_group_range(ramp.groupdq)
    if g1 - g0 == 1 and method == "both":
        # a flag on the only difference would leave no slope; the time domain replaces it instead
        log.warning("jump: one usable difference per ramp (NGROUPS = %d); method 'both' runs the "
                    "time-domain detector only", ramp.ngroups)
        method = "time_domain"
    elif g1 - g0 == 1 and method == "up_the_ramp":
        log.warning("jump: one usable difference per ramp (NGROUPS = %d); an up-the-ramp jump leaves "
                    "that integration without a slope (NaN, DO_NOT_USE) -- method 'time_domain' "
                    "replaces such a difference by its running median instead", ramp.ngroups)
    return method


def _jumps_and_ramp_fit(ramp: RampData, cfg: dict, rn, gain, plot_dir, diag: dict, figs: list) -> RateData:
    """Steps 7-8: jump flags in GROUPDQ (in place), then the GLS ramp fit (DN/s)."""
    c = cfg["jump"]
    s_ref = rampfit.poisson_signal_per_group(ramp)
    if c["skip"]:
        log.info("jump: skipped by configuration")
        diag["jump_method"] = "skipped"
        return rampfit.fit_ramps(ramp, read_noise=rn, gain=gain, signal_per_group=s_ref)
    method = diag["jump_method"] = _jump_method(ramp, c)
    u, td = c["up_the_ramp"], c["time_domain"]
    gdq = ramp.groupdq
    if method == "up_the_ramp" and not u["flag_4_neighbors"] and plot_dir is None:
        # one pass over the data: jump detection fused with the ramp fit (identical results)
        ramp, rates = jumps.detect_jumps_and_fit(ramp, threshold=u["threshold"], read_noise=rn, gain=gain,
                                                 signal_per_group=s_ref, out={"gdq": gdq})
        return rates
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
        figs.append(Path(plot_dir) / "stage1_jumps.png")
        _plots().plot_jump_map(jumps.jump_counts(ramp), nints=ramp.nints, path=figs[-1])
    return rampfit.fit_ramps(ramp, read_noise=rn, gain=gain, signal_per_group=s_ref)


def _plot_ramp_fit(ramp: RampData, rates: RateData, probe, plot_dir) -> list[Path]:
    pd = _plots()
    paths = [Path(plot_dir) / "stage1_rates.png", Path(plot_dir) / "stage1_ramp_fit.png"]
    pd.plot_rate_image(rates, path=paths[0])
    usable = (ramp.groupdq[0, :, probe[0], probe[1]] & np.uint32(DQ.DO_NOT_USE | DQ.SATURATED)) == 0
    pd.plot_ramp_residuals(ramp.data, rates.data, rampfit.group_time(ramp.meta), pixel=probe,
                           usable=usable, path=paths[1])
    return paths


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
