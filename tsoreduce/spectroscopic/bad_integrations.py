"""Integrations that are mostly bad data (dropped or corrupted frames): found before the Stage 2
steps, excluded from them, and put back at the end as SCI/ERR NaN with every pixel DO_NOT_USE.

Excluded, not repaired: spatial replacement would fill such a frame with the neighbours' values (for an
all-NaN frame, the deep frame itself) and the light curve would show a normal-looking point.
"""

from __future__ import annotations

import logging

import numpy as np
from .. import instrument
from ..datamodel import DQ, RateData, dq_has
from ..errors import ConfigError, EmptyDataError
from .common import baseline_index, integration_blocks

log = logging.getLogger(__name__)

__all__ = ["find_bad_integrations", "baseline_among", "restore_bad_integrations"]


def find_bad_integrations(rates: RateData, max_bad_fraction: float = 0.5) -> np.ndarray:
    """Integrations that are mostly bad data.

    An integration is bad when more than ``max_bad_fraction`` of its science pixels (columns from 4
    on: the reference columns carry no light) are non-finite or flagged DO_NOT_USE.  Each bad
    integration is logged at WARNING with its fraction.

    Parameters
    ----------
    rates : tsoreduce.datamodel.RateData
        ``(nints, nrows, ncols)`` rates; not modified.
    max_bad_fraction : float
        Threshold on the fraction of bad science pixels, 0-1.

    Returns
    -------
    numpy.ndarray
        bool ``(nints,)``, True for a bad integration.

    Raises
    ------
    tsoreduce.errors.EmptyDataError
        When every integration is bad.
    """
    c = instrument.N_REFERENCE_COLUMNS
    frac = np.empty(rates.nints)
    for blk in integration_blocks(rates.data.shape):
        bad = ~np.isfinite(rates.data[blk, :, c:]) | dq_has(rates.dq[blk, :, c:], DQ.DO_NOT_USE)
        frac[blk] = bad.reshape(bad.shape[0], -1).mean(axis=1)
    out = frac > max_bad_fraction
    if out.any():
        idx = np.flatnonzero(out)
        start = int(rates.meta.get("INTSTART", 1) or 1)
        log.warning("bad integrations: %d of %d have more than %.0f %% of their science pixels non-finite or "
                    "DO_NOT_USE and are excluded (SCI NaN, DQ DO_NOT_USE; header NBADINT): integration(s) %s "
                    "(bad fractions %s)", idx.size, rates.nints, 100 * max_bad_fraction,
                    ", ".join(str(start + k) for k in idx[:20]) + (" ..." if idx.size > 20 else ""),
                    ", ".join(f"{frac[k]:.2f}" for k in idx[:20]))
    if out.all():
        raise EmptyDataError(rates.meta.get("_source_path", "<in-memory RateData>"),
                             f"every integration has more than {100 * max_bad_fraction:.0f} % bad pixels")
    return out


def baseline_among(baseline_ints, bad_ints):
    """``baseline_ints`` (``[start, stop)`` pairs over all integrations) re-expressed over the good ones.

    Parameters
    ----------
    baseline_ints : list of int or None
        See :func:`tsoreduce.spectroscopic.baseline_index`.
    bad_ints : numpy.ndarray
        bool ``(nints,)`` from :func:`find_bad_integrations`.

    Returns
    -------
    list of int or None
        ``[start, stop, ...]`` pairs indexing the good integrations (None for all).

    Raises
    ------
    tsoreduce.errors.ConfigError
        When the baseline holds only bad integrations.
    """
    if baseline_ints is None:
        return None
    keep = np.zeros(bad_ints.size, bool)
    keep[baseline_index(bad_ints.size, baseline_ints)] = True
    k = keep[~bad_ints]
    if not k.any():
        raise ConfigError(f"deep_frame.baseline_ints {baseline_ints!r} selects only bad integrations")
    edges = np.flatnonzero(np.diff(np.r_[0, k.astype(np.int8), 0]))
    return [int(x) for x in edges]


def _expand(a, good, n, fill, axis=0):
    """``a`` (good integrations along ``axis``) placed among ``n``, the others ``fill``."""
    if a is None:
        return None
    shape = list(a.shape)
    shape[axis] = n
    b = np.full(shape, fill, a.dtype)
    idx = [slice(None)] * a.ndim
    idx[axis] = good
    b[tuple(idx)] = a
    return b


def _with_nan(a, bad_ints):
    if a is None:
        return None
    b = a.copy()
    b[bad_ints] = np.nan
    return b


def restore_bad_integrations(out: RateData, full: RateData, bad_ints, diag: dict):
    """The processed good integrations back in their places among all of ``full``'s.

    Parameters
    ----------
    out : tsoreduce.datamodel.RateData
        The Stage 2 product of the good integrations only.
    full : tsoreduce.datamodel.RateData
        The input of the steps, all integrations (not modified).
    bad_ints : numpy.ndarray
        bool ``(nints,)``.
    diag : dict
        Stage 2 diagnostics of ``out``; per-integration entries are expanded alike (NaN).

    Returns
    -------
    calints : tsoreduce.datamodel.RateData
        All integrations: the bad ones SCI/ERR/variances NaN with every pixel DO_NOT_USE; the good
        ones' ERR and variances are ``full``'s (no step changes them).
    diagnostics : dict
        ``diag`` with ``background`` and the PCA time series expanded and ``bad_integrations``.
    """
    n = bad_ints.size
    good = np.flatnonzero(~bad_ints)
    dq = _expand(out.dq, good, n, 0)
    dq[bad_ints] = full.dq[bad_ints] | np.uint32(DQ.DO_NOT_USE)
    res = full.replace(data=_expand(out.data, good, n, np.nan), err=_with_nan(full.err, bad_ints), dq=dq,
                       var_poisson=_with_nan(full.var_poisson, bad_ints),
                       var_rnoise=_with_nan(full.var_rnoise, bad_ints),
                       wavelength=out.wavelength, meta=out.meta)
    diag = dict(diag)
    if diag.get("background") is not None:
        diag["background"] = _expand(np.asarray(diag["background"]), good, n, np.nan)
    if diag.get("pca") is not None and "timeseries" in diag["pca"]:
        diag["pca"]["timeseries"] = _expand(diag["pca"]["timeseries"], good, n, np.nan, axis=1)
    diag["bad_integrations"] = bad_ints
    return res, diag
