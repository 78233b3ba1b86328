"""Reset / RSCD handling: flag the first N groups of every integration DO_NOT_USE.

The MIRI reset switch charge decay makes the early groups of every integration non-linear in time;
the TSO community drops them (exoTEDRF ``miri_drop_groups`` = 12, SPARTA 5, jwst ``rscd`` n_skip;
Morrison et al. 2023; JWST pipeline documentation, rscd step).
The groups stay in the array (JWST convention) and the ramp fitter and jump
detectors skip them.
"""

from __future__ import annotations

import logging

import numpy as np

from ..datamodel import DQ, RampData

log = logging.getLogger(__name__)

__all__ = ["flag_reset_groups"]


def flag_reset_groups(ramp: RampData, *, n_groups: int = 12, min_usable: int = 2,
                      out: np.ndarray | None = None) -> RampData:
    """Flag groups ``0 .. N-1`` of every integration DO_NOT_USE (the MIRI RSCD group drop).

    Method: JWST pipeline documentation, ``rscd`` step; Morrison et al. 2023; the group drop of
    exoTEDRF (Radica 2024) -- docs/sources.md.

    Parameters
    ----------
    ramp : tsoreduce.datamodel.RampData
        Ramps ``(nints, ngroups, nrows, ncols)`` in DN.
    n_groups : int
        N, the number of leading groups to drop (default 12).
    min_usable : int
        N is reduced (with a WARNING) so that at least this many groups stay usable after the groups
        already flagged DO_NOT_USE in every pixel (e.g. the last group) are taken into account.
    out : numpy.ndarray, optional
        Pre-allocated uint32 GROUPDQ output.

    Returns
    -------
    tsoreduce.datamodel.RampData
        A new RampData with the flags in GROUPDQ; ``meta["NDROPRST"]`` records the N applied.
    """
    ng = ramp.ngroups
    plane_dnu = np.all((ramp.groupdq[0] & np.uint32(DQ.DO_NOT_USE)) != 0, axis=(1, 2))
    usable = np.flatnonzero(~plane_dnu)
    n = int(n_groups)
    # keep at least min_usable usable groups: N may not exceed the index of the min_usable-th from last
    if usable.size >= min_usable:
        limit = int(usable[-min_usable])
    else:
        limit = 0
    if n > limit:
        log.warning("reset: dropping %d groups would leave fewer than %d usable groups (NGROUPS = %d); "
                    "dropping %d instead", n, min_usable, ng, limit)
        n = limit
    gdq = ramp.groupdq.copy() if out is None else out
    if out is not None:
        np.copyto(gdq, ramp.groupdq)
    if n > 0:
        gdq[:, :n] |= np.uint32(DQ.DO_NOT_USE)
    log.info("reset/RSCD: first %d group(s) of every integration flagged DO_NOT_USE", n)
    meta = dict(ramp.meta)
    meta["NDROPRST"] = n
    meta["S_RSCD"] = "COMPLETE"
    return ramp.replace(groupdq=gdq, meta=meta)
