"""Stage 2 step 5: PCA of the (integration x pixel) matrix with scikit-learn; eigenimages,
eigen-time-series, optional removal of chosen components.

Sources (docs/sources.md): exoTEDRF ``pcareconstructionstep`` (Radica 2024); Coulombe et al. 2023 for
the use of PCA on JWST time-series stability; the conventions of scikit-learn ``PCA`` (centring,
component signs, explained variance ratio).

Memory: the PCA is computed exactly from the ``(nints, nints)`` Gram matrix of the centred
(integration x pixel) matrix, accumulated slab by slab of rows, so that matrix (P ~ 20 000 pixels, as
large as the cube in float64; scikit-learn needs it twice) is never held; the removed model is built
and subtracted slab by slab of rows as well.
"""

from __future__ import annotations

import logging

import numpy as np

from .._util import quiet_nan_warnings
from .. import instrument
from ..datamodel import RateData
from ..errors import ConfigError
from .common import nanmedian

log = logging.getLogger(__name__)

__all__ = ["PCAResult", "pca_reconstruct", "pca_reconstruct_inplace"]

#: pixels (columns of the PCA matrix) processed at a time when filling NaN and removing components
_PIXEL_BLOCK = 2048


class PCAResult(dict):
    """Results of :func:`pca_reconstruct` (a dict with attribute access).

    Keys: ``eigenimages`` float32 ``(K, nrows, ncols)`` (NaN outside the PCA columns),
    ``timeseries`` float64 ``(K, nints)`` (PC scores, data units), ``explained_variance_ratio``
    ``(K,)``, ``removed`` list of 1-based components subtracted, ``columns`` (start, stop),
    ``removed_variance_map`` float32 ``(nrows, ncols)`` (variance over time of what was subtracted).
    """

    __getattr__ = dict.__getitem__


def pca_reconstruct(rates: RateData, *, n_components=10, remove_components=(), columns=(12, 61)):
    """PCA of the integration x pixel matrix and removal of chosen components (exoTEDRF, Radica 2024).

    With X the ``(nints, P)`` matrix of the pixels in ``columns`` (NaN filled with the pixel's time
    median), each pixel is centred over time and X - mu = U S V^T is computed exactly (truncated to K
    components; through the ``(nints, nints)`` Gram matrix, with scikit-learn's sign convention): rows of V^T are the **eigenimages**, columns of U S the **eigen-time-series**
    (component scores).  Removing component k subtracts exactly ``(U S)_k V^T_k`` -- never the mean,
    so the data level is kept; no re-fit (the exoTEDRF k=1 mean edge case is avoided).  PC1 of a
    transit observation is usually the transit itself: only remove components you have identified as
    systematics (e.g. by their correlation with trace position).

    Parameters
    ----------
    rates : tsoreduce.datamodel.RateData
        ``(nints, nrows, ncols)`` rates, >= 2 integrations; not modified.
    n_components : int
        Components computed (at most ``nints - 1``).
    remove_components : sequence of int
        1-based components subtracted from the data.
    columns : tuple of int
        ``[start, stop)`` columns used (reference columns 0-3 always excluded).

    Returns
    -------
    calints : tsoreduce.datamodel.RateData
        ``rates`` itself when nothing is removed, else with a new SCI.
    pca : PCAResult
        Eigenimages, scores, explained variance, what was removed.

    Raises
    ------
    tsoreduce.errors.ConfigError
        A component number > the components computed, fewer than 2 columns or integrations.
    """
    data = rates.data.copy() if remove_components else rates.data
    res = pca_reconstruct_inplace(data, n_components=n_components, remove_components=remove_components,
                                  columns=columns)
    return (rates.replace(data=data) if res["removed"] else rates), res


def pca_reconstruct_inplace(data, *, n_components=10, remove_components=(), columns=(12, 61)) -> PCAResult:
    """:func:`pca_reconstruct` on an array the caller owns (components removed in place).

    Parameters
    ----------
    data : numpy.ndarray
        float32 ``(nints, nrows, ncols)``; modified only when ``remove_components`` is not empty.
    n_components, remove_components, columns
        As :func:`pca_reconstruct`.

    Returns
    -------
    PCAResult
        As :func:`pca_reconstruct`.

    Raises
    ------
    tsoreduce.errors.ConfigError
        A component number > the components computed, fewer than 2 columns or integrations.
    """
    nints, nrows, ncols = data.shape
    c0 = max(int(columns[0]), instrument.N_REFERENCE_COLUMNS)
    c1 = min(int(columns[1]), ncols)
    if c1 - c0 < 2:
        raise ConfigError(f"stage2.pca.columns {columns!r} leave fewer than 2 columns")
    k = int(min(n_components, nints - 1, nrows * (c1 - c0)))
    if k < 1:
        raise ConfigError(f"PCA needs at least 2 integrations (got {nints})")
    remove = sorted({int(r) for r in remove_components})
    if remove and max(remove) > k:
        raise ConfigError(f"stage2.pca.remove_components {remove} exceeds the {k} components computed")
    scores, comps, evr = _sample_space_pca(data, c0, c1, k)
    eig = np.full((k, nrows, ncols), np.nan, np.float32)
    eig[:, :, c0:c1] = comps.reshape(k, nrows, c1 - c0)
    removed_var = np.zeros((nrows, ncols), np.float32)
    if remove:
        _remove_components(data, scores, comps, np.asarray(remove) - 1, c0, c1, removed_var)
        log.info("PCA: removed components %s (%.3g %% of the variance)", remove,
                 100 * evr[np.asarray(remove) - 1].sum())
    else:
        log.info("PCA: %d components computed, none removed (explained variance ratio of PC1-3: %s)",
                 k, np.array2string(evr[:3], precision=3))
    return PCAResult(eigenimages=eig, timeseries=scores.T.copy(),
                     explained_variance_ratio=evr,
                     removed=remove, columns=(c0, c1), removed_variance_map=removed_var)


def _pixel_blocks(data, c0, c1):
    """``(rows, x)`` slab by slab of rows: ``x`` the float64 ``(nints, pixels)`` matrix of those rows
    and columns ``[c0, c1)``, NaN -> the pixel's median over time (0 where all NaN), centred on each
    pixel's mean over time."""
    w = c1 - c0
    step = max(1, _PIXEL_BLOCK // w)
    for r0 in range(0, data.shape[1], step):
        rows = slice(r0, min(r0 + step, data.shape[1]))
        x = data[:, rows, c0:c1].astype(np.float64).reshape(data.shape[0], -1)
        bad = ~np.isfinite(x)
        if bad.any():
            with quiet_nan_warnings():
                med = nanmedian(x, axis=0)
            x[bad] = np.broadcast_to(np.where(np.isfinite(med), med, 0.0), x.shape)[bad]
        x -= x.mean(axis=0)
        yield rows, x


def _sample_space_pca(data, c0, c1, k):
    """Exact PCA of the centred ``(nints, P)`` matrix X through its ``(nints, nints)`` Gram matrix.

    X X^T = U S^2 U^T (``numpy.linalg.eigh``), accumulated slab by slab of rows, so X itself is never
    held (P ~ 20 000 >> nints); then V^T = S^-1 U^T X in a second pass.  Signs follow scikit-learn's
    ``svd_flip`` convention (the largest-magnitude entry of each eigenimage positive) and the explained
    variance ratio is S^2 / sum of the pixel variances (ddof 1), as ``sklearn.decomposition.PCA``.
    Returns ``(scores (nints, K) = U S, components (K, P) = V^T, explained_variance_ratio (K,))``."""
    n = data.shape[0]
    gram = np.zeros((n, n))
    total = 0.0
    for _, x in _pixel_blocks(data, c0, c1):
        gram += x @ x.T
        total += float(np.einsum("ij,ij->", x, x))
    lam, u = np.linalg.eigh(gram)
    top = np.argsort(lam)[::-1][:k]
    lam, u = np.clip(lam[top], 0.0, None), u[:, top]
    s = np.sqrt(lam)
    inv = np.divide(1.0, s, out=np.zeros_like(s), where=s > 0)
    w = c1 - c0
    comps = np.empty((k, data.shape[1] * w))
    for rows, x in _pixel_blocks(data, c0, c1):
        comps[:, rows.start * w:rows.stop * w] = (u.T @ x) * inv[:, None]
    sign = np.sign(comps[np.arange(k), np.argmax(np.abs(comps), axis=1)])
    sign[sign == 0] = 1.0
    comps *= sign[:, None]
    scores = u * (s * sign)[None, :]
    evr = lam / total if total > 0 else np.zeros(k)
    return scores, comps, evr


def _remove_components(data, scores, comps, idx, c0, c1, removed_var):
    """Subtract ``scores[:, idx] @ comps[idx]`` from ``data[:, :, c0:c1]`` in place, slab by slab of
    rows, and store its variance over time in ``removed_var``."""
    w = c1 - c0
    nrows = data.shape[1]
    step = max(1, _PIXEL_BLOCK // w)
    s = scores[:, idx]
    for r0 in range(0, nrows, step):
        r1 = min(r0 + step, nrows)
        model = s @ comps[idx, r0 * w:r1 * w]  # (nints, pixels of these rows)
        data[:, r0:r1, c0:c1] -= model.reshape(-1, r1 - r0, w).astype(np.float32)
        removed_var[r0:r1, c0:c1] = model.var(axis=0).reshape(r1 - r0, w)
