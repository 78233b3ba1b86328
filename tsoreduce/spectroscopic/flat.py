"""Stage 2 step 2: flat field (jwst ``flat_field`` step: science / flat, ERR / flat).

Source (docs/sources.md): jwst pipeline documentation, ``flat_field`` step.
"""

from __future__ import annotations

import logging

import numpy as np

from .. import reference
from ..datamodel import DQ, RateData
from ..errors import ReferenceFileError, ShapeError

log = logging.getLogger(__name__)

__all__ = ["flat_field", "resolve_flat"]


def resolve_flat(config: dict, references: dict, meta: dict):
    """The flat Stage 2 uses: ``references["flat"]``, else ``config["path"]``, else the CRDS cache.

    Parameters
    ----------
    config : dict
        The validated ``stage2.flat_field`` section (``path``, ``use_crds_cache``).
    references : dict
        Reference files by name; ``"flat"`` (path or ``(nrows, ncols)`` array) wins over the config.
    meta : dict
        Header keywords of the rates, used to match a flat in ``$CRDS_PATH`` (never downloads).

    Returns
    -------
    str, numpy.ndarray or None
        The flat, or None when there is none (the step is then skipped with a log line).
    """
    flat = references.get("flat", config["path"])
    if flat is None and config["use_crds_cache"]:
        flat = reference.find_reference("flat", meta=meta)
        if flat is not None:
            log.info("flat_field: using %s from the CRDS cache", flat)
    return flat


def flat_field(rates: RateData, flat=None, *, subarray_meta=None) -> RateData:
    """Divide by a flat field.

    Pixels where the flat is not finite or <= 0 are flagged NO_FLAT_FIELD and left undivided.
    Errors and variances are scaled consistently (ERR / flat, VAR / flat^2).
    Source: jwst ``flat_field`` step documentation (docs/sources.md).

    Parameters
    ----------
    rates : tsoreduce.datamodel.RateData
        ``(nints, nrows, ncols)`` rates; not modified.
    flat : None, numpy.ndarray or str
        None (skip, logged), a ``(nrows, ncols)`` array (dimensionless, ~1), or a path to a
        CRDS-format flat read with :func:`tsoreduce.reference.load_flat` (cut to the subarray).
    subarray_meta : dict, optional
        Header keywords giving the subarray position (default ``rates.meta``).

    Returns
    -------
    tsoreduce.datamodel.RateData
        New arrays (``rates`` itself when ``flat`` is None), same units.

    Raises
    ------
    tsoreduce.errors.ShapeError
        When the flat does not match the frame.
    tsoreduce.errors.ReferenceFileError
        When the flat file cannot be read.
    """
    if flat is None:
        log.info("flat_field: no flat given -- step skipped")
        return rates
    if not isinstance(flat, np.ndarray):
        loader = getattr(reference, "load_flat", None)
        if loader is None:
            raise ReferenceFileError("reference.load_flat is not available to read the flat file "
                                     f"{flat}")
        flat = loader(flat, subarray_meta if subarray_meta is not None else rates.meta)
    flat = np.asarray(flat, np.float64)
    if flat.shape != rates.data.shape[1:]:
        raise ShapeError(f"flat has shape {flat.shape}, frames are {rates.data.shape[1:]}")
    good = np.isfinite(flat) & (flat > 0)
    f = np.where(good, flat, 1.0).astype(np.float32)
    dq = rates.dq | np.where(good, 0, np.uint32(DQ.NO_FLAT_FIELD)).astype(np.uint32)[None]
    out = dict(data=rates.data / f, err=rates.err / f, dq=dq)
    f2 = f * f
    if rates.var_poisson is not None:
        out["var_poisson"] = rates.var_poisson / f2
    if rates.var_rnoise is not None:
        out["var_rnoise"] = rates.var_rnoise / f2
    log.info("flat_field: divided by flat (%d pixels without a valid flat value)", int((~good).sum()))
    return rates.replace(**out)
