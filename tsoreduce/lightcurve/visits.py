"""Visits of a joint Stage 4 fit: one light curve each, with a label, a band and an orbital epoch.

A visit is one continuous observation of one transit (or eclipse): its own times, fluxes, errors and
regressors.  :func:`make_visits` turns light-curve tables (``tsoreduce.io.read_lightcurves``: ours,
Eureka!-style ECSV, SPARTA-style HDF5) into :class:`Visit` objects; :func:`assign_epochs` numbers
them against a linear ephemeris T(E) = T0 + E P and checks, before any fitting, that

* no two visits overlap in time or fall on the same epoch (:class:`~tsoreduce.errors.VisitOverlapError`),
* every visit's window contains the predicted mid-transit (mid-eclipse)
  (:class:`~tsoreduce.errors.NoTransitInWindowError`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from ..config_rules import per_band_problems
from ..config import Param
from ..errors import ConfigError, EmptyDataError, NoTransitInWindowError, ScopeError, VisitOverlapError
from .parameters import SCOPES  # noqa: F401  (re-exported)

__all__ = ["Visit", "make_visits", "assign_epochs", "JOINT_SCHEMA", "SCOPES", "per_band_problems",
           "check_per_band"]

#: ``stage4.joint``: used when ``input.lightcurves`` is a list (one light curve per visit)
JOINT_SCHEMA = {
    "orbit": Param("ephemeris", str, "joint fits: 'ephemeris' (T0 at the reference epoch + E x per, shared) or "
                   "'timing' (a free mid-time per visit, O-C against a fitted linear ephemeris)",
                   choices=("ephemeris", "timing")),
    "per_visit_fits": Param("lsq", str, "joint fits: also fit every visit alone for comparison (lsq, emcee or "
                            "none)", choices=("lsq", "emcee", "none")),
    "systematics": Param({}, dict, "joint fits: visit label -> overrides of stage4.systematics for that "
                         "visit, e.g. {v2: {ramp: single}}"),
}

log = logging.getLogger(__name__)


@dataclass
class Visit:
    """One visit's light curve (sorted in time, only the usable points).

    Parameters
    ----------
    label : str
        Unique name (``visit`` in the YAML; default ``v1``, ``v2`` ... in input order).
    band : str or None
        Wavelength-band label (needed by ``per_band`` parameters).
    time : numpy.ndarray, shape (nt,)
        BMJD_TDB (d).
    flux, err : numpy.ndarray, shape (nt,)
        Normalised flux and 1-sigma errors.
    regressors : dict
        Name -> ``(nt,)``.
    t_start : float
        Time origin of the settling ramp (first usable integration of the exposure, d).
    wavelength : tuple of float
        (centre, lower, upper) um, NaN when unknown.
    source : str
        File the visit was read from ('' for arrays).
    epoch : int
        Orbital epoch (set by :func:`assign_epochs`).
    n_dropped : int
        Integrations excluded (masked, non-finite, ``exclude_first``).
    """

    label: str
    band: str | None
    time: np.ndarray
    flux: np.ndarray
    err: np.ndarray
    regressors: dict = field(default_factory=dict)
    t_start: float = float("nan")
    wavelength: tuple = (np.nan, np.nan, np.nan)
    source: str = ""
    epoch: int = 0
    n_dropped: int = 0

    @property
    def window(self):
        return float(self.time[0]), float(self.time[-1])


def _white(lc):
    from .curves import _white_curve  # the single-visit white-curve rule (table white flux or channel mean)

    return _white_curve(lc)


def make_visits(entries, *, exclude_first: int = 0, regressors=None) -> list[Visit]:
    """Build :class:`Visit` objects from light-curve tables.

    Parameters
    ----------
    entries : list of dicts with key ``lc`` (a :class:`~tsoreduce.datamodel.LightCurves`) and optional
        ``visit`` (label) and ``band``; or ``(time, flux, err)`` arrays under keys ``time``, ``flux``,
        ``err`` (and optional ``regressors`` dict) instead of ``lc``.
    exclude_first : integrations dropped at the start of every visit.
    regressors : regressor names to keep (None: every regressor of each table).

    Returns
    -------
    list of Visit

    Raises
    ------
    ConfigError
        Duplicate labels, missing arrays or regressors.
    EmptyDataError
        Fewer than 10 usable points.
    """
    if not entries:
        raise ConfigError("input.lightcurves: a joint fit needs at least one light curve")
    visits, seen = [], set()
    for k, e in enumerate(entries):
        label = str(e.get("visit") or f"v{k + 1}")
        if label in seen:
            raise ConfigError(f"input.lightcurves[{k}].visit: label {label!r} is used twice")
        seen.add(label)
        band = e.get("band")
        band = None if band is None else str(band)
        lc = e.get("lc")
        if lc is not None:
            flux, err = _white(lc)
            time, mask = np.asarray(lc.time, float), np.asarray(lc.mask, bool)
            regs = {n: np.asarray(v, float) for n, v in lc.regressors.items()}
            src = str(lc.meta.get("_source_path", ""))
            from .curves import _white_band

            wl = _white_band(lc)
            if not np.isfinite(wl[0]) and lc.meta.get("wavelength") is not None:
                wl = (float(lc.meta["wavelength"]), np.nan, np.nan)
        else:
            try:
                time, flux, err = (np.asarray(e[n], float) for n in ("time", "flux", "err"))
            except KeyError as exc:
                raise ConfigError(f"visit {label}: give 'lc' or the arrays time, flux, err ({exc} missing)") \
                    from None
            mask = np.zeros(time.size, bool)
            regs = {n: np.asarray(v, float) for n, v in (e.get("regressors") or {}).items()}
            src, wl = "", (np.nan, np.nan, np.nan)
        names = sorted(regs) if regressors is None else list(regressors)
        missing = [n for n in names if n not in regs]
        if missing:
            raise ConfigError(f"stage4.systematics.decorrelate: regressor(s) {missing} not in visit {label} "
                              f"(available: {sorted(regs)})")
        ok = ~mask & np.isfinite(time) & np.isfinite(flux) & np.isfinite(err) & (err > 0)
        for n in names:
            ok &= np.isfinite(regs[n])
        order = np.argsort(time, kind="stable")
        # the ramp's origin: the first integration with usable data (a padding row with time 0, as in the
        # Eureka! MIRI table, would otherwise put the origin 60000 d early and kill the ramp term)
        usable = ok & (time > 0)
        if not usable.any():
            raise EmptyDataError(src or label, f"visit {label}: no integration with a usable time and flux")
        t_start = float(np.min(time[usable]))
        if np.any(time[~usable & np.isfinite(time)] < t_start):
            log.warning("visit %s: %d excluded integration(s) carry times before the first usable one (e.g. %.6f); "
                        "the ramp origin is the first usable time %.6f", label,
                        int(np.sum(time[~usable & np.isfinite(time)] < t_start)),
                        float(np.nanmin(time)), t_start)
        ok_sorted = ok[order]
        ok_sorted[:exclude_first] = False
        idx = order[ok_sorted]
        n_drop = int(time.size - idx.size)
        if idx.size < 10:
            raise EmptyDataError(src or label, f"visit {label}: only {idx.size} usable integrations")
        if n_drop:
            log.warning("visit %s: %d of %d integrations excluded (masked, non-finite or exclude_first)",
                        label, n_drop, time.size)
        if np.any(np.diff(order) < 0):
            log.info("visit %s: times were not in increasing order; sorted", label)
        visits.append(Visit(label, band, time[idx], flux[idx], err[idx], {n: regs[n][idx] for n in names},
                            t_start, wl, src, 0, n_drop))
    return visits


def assign_epochs(visits, t0: float, per: float, *, check_window: bool = True) -> np.ndarray:
    """Number each visit with the epoch E whose predicted mid-time t0 + E per is nearest its centre.

    Checks, before any fitting, that the visits do not overlap in time, fall on distinct epochs and
    (``check_window``) contain their predicted mid-time.  Sets ``visit.epoch``.

    Parameters
    ----------
    visits : list of Visit
        The visits.
    t0 : float
        Reference mid-time (BMJD_TDB d).
    per : float
        Period (d).
    check_window : bool
        Require each visit's window to contain its predicted mid-time.

    Returns
    -------
    numpy.ndarray of int
        The epochs, in visit order.

    Raises
    ------
    VisitOverlapError
        Overlapping visits or two on one epoch.
    NoTransitInWindowError
        A window without its predicted mid-time.
    ConfigError
        per <= 0.
    """
    if not per > 0:
        raise ConfigError(f"stage4.parameters.per: the period must be > 0 to assign epochs, got {per}")
    order = sorted(visits, key=lambda v: v.time[0])
    for a, b in zip(order[:-1], order[1:]):
        if b.time[0] <= a.time[-1]:
            raise VisitOverlapError(f"visits {a.label} [{a.time[0]:.5f}, {a.time[-1]:.5f}] and {b.label} "
                                    f"[{b.time[0]:.5f}, {b.time[-1]:.5f}] overlap in time (BMJD_TDB)")
    epochs = []
    for v in visits:
        mid = 0.5 * (v.time[0] + v.time[-1])
        e = int(np.round((mid - t0) / per))
        tc = t0 + e * per
        if check_window and not (v.time[0] <= tc <= v.time[-1]):
            raise NoTransitInWindowError(
                f"visit {v.label} ({v.source or 'arrays'}): window [{v.time[0]:.5f}, {v.time[-1]:.5f}] does not "
                f"contain the predicted mid-time {tc:.5f} of epoch {e} (t0 {t0:.6f} + E x per {per:.8f}); check "
                "t0/per or drop the visit")
        v.epoch = e
        epochs.append(e)
    dup = {e for e in epochs if epochs.count(e) > 1}
    if dup:
        labels = [v.label for v in visits if v.epoch in dup]
        raise VisitOverlapError(f"visits {labels} fall on the same epoch {sorted(dup)}; a joint fit takes one "
                                "light curve per transit (fit several bands of one visit as one visit per band)")
    return np.array(epochs, int)


def check_per_band(parameters: dict, visits, used=None) -> None:
    """Raise :class:`~tsoreduce.errors.ScopeError` for a ``per_band`` parameter with a visit without band.

    Parameters
    ----------
    parameters : dict
        ``stage4.parameters`` (name -> declaration).
    visits : list
        Visit dicts (``band``, ``visit``) or :class:`Visit` objects.
    used : list of set, optional
        Per visit, the parameter names its model has; a visit without band only matters for the
        parameters its model uses (default: every parameter).

    Raises
    ------
    ScopeError
        The first offending parameter (its name and the visits without band).
    """
    visits = list(visits or [])
    for name, decl in (parameters or {}).items():
        sel = [v for k, v in enumerate(visits) if used is None or name in used[k]]
        for key, msg in per_band_problems({name: decl}, sel):
            raise ScopeError(f"{key}: {msg}")
