"""Bounded-memory iteration over a calints cube, shared by the Stage 3 steps (private).

Stage 3 never makes a working copy of the whole ``(nints, nrows, ncols)`` cube: quantities per
integration are computed over blocks of :data:`BLOCK` integrations, quantities per pixel (medians over
the integrations) over chunks of rows holding at most :data:`CHUNK_BYTES` of float32 values.  A full
1779-integration MIRI LRS exposure is 213 MB per float32 cube; a block is 31 MB.
"""

from __future__ import annotations

import numpy as np

from ..contract import progress_enabled
from ..datamodel import DQ
from ..spectroscopic import BAD_PIXEL_FLAGS
from ..spectroscopic.common import row_blocks

BLOCK = 256  # integrations per block in the extraction loops
CHUNK_BYTES = 32 * 2**20  # float32 bytes of one row chunk of a per-pixel median over integrations


def blocks(nints, what):
    """Slices of at most :data:`BLOCK` integrations, with a tqdm bar when progress bars are on."""
    starts = range(0, nints, BLOCK)
    if progress_enabled() and nints > BLOCK:
        from tqdm.auto import tqdm
        starts = tqdm(starts, desc=f"Stage 3 {what}", unit=f"x{BLOCK} integrations", leave=False)
    return [slice(i0, min(i0 + BLOCK, nints)) for i0 in starts]


def row_chunks(shape):
    """Row slices of a ``(nints, nrows, ncols)`` cube, each at most :data:`CHUNK_BYTES` of float32
    (Stage 2's :func:`~tsoreduce.spectroscopic.common.row_blocks` with Stage 3's chunk size)."""
    return row_blocks(shape, CHUNK_BYTES)


def estimated_mask(data, dq) -> np.ndarray:
    """Pixels whose flux Stage 2 estimated.

    Parameters
    ----------
    data : numpy.ndarray
        Pixel values, any shape and units.
    dq : numpy.ndarray
        JWST DQ flags, same shape.

    Returns
    -------
    numpy.ndarray
        Bool, same shape: FLUX_ESTIMATED set, DO_NOT_USE not set, value finite.
    """
    return (np.isfinite(data) & ((dq & np.uint32(DQ.FLUX_ESTIMATED)) != 0)
            & ((dq & np.uint32(DQ.DO_NOT_USE)) == 0))


def clean(data, dq):
    """Working copy of a block for extraction: ``(d, bad, est)``, each the shape of ``data``.

    ``est``: pixels whose flux Stage 2 estimated (:func:`estimated_mask`) -- kept with their estimate
    even when a bad-pixel bit (HOT, DEAD, ...) is also set, so a repaired pixel stays repaired;
    ``bad``: non-finite or flagged DO_NOT_USE/DEAD/HOT/SATURATED and not estimated -- set to 0 in the
    float64 ``d``.
    """
    d = np.asarray(data, np.float64)
    est = estimated_mask(data, dq)
    bad = (~np.isfinite(d) | ((dq & np.uint32(int(BAD_PIXEL_FLAGS))) != 0)) & ~est
    return np.where(bad, 0.0, d), bad, est


def element_dq(nbad, nest):
    """x1dints DQ of each element: DO_NOT_USE when an unrepaired bad pixel entered it, FLUX_ESTIMATED
    when it contains the flux of a pixel estimated by Stage 2 (used, not excluded)."""
    dq = np.where(nbad > 0, np.uint32(DQ.DO_NOT_USE), np.uint32(0))
    return (dq | np.where(nest > 0, np.uint32(DQ.FLUX_ESTIMATED), np.uint32(0))).astype(np.uint32)
