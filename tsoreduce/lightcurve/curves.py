"""Preparing light curves for a Stage 4 fit: time order, the usable points, the white light curve.

Shared by the single-visit fits (:mod:`tsoreduce.lightcurve.stage`) and the multi-visit ones
(:mod:`tsoreduce.lightcurve.visits`), so both apply the same rules.  Imports nothing from either.
"""

from __future__ import annotations

import logging

import numpy as np

from ..datamodel import LightCurves
from ..errors import EmptyDataError

__all__ = ["ordered_lightcurves"]

log = logging.getLogger(__name__)


def ordered_lightcurves(lc: LightCurves) -> LightCurves:
    """Drop integrations with a NaN time and sort the others by time, each with a WARNING.

    Unsorted times would make the time reference (the first row) and the exposure-start systematics
    wrong and the plotted model zig-zag; a NaN time cannot be placed on the orbit.

    Parameters
    ----------
    lc : tsoreduce.datamodel.LightCurves
        Light curves, ``flux`` ``(nchan, nints)``, ``time`` ``(nints,)`` in BMJD_TDB.  Not modified.

    Returns
    -------
    tsoreduce.datamodel.LightCurves
        ``lc`` itself when nothing needs doing, else a copy with the integrations selected and ordered;
        the counts are recorded in ``meta['stage4_n_nan_time_dropped']`` / ``meta['stage4_sorted']``.
    """
    t = lc.time
    ok = np.isfinite(t)
    order = None
    meta = dict(lc.meta)
    if not ok.all():
        log.warning("stage4: %d of %d integrations have a non-finite time and are dropped", int((~ok).sum()),
                    t.size)
        meta["stage4_n_nan_time_dropped"] = int((~ok).sum())
    idx = np.flatnonzero(ok)
    if np.any(np.diff(t[idx]) < 0):
        order = idx[np.argsort(t[idx], kind="stable")]
        n_back = int(np.count_nonzero(np.diff(t[idx]) < 0))
        log.warning("stage4: times are not in increasing order (%d step(s) backwards); the %d integrations "
                    "are sorted by time", n_back, idx.size)
        meta["stage4_sorted"] = True
        idx = order
    if idx.size == t.size and order is None:
        return lc
    dup = int(np.count_nonzero(np.diff(t[idx]) == 0))
    if dup:
        log.warning("stage4: %d integration(s) share a time with the previous one", dup)
    return lc.replace(time=t[idx], flux=lc.flux[:, idx], err=lc.err[:, idx],
                      white_flux=None if lc.white_flux is None else lc.white_flux[idx],
                      white_err=None if lc.white_err is None else lc.white_err[idx], mask=lc.mask[idx],
                      regressors={k: v[idx] for k, v in lc.regressors.items()}, meta=meta)


def _time_reference(lc: LightCurves) -> float:
    """Exposure start for the time-dependent systematics (settling ramp, polynomial): the earliest time
    of an integration with usable data in the white light curve or any channel (finite flux, err > 0),
    masked or excluded ones included, so that a zero-filled placeholder row (time 0) cannot become the
    reference."""
    use = np.zeros(lc.nints, bool)
    curves = [(lc.white_flux, lc.white_err)] if lc.white_flux is not None else []
    curves += [(lc.flux[c], lc.err[c]) for c in range(lc.nchan)]
    for f, e in curves:
        if e is None:
            continue
        with np.errstate(invalid="ignore"):
            use |= np.isfinite(f) & np.isfinite(e) & (e > 0)
    use &= np.isfinite(lc.time)
    return float(lc.time[use].min()) if use.any() else float(np.nanmin(lc.time))


def _excluded_note(lc: LightCurves, ok, what):
    """Log how many integrations a fit leaves out: masked ones (INFO), unusable ones (WARNING)."""
    n_mask = int(np.count_nonzero(lc.mask))
    if n_mask:
        log.info("stage4: %s: %d masked integration(s) excluded (mask column of the light curves)", what, n_mask)
    n_other = int(np.count_nonzero(~ok & ~lc.mask))
    if n_other:
        log.warning("stage4: %s: %d integration(s) with non-finite flux, error or regressor (or err <= 0, or "
                    "exclude_first) left out of the fit", what, n_other)


def _valid_points(lc: LightCurves, flux, err, reg_names, exclude_first):
    """Boolean ``(nints,)``: unmasked, finite flux/err/time/regressors, err > 0, past ``exclude_first``."""
    ok = ~lc.mask & np.isfinite(flux) & np.isfinite(err) & (err > 0) & np.isfinite(lc.time)
    for n in reg_names:
        ok &= np.isfinite(lc.regressors[n])
    ok[:exclude_first] = False
    return ok


def _white_curve(lc: LightCurves):
    """(flux, err) of the white light curve: the table's, or the mean of the median-normalised channels."""
    if lc.white_flux is not None:
        err = lc.white_err if lc.white_err is not None else np.full(lc.nints, np.nan)
        return lc.white_flux, err
    if lc.nchan == 0:
        raise EmptyDataError(lc.meta.get("_source_path", "<LightCurves>"), "no white light curve and no channels")
    log.info("stage4: no white light curve in the table; using the mean of the %d normalised channels", lc.nchan)
    med = np.nanmedian(lc.flux, axis=1, keepdims=True)
    f = lc.flux / med
    e = lc.err / med
    n = np.sum(np.isfinite(f), axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.nanmean(f, axis=0), np.sqrt(np.nansum(e ** 2, axis=0)) / n


def _white_band(lc: LightCurves):
    """(centre, lower, upper) wavelength (um) of the white light curve; NaNs when unknown."""
    lo = lc.meta.get("white_wavelength_lower")
    hi = lc.meta.get("white_wavelength_upper")
    if lo is None and lc.nchan and np.isfinite(lc.wavelength_lower).any():
        lo, hi = float(np.nanmin(lc.wavelength_lower)), float(np.nanmax(lc.wavelength_upper))
    if lo is None:
        return (np.nan, np.nan, np.nan)
    return (0.5 * (lo + hi), float(lo), float(hi))
