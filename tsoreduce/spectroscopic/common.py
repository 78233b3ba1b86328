"""Helpers shared by the Stage 2 steps (and by Stage 3): deep frame, baseline selection, NaN medians,
integration blocks.

Memory: every helper here works on slabs (blocks of rows or of integrations) of the cube, so its
temporaries are bounded by :data:`BLOCK_BYTES` whatever the number of integrations.
"""

from __future__ import annotations

import logging

import numpy as np

from .._util import quiet_nan_warnings
from .. import instrument
from ..datamodel import DQ, RateData, dq_has
from ..errors import ConfigError, EmptyDataError

log = logging.getLogger(__name__)

__all__ = ["BAD_PIXEL_FLAGS", "BLOCK_BYTES", "baseline_index", "make_deep_frame", "deep_frame_of", "nanmedian",
           "integration_blocks", "row_blocks"]

#: DQ flags that make a pixel value unusable in a given integration
BAD_PIXEL_FLAGS = DQ.DO_NOT_USE | DQ.DEAD | DQ.HOT | DQ.SATURATED

#: size (bytes) of one float32 slab of the cube processed at a time; temporaries are a few of these
BLOCK_BYTES = 16 * 2**20


def integration_blocks(shape, block_bytes: int | None = None):
    """Slices of integrations whose float32 slab of ``shape[1:]`` holds about ``block_bytes``.

    Parameters
    ----------
    shape : tuple of int
        Cube shape ``(nints, nrows, ncols)``.
    block_bytes : int, optional
        Target size of one float32 slab, bytes (default :data:`BLOCK_BYTES`).

    Returns
    -------
    list of slice
        Consecutive slices covering ``range(nints)``.
    """
    block_bytes = BLOCK_BYTES if block_bytes is None else block_bytes
    per = 4 * int(np.prod(shape[1:]))
    step = max(1, int(block_bytes // max(per, 1)))
    return [slice(a, min(a + step, shape[0])) for a in range(0, shape[0], step)]


def row_blocks(shape, block_bytes: int | None = None):
    """Slices of detector rows whose float32 slab ``(nints, rows, ncols)`` holds about ``block_bytes``.

    Used by the steps that reduce along time pixel by pixel (medians over integrations), which are
    exact slab by slab.

    Parameters
    ----------
    shape : tuple of int
        Cube shape ``(nints, nrows, ncols)``.
    block_bytes : int, optional
        Target size of one float32 slab, bytes (default :data:`BLOCK_BYTES`).

    Returns
    -------
    list of slice
        Consecutive slices covering ``range(nrows)``.
    """
    block_bytes = BLOCK_BYTES if block_bytes is None else block_bytes
    per = 4 * shape[0] * int(np.prod(shape[2:]))
    step = max(1, int(block_bytes // max(per, 1)))
    return [slice(a, min(a + step, shape[1])) for a in range(0, shape[1], step)]


def check_rates(rates: RateData) -> None:
    """Check that ``rates`` is a RateData Stage 2 can work on.

    Parameters
    ----------
    rates : tsoreduce.datamodel.RateData
        The input rateints/calints.

    Raises
    ------
    TypeError
        If ``rates`` is not a RateData.
    tsoreduce.errors.EmptyDataError
        If SCI is non-finite everywhere.
    """
    if not isinstance(rates, RateData):
        raise TypeError(f"Stage 2 needs a RateData (rateints/calints), got {type(rates).__name__}")
    if rates.data.shape[1:] != instrument.SUBARRAY_SHAPE:
        log.warning("frame shape %s is not SLITLESSPRISM %s; continuing with generic geometry",
                    rates.data.shape[1:], instrument.SUBARRAY_SHAPE)
    if not any(np.isfinite(rates.data[b]).any() for b in integration_blocks(rates.data.shape)):
        raise EmptyDataError(rates.meta.get("_source_path", "<in-memory RateData>"),
                             "SCI is non-finite everywhere")


def baseline_index(nints: int, baseline_ints) -> np.ndarray:
    """Integer indices of the integrations selected by ``baseline_ints``.

    Parameters
    ----------
    nints : int
        Number of integrations.
    baseline_ints : list of int or None
        None -> all integrations; ``[start, stop)`` -> that range (negative values count from the
        end); ``[a, b, c, d]`` -> the union of ``[a, b)`` and ``[c, d)`` (e.g. pre- and post-transit
        baselines).  0-based.

    Returns
    -------
    numpy.ndarray
        int ``(n,)``, sorted indices.

    Raises
    ------
    tsoreduce.errors.ConfigError
        When the selection is empty or not ``[start, stop]`` pairs.
    """
    if baseline_ints is None:
        return np.arange(nints)
    b = list(baseline_ints)
    if len(b) % 2 or not b:
        raise ConfigError(f"baseline_ints must be [start, stop] pairs, got {baseline_ints!r}")
    keep = np.zeros(nints, bool)
    for s, e in zip(b[::2], b[1::2]):
        keep[slice(s, e)] = True
    if not keep.any():
        raise ConfigError(f"baseline_ints {baseline_ints!r} selects no integration of {nints}")
    return np.flatnonzero(keep)


def make_deep_frame(rates: RateData, baseline_ints=None) -> np.ndarray:
    """Deep (median) frame: NaN-median over the selected integrations of each pixel.

    Pixels flagged DO_NOT_USE/DEAD/HOT/SATURATED in an integration are ignored in that integration.
    Computed slab by slab of rows (memory bounded by :data:`BLOCK_BYTES`, identical result).
    Source: exoTEDRF ``make_baseline_stack_general`` (Radica 2024, see docs/sources.md).

    Parameters
    ----------
    rates : tsoreduce.datamodel.RateData
        ``(nints, nrows, ncols)`` rates, any units (kept).
    baseline_ints : list of int or None
        Integrations used, see :func:`baseline_index`.

    Returns
    -------
    numpy.ndarray
        float32 ``(nrows, ncols)``, the units of ``rates``; NaN where no integration is usable.
    """
    return deep_frame_of(rates.data, rates.dq, baseline_ints)


def deep_frame_of(data, dq, baseline_ints=None) -> np.ndarray:
    """:func:`make_deep_frame` of bare arrays.

    Parameters
    ----------
    data : numpy.ndarray
        ``(nints, nrows, ncols)`` values.
    dq : numpy.ndarray
        uint32, same shape, JWST flags.
    baseline_ints : list of int or None
        Integrations used, see :func:`baseline_index`.

    Returns
    -------
    numpy.ndarray
        float32 ``(nrows, ncols)``.
    """
    idx = baseline_index(data.shape[0], baseline_ints)
    deep = np.empty(data.shape[1:], np.float32)
    for rows in row_blocks((idx.size,) + data.shape[1:]):
        d = data[idx, rows]  # a copy (fancy index): ours to overwrite
        d[dq_has(dq[idx, rows], BAD_PIXEL_FLAGS)] = np.nan
        with np.errstate(all="ignore"), quiet_nan_warnings():
            deep[rows] = nanmedian(d, axis=0)
    return deep


def nanmedian(a, axis=0):
    """NaN-ignoring median along ``axis``, fast for mostly-finite data.

    numpy's ``nanmedian`` goes through masked arrays when the reduced axis is short (< 600), ~20x
    slower than ``median``; here the plain median is used for every lane without NaN and
    ``nanmedian`` only for the few lanes that have one.

    Parameters
    ----------
    a : array_like
        Any shape.
    axis : int
        Axis reduced.

    Returns
    -------
    numpy.ndarray
        ``a``'s shape without ``axis``; NaN for all-NaN lanes (no warning).
    """
    a = np.moveaxis(np.asarray(a), axis, 0)
    out = np.median(a, axis=0)
    lanes = np.isnan(a).any(axis=0)
    if np.any(lanes):
        with quiet_nan_warnings():
            out[lanes] = np.nanmedian(a[:, lanes], axis=0)
    return out
