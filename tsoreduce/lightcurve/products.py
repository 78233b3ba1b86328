"""The Stage 4 product in memory (:class:`FitProducts`) and the writer the file-level runner uses.

:func:`tsoreduce.lightcurve.stage.run` (one visit) and :func:`tsoreduce.lightcurve.joint_products.run_joint`
(several visits) return a :class:`FitProducts`: the astropy tables with their metadata, exactly as they
are written, plus the fits themselves.  :func:`write_products` writes them atomically
(``<key>.ecsv`` per table, the posterior chains as HDF5); only
:func:`tsoreduce.pipeline.run_stage4_files` calls it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._util import atomic_path
from .spectrum import write_chains, write_table

__all__ = ["FitProducts", "output_names", "write_products"]

#: table keys (file stems) and chain file of each kind of Stage 4 product
_SINGLE_TABLES = ("spectrum", "white_fit", "channel_fits")
_JOINT_TABLES = ("white_fit", "visits", "transit_times", "visit_fits")


@dataclass
class FitProducts:
    """What Stage 4 produces: the product tables and the fits behind them.

    Parameters
    ----------
    tables : dict of str to astropy.table.Table
        File stem -> table, in writing order.  One visit: ``spectrum`` (one row per fitted channel, or
        the white-light row), ``white_fit`` and ``channel_fits``; a joint fit: ``white_fit`` (global
        parameters), ``visits``, ``transit_times`` (timing mode) and ``visit_fits``.  Each table's
        ``meta`` holds ``tsoreduce_version`` and the validated ``stage4_config``.
    config : dict
        The validated ``stage4`` section the fits ran with.
    white : tsoreduce.lightcurve.fitting.FitResult or None
        The white-light fit (one visit; None when skipped or for a joint fit).
    channels : list of tsoreduce.lightcurve.fitting.FitResult
        The spectroscopic channel fits, in channel order.
    joint : tsoreduce.lightcurve.joint.JointResult or None
        The joint fit (several visits), else None.
    files : dict of str to pathlib.Path
        Paths written by :func:`write_products` and figures (empty from ``run``).
    """

    tables: dict
    config: dict
    white: Any = None
    channels: list = field(default_factory=list)
    joint: Any = None
    files: dict = field(default_factory=dict)

    @property
    def spectrum(self):
        """astropy.table.Table or None: the spectrum table (one visit)."""
        return self.tables.get("spectrum")

    @property
    def white_table(self):
        """astropy.table.Table or None: the white-light (or global joint) parameter table."""
        return self.tables.get("white_fit")

    @property
    def fits(self) -> list:
        """list of FitResult: the white-light fit (if any) followed by the channel fits."""
        return ([self.white] if self.white is not None else []) + list(self.channels)


def output_names(joint: bool) -> tuple:
    """File names a Stage 4 product can be written to.

    Parameters
    ----------
    joint : bool
        A joint (several-visit) product rather than a one-visit one.

    Returns
    -------
    tuple of str
        The ECSV tables and the chains file (used to refuse overwriting an input).
    """
    stems = _JOINT_TABLES if joint else _SINGLE_TABLES
    return tuple(f"{s}.ecsv" for s in stems) + (("joint_chains.h5",) if joint else ("chains.h5",))


def write_products(products: FitProducts, outdir, *, provenance: dict | None = None) -> dict:
    """Write the tables and chains of ``products`` into ``outdir`` atomically.

    Parameters
    ----------
    products : FitProducts
        From the Stage 4 ``run``; not modified.
    outdir : str or pathlib.Path
        Output directory (created).
    provenance : dict, optional
        The pipeline's provenance; its ``config_hash`` and ``config`` (the run's YAML text) are appended
        to every table's metadata when present.

    Returns
    -------
    dict of str to pathlib.Path
        ``<table key>`` -> ECSV path and ``chains`` -> HDF5 path (when there are fits).
    """
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    extra = {k: provenance[k] for k in ("config_hash", "config") if provenance and provenance.get(k)}
    files = {}
    for key, table in products.tables.items():
        if extra:  # written with the run's provenance, the in-memory product stays as run() made it
            table = table.copy(copy_data=False)
            table.meta.update(extra)
        files[key] = write_table(table, outdir / f"{key}.ecsv")
    if products.joint is not None:
        if products.joint.chain is not None:
            files["chains"] = _write_joint_chain(outdir / "joint_chains.h5", products.joint)
    elif products.fits:
        files["chains"] = write_chains(outdir / "chains.h5", products.fits, config=products.config)
    return files


def _write_joint_chain(path: Path, jr) -> Path:
    """The joint emcee chain, log-probabilities and sampler figures to HDF5 (group ``joint``)."""
    import h5py

    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        g = f.create_group("joint")
        g.create_dataset("chain", data=jr.chain, compression="gzip")
        g.create_dataset("log_prob", data=jr.log_prob, compression="gzip")
        g.attrs["free_names"] = json.dumps(jr.free)
        g.attrs["sampled_names"] = json.dumps(jr.sampled or jr.free)  # the chain's columns
        g.attrs["burn_in"] = jr.burn_in
        g.attrs["acceptance"] = jr.acceptance
        g.attrs["autocorr_time"] = json.dumps([float(x) for x in jr.tau])
    return path
