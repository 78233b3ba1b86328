"""The one contract every stage obeys.

Each stage subpackage (``detector``, ``spectroscopic``, ``extraction``, ``lightcurve``, ``mrs``) has a
``stage.py`` with::

    def run(product, config=None, *, plot_dir=None, references=None) -> StageResult

* ``product`` is the stage's input product in memory (RampData, RateData, LightCurves, ...); it is
  never modified (runs are pure with respect to their inputs).
* ``config`` is the stage's own config section (``stage1``, ``stage2``, ...); missing keys take the
  defaults of the stage's ``CONFIG_SCHEMA``.
* ``plot_dir``: where the stage's figures go (None: no figures).
* ``references``: reference files by name, for the stages that use them; a stage that uses none
  raises :class:`ValueError` when given some, rather than ignoring them.

Reading and writing files belongs to the file-level runners of :mod:`tsoreduce.pipeline`
(``run_stage1_files`` ... ``run_stage4_files``, one name each).  Progress bars are switched on for a
block of code with :func:`show_progress`, not through every signature.
"""

from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_PROGRESS = contextvars.ContextVar("tsoreduce_progress", default=False)


@dataclass
class StageResult:
    """What a stage's ``run`` returns.

    Parameters
    ----------
    product : object
        The stage's output product (Stage 1-2: RateData; Stage 3 and MRS: the x1dints and light
        curves; Stage 4: the fitted tables).
    diagnostics : dict
        Numbers and small arrays a user or a test inspects after the run (counts of flagged pixels,
        fitted scatter, timing...); JSON-serialisable where possible.
    figures : list of pathlib.Path
        Figures written into ``plot_dir`` (empty when ``plot_dir`` is None).
    """

    product: Any
    diagnostics: dict = field(default_factory=dict)
    figures: list[Path] = field(default_factory=list)


@dataclass
class Stage3Product:
    """The product of Stage 3 and of the MRS branch: per-integration spectra and the light curves.

    Parameters
    ----------
    x1dints : tsoreduce.datamodel.SpectraData
        Per-integration 1-D spectra (the x1dints product).
    lightcurves : tsoreduce.datamodel.LightCurves
        Spectroscopic and white light curves, the input of Stage 4.
    """

    x1dints: Any
    lightcurves: Any


def progress_enabled() -> bool:
    """Whether progress bars are on in the current context.

    Returns
    -------
    bool
        True inside a ``with show_progress(True):`` block.
    """
    return _PROGRESS.get()


@contextlib.contextmanager
def show_progress(on: bool = True):
    """Switch progress bars on (or off) for the stages run inside the ``with`` block.

    Parameters
    ----------
    on : bool
        Whether tqdm progress bars are shown.

    Yields
    ------
    None
    """
    token = _PROGRESS.set(bool(on))
    try:
        yield
    finally:
        _PROGRESS.reset(token)


def no_references(stage: str, references) -> None:
    """Refuse reference files given to a stage that uses none.

    Parameters
    ----------
    stage : str
        The stage's name, for the message.
    references : dict or None
        What the caller passed.

    Raises
    ------
    ValueError
        If ``references`` is not empty.
    """
    if references:
        raise ValueError(f"{stage} uses no reference files; got {sorted(references)}")
