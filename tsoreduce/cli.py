"""Command line: ``tsoreduce RUN.yaml`` (same as ``python run_tso.py RUN.yaml``).

Examples::

    tsoreduce runs/demo.yaml                    # simulate + reduce uncal -> spectrum
    tsoreduce runs/demo.yaml --dry-run          # print the plan, write nothing
    tsoreduce runs/demo.yaml --stages 3-4       # only Stages 3 and 4 (reads stage2 products)
    tsoreduce runs/demo.yaml --start-at 3 --force
    tsoreduce runs/wasp107b_white.yaml --output-dir /tmp/w107
    tsoreduce --write-template runs/template.yaml
    tsoreduce batch runs/a.yaml runs/b.yaml --backend dask --workers 4   # many exposures (tsoreduce.batch)

Exit status (``tsoreduce.errors.EXIT_STATUS``; README "What can go wrong" lists them with the
named errors): 0 success; 1 another tsoreduce error (e.g. an unreadable product); 2 configuration
or input error (unknown key, bad value, missing input, segments that do not belong together);
3 a product would be overwritten without --force (also ``--dry-run`` when the plan has a conflict);
4 an output file cannot be written (read-only directory, disk full: path and errno given);
5 another run holds the output directory; 130 interrupted (Ctrl-C).  Errors are one line
``tsoreduce: error: ...`` on stderr.
"""

from __future__ import annotations

import argparse
import errno
import logging
import sys
from pathlib import Path

from . import __version__

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``tsoreduce`` / ``run_tso.py``.

    Returns
    -------
    argparse.ArgumentParser
        The parser.
    """
    p = argparse.ArgumentParser(
        prog="tsoreduce",
        description="Reduce a JWST MIRI time-series observation as described by a YAML run file "
                    "(see runs/template.yaml for every key).")
    p.add_argument("config", nargs="?", help="YAML run file, e.g. runs/demo.yaml")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--stages", help="stages to run: '1-4', '2-3', '4', '1,2' (overrides the YAML)")
    g.add_argument("--start-at", type=int, choices=(1, 2, 3, 4),
                   help="run from this stage to Stage 4 (earlier products must exist)")
    p.add_argument("--force", action="store_true",
                   help="recompute finished stages and overwrite their products")
    p.add_argument("--dry-run", action="store_true", help="print the plan and exit; write nothing")
    p.add_argument("--output-dir", metavar="DIR",
                   help="override the YAML's output_dir (relative to the current directory)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("-v", "--verbose", action="store_true", help="debug messages on the console")
    p.add_argument("-q", "--quiet", action="store_true", help="warnings only on the console")
    p.add_argument("--write-template", metavar="PATH",
                   help="write the generated template (every key with its default) to PATH ('-' = stdout)")
    p.add_argument("--version", action="version", version=f"tsoreduce {__version__}")
    return p


def _console_logging(verbose: bool, quiet: bool):
    level = logging.DEBUG if verbose else (logging.WARNING if quiet else logging.INFO)
    root = logging.getLogger("tsoreduce")
    root.setLevel(min(level, logging.INFO))
    h = logging.StreamHandler(sys.stderr)
    h.setLevel(level)
    h.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    # records meant for run.log only (the end-of-run summary, which main() prints on stdout)
    h.addFilter(lambda record: not getattr(record, "file_only", False))
    root.addHandler(h)
    return h


def _one_line(exc) -> str:
    """``ErrorName: message`` (README "What can go wrong" lists the names)."""
    return f"{type(exc).__name__}: {exc}"


def main(argv=None) -> int:
    """Entry point of ``tsoreduce`` and ``run_tso.py``.

    Errors are printed as one line with their name; the exit status follows
    :data:`tsoreduce.errors.EXIT_STATUS`.  An exception that is not a tsoreduce error (e.g. a
    SyntaxError in a stage module) propagates with its traceback.

    Parameters
    ----------
    argv : list of str, optional
        Command-line arguments (default ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit status.
    """
    from .config import load_run_config, render_template
    from .errors import (EXIT_STATUS, ConfigError, OutputWriteError, OverwriteError, TsoreduceError,
                         exit_status)
    from . import pipeline

    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "batch":  # tsoreduce batch RUN1.yaml RUN2.yaml ... (tsoreduce.batch)
        from .batch import main as batch_main
        return batch_main(argv[1:])
    args = build_parser().parse_args(argv)
    if args.write_template:
        text = render_template()
        if args.write_template == "-":
            sys.stdout.write(text)
        else:
            from ._util import atomic_write_text
            atomic_write_text(args.write_template, text)
            print(f"wrote {args.write_template}")
        return 0
    if not args.config:
        build_parser().print_usage(sys.stderr)
        print("tsoreduce: error: a YAML run file is required", file=sys.stderr)
        return 2
    handler = _console_logging(args.verbose, args.quiet)
    try:
        stages = args.stages if args.stages is not None else (
            f"{args.start_at}-4" if args.start_at is not None else None)
        try:
            cfg = load_run_config(args.config, output_dir=args.output_dir)
            if stages is not None:
                from .config import parse_stages, possible_stages
                cfg["stages"] = parse_stages(stages, possible_stages(cfg["input"]["kind"]))
            if args.dry_run:
                res = pipeline.run(cfg, force=args.force, dry_run=True)
                print(res["text"])
                if res["conflicts"]:
                    print("tsoreduce: error: the plan has conflicts (marked CONFLICT above); a run would "
                          "stop before any work", file=sys.stderr)
                    return EXIT_STATUS[OverwriteError]
                return 0
            summary = pipeline.run(cfg, force=args.force, progress=not args.no_progress)
        except FileNotFoundError as exc:
            print(f"tsoreduce: error: {type(exc).__name__}: {exc}", file=sys.stderr)
            # the run file itself is a usage error; input files are checked as ConfigError before
            return EXIT_STATUS[ConfigError] if exc.filename is not None and Path(
                exc.filename) == Path(args.config) else EXIT_STATUS[TsoreduceError]
        except KeyboardInterrupt:
            print("tsoreduce: error: interrupted; rerun the same command to resume", file=sys.stderr)
            return EXIT_STATUS[KeyboardInterrupt]
        except TsoreduceError as exc:
            print(f"tsoreduce: error: {_one_line(exc)}", file=sys.stderr)
            return exit_status(exc)
        except OSError as exc:  # an output the writers do not wrap (a figure, a directory), or a bug
            print(f"tsoreduce: error: {type(exc).__name__}: {exc}", file=sys.stderr)
            cannot_write = exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT)
            return EXIT_STATUS[OutputWriteError] if cannot_write else EXIT_STATUS[TsoreduceError]
        print(pipeline.format_summary(summary))
        print(f"log: {Path(summary['output_dir']) / 'run.log'}")
        return 0
    finally:
        logging.getLogger("tsoreduce").removeHandler(handler)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
