"""Header checks of a run's input files, before any work.

A TSO is split into uncal segments (``EXSEGNUM``) that Stage 1 processes one at a time; a mismatch
between them (another NGROUPS, readout pattern or subarray, a missing or repeated segment) would
only surface at Stage 2, after hours of Stage 1.  :func:`check_segments` reads the primary (and SCI)
headers of every segment -- no data -- and raises a named error naming both files involved.

Keywords follow the JWST keyword dictionary (jwst-pipeline.readthedocs.io, "Exposure information"
and "Segment information"): NINTS is the number of integrations of the whole exposure, INTSTART and
INTEND (1-based, inclusive) the integrations a segment holds.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import (ConfigError, DuplicateSegmentError, ProductError, SegmentMismatchError,
                     TruncatedFileError, WrongInstrumentError)
from .io._fitsfile import image_shape, open_checked

__all__ = ["check_run_inputs", "check_exp_type", "check_segments", "read_headers", "LRS_EXP_TYPES", "SAME_KEYS"]

#: EXP_TYPE of the data Stages 1-3 reduce (MIRI LRS slitless)
LRS_EXP_TYPES = ("MIR_LRS-SLITLESS",)

#: keywords every segment of one exposure shares
SAME_KEYS = ("NGROUPS", "NFRAMES", "GROUPGAP", "NINTS", "READPATT", "SUBARRAY", "EXP_TYPE",
             "SUBSTRT1", "SUBSTRT2", "SUBSIZE1", "SUBSIZE2")


def read_headers(path) -> dict:
    """Primary-header keywords of ``path`` plus the SCI extension's NAXISn (as ``SCI_SHAPE``).

    No data are read; the file's length is checked against the FITS standard (4.0, sect. 3.1: whole
    2880-byte blocks) and against what its headers announce.

    Parameters
    ----------
    path : str or pathlib.Path
        A FITS file.

    Returns
    -------
    dict
        Primary-header keyword -> value, plus ``SCI_SHAPE`` (tuple, numpy order) or None without SCI.

    Raises
    ------
    ProductError
        The file is missing or its headers cannot be read.
    TruncatedFileError
        The file is shorter than whole FITS blocks or than its headers announce.
    """
    path = Path(path)
    if not path.is_file():
        raise ProductError(path, "no such file")
    size = path.stat().st_size
    if size % 2880:
        # FITS files are whole 2880-byte blocks (FITS standard 4.0, sect. 3.1)
        raise TruncatedFileError(path, f"{size} bytes long, not a whole number of 2880-byte FITS blocks: "
                                       f"the file was cut short (an interrupted download or copy?); "
                                       f"fetch it again")
    # the readers' opening: it also checks that every HDU's data fit in the file (data not read)
    with open_checked(path, what="headers") as hdul:
        head = dict(hdul[0].header)
        head["SCI_SHAPE"] = image_shape(hdul["SCI"]) if "SCI" in hdul else None
    return head


def check_exp_type(path, header: dict, what: str) -> None:
    """Check that a file is MIRI LRS slitless, from its primary-header keywords.

    Parameters
    ----------
    path : str or pathlib.Path
        The file, for the message.
    header : dict
        Its primary-header keywords (INSTRUME, EXP_TYPE).
    what : str
        The input kind (``"uncal"``, ``"rateints"``, ...), for the message's key path.

    Raises
    ------
    WrongInstrumentError
        Not MIRI with an EXP_TYPE of :data:`LRS_EXP_TYPES`, with a hint a command-line user can act on
        (MRS exposures are pointed at the ``input.mrs`` section).
    """
    inst = str(header.get("INSTRUME", "")).strip().upper()
    exp = str(header.get("EXP_TYPE", "")).strip().upper()
    if inst == "MIRI" and exp in LRS_EXP_TYPES:
        return
    hint = ("MRS time series are reduced from their s3d cubes: give them as `input: {mrs: {cubes: "
            "...}}` in the run file (see runs/mrs_demo.yaml)" if exp.startswith("MIR_MRS") else
            "tsoreduce Stages 1-3 reduce MIRI LRS slitless (SLITLESSPRISM) exposures only; check that "
            f"`input.{what}` in the run file points at the LRS slitless files of your program")
    raise WrongInstrumentError(path, f"{what}: INSTRUME = {header.get('INSTRUME')!r}, EXP_TYPE = "
                                     f"{header.get('EXP_TYPE')!r}, expected MIRI {LRS_EXP_TYPES[0]}. "
                                     f"Hint: {hint}")


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_segments(paths, what: str = "uncal") -> list[dict]:
    """Check the segments of one exposure from their headers; return the headers in time order.

    Checks: every file is MIRI LRS slitless (:func:`check_exp_type`); no file is given twice (same
    file, or two files with the same INTSTART); :data:`SAME_KEYS` and the SCI frame shape agree with
    the first segment; sorted by INTSTART, each segment starts right after the previous one ends
    (INTSTART = previous INTEND + 1), INTEND - INTSTART + 1 equals the integrations in SCI, and no
    segment ends after NINTS.  Segments without INTSTART (a single-file exposure) skip the
    continuity checks.

    Parameters
    ----------
    paths : iterable of str or pathlib.Path
        The files of one exposure, in any order.
    what : str
        The input kind (``"uncal"``, ``"rateints"``, ``"calints"``), for the messages' key paths.

    Returns
    -------
    list of dict
        The headers (:func:`read_headers`), sorted by INTSTART when every file has one, else in the
        order given.

    Raises
    ------
    WrongInstrumentError, ProductError, DuplicateSegmentError, SegmentMismatchError
        each naming the file(s) and the keyword involved.
    """
    paths = [str(p) for p in paths]
    heads = []
    for i, p in enumerate(paths):
        for q in paths[:i]:
            if q == p or _same_file(p, q):
                raise DuplicateSegmentError(f"input.{what}: {q} and {p} are the same file; each segment "
                                            f"may be given once")
        h = read_headers(p)
        check_exp_type(p, h, what)
        heads.append((p, h))
    if len(heads) < 2:
        return [h for _, h in heads]
    first_path, first = heads[0]
    for p, h in heads[1:]:
        for key in SAME_KEYS + ("SCI_SHAPE",):
            a = first.get(key)
            b = h.get(key)
            if key == "SCI_SHAPE" and a is not None and b is not None:
                a, b = a[1:], b[1:]  # (groups,) rows, columns must agree; integrations may differ
            if a is not None and b is not None and a != b:
                raise SegmentMismatchError(
                    f"input.{what}: {key} = {b!r} in {p} but {a!r} in {first_path}; the segments of "
                    f"one exposure must share {key} (are they from different exposures?)")
    starts = [(h.get("INTSTART"), p, h) for p, h in heads]
    if any(s is None for s, _, _ in starts):
        return [h for _, h in heads]
    seen: dict = {}
    for s, p, h in starts:
        if s in seen:
            raise DuplicateSegmentError(f"input.{what}: {seen[s]} and {p} both start at INTSTART = {s} "
                                        f"(the same segment given twice?)")
        seen[s] = p
    starts.sort(key=lambda t: int(t[0]))
    prev = None
    for s, p, h in starts:
        end = h.get("INTEND")
        shape = h.get("SCI_SHAPE")
        if end is not None and shape and len(shape) >= 3 and int(end) - int(s) + 1 != shape[0]:
            raise SegmentMismatchError(f"input.{what}: {p} has INTSTART = {s}, INTEND = {end} but "
                                       f"{shape[0]} integrations in SCI")
        if end is not None and h.get("NINTS") is not None and int(end) > int(h["NINTS"]):
            raise SegmentMismatchError(f"input.{what}: {p} ends at INTEND = {end}, after NINTS = "
                                       f"{h['NINTS']} of the exposure")
        if prev is not None:
            pend = prev[2].get("INTEND")
            if pend is not None and int(s) != int(pend) + 1:
                kind = "overlap" if int(s) <= int(pend) else "leave a gap (a segment is missing)"
                raise SegmentMismatchError(
                    f"input.{what}: {prev[1]} ends at INTEND = {pend} and {p} starts at INTSTART = {s}: "
                    f"the segments {kind}; give every segment of the exposure once")
        prev = (s, p, h)
    return [h for _, _, h in starts]


def check_run_inputs(config: dict, chosen) -> None:
    """Check a validated run's input files before any work: :func:`check_segments` on the uncal (or
    rateints / calints) files of the first stage that runs, then the integration selections of later
    stages against the number of integrations the input holds.

    Parameters
    ----------
    config : dict
        The validated run configuration (:func:`tsoreduce.config.load_run_config`).
    chosen : collection of int
        The stages that will run.

    Raises
    ------
    ConfigError
        An integration selection selects nothing from the integrations the input holds (key path and
        integrations available); also the errors of :func:`check_segments`.
    """
    from .config import first_stage
    kind = config["input"]["kind"]
    heads = None
    if kind == "uncal" and 1 in chosen:
        heads = check_segments(config["input"]["uncal"], "uncal")
    elif kind in ("rateints", "calints") and first_stage(config) in chosen:
        # products of other pipelines too; a file that is not FITS at all is left to the reader's
        # ProductError when its stage starts
        files = [f for f in config["input"][kind] if _looks_fits(f)]
        heads = check_segments(files, kind)
        if len(files) < len(config["input"][kind]):
            heads = None
    nints = None
    if kind == "simulate":
        nints = int(config["input"]["simulate"]["nints"])
    elif heads and all(h.get("SCI_SHAPE") and len(h["SCI_SHAPE"]) >= 3 for h in heads):
        nints = sum(int(h["SCI_SHAPE"][0]) for h in heads)
    if nints is not None:
        _check_integration_selections(config, chosen, nints)


def _check_integration_selections(config, chosen, nints: int):
    """The integration selections of later stages against the number of integrations of the input,
    so a selection that selects nothing stops the run now, not after Stage 1."""
    problems = []
    for stage, section, keys in ((2, "stage2", ("deep_frame", "baseline_ints")),
                                 (3, "stage3", ("lightcurves", "baseline_ints"))):
        if stage not in chosen:
            continue
        value = (config.get(section) or {}).get(keys[0], {}).get(keys[1])
        if value is None:
            continue
        try:
            from .spectroscopic import baseline_index
            baseline_index(nints, value)
        except ConfigError as exc:
            problems.append(f"{section}.{'.'.join(keys)}: {exc} (the input has {nints} integrations)")
        except ImportError:  # pragma: no cover - Stage 2 itself will report it
            continue
    if problems:
        from .config import config_error
        raise config_error(problems)


def _looks_fits(path) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(9) == b"SIMPLE  ="
    except OSError:
        return False
