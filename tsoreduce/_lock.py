"""One run at a time per output directory: ``output_dir/.tsoreduce.lock``.

The lock is an exclusive ``flock`` on the lock file, held for the whole run; the kernel releases it
when the process ends, however it ends (``kill -9`` included), so a lock can never outlive its run
on the machine that took it.  The file also records who holds it (pid, host, start time, run file)
for the message a second run prints when it is refused.

A lock file left behind by a run that died (same host, process gone) is taken over with a WARNING.
A lock file written on another host is not taken over (its process cannot be checked from here,
and ``flock`` may not reach across a network file system): the run is refused and the message says
which file to delete once that run is known to be over.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import socket
import time
from pathlib import Path

from .errors import OutputLockedError

__all__ = ["OutputLock", "LOCK_NAME", "read_lock"]

log = logging.getLogger(__name__)

LOCK_NAME = ".tsoreduce.lock"


def read_lock(path) -> dict:
    """The holder recorded in a lock file ({} when empty or unreadable)."""
    try:
        return json.loads(Path(path).read_text() or "{}")
    except (OSError, ValueError):
        return {}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _holder(info: dict) -> str:
    return (f"pid {info.get('pid', '?')} on {info.get('host', '?')} since {info.get('started', '?')}"
            + (f" (run file {info['config']})" if info.get("config") else ""))


class OutputLock:
    """Context manager holding the lock of ``output_dir`` for one run.

    Raises
    ------
    OutputLockedError
        another live run holds the directory (message: its pid, host, start time, the lock file).
    OutputWriteError
        the lock file cannot be created (read-only directory, disk full).
    """

    def __init__(self, output_dir, config_source: str = ""):
        self.path = Path(output_dir) / LOCK_NAME
        self.config_source = str(config_source)
        self.fd: int | None = None

    def __enter__(self):
        from ._util import output_write_error
        host = socket.gethostname()
        for _ in range(10):  # retried only when the file is replaced under us
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            except OSError as exc:
                raise output_write_error(self.path, exc) from exc
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise output_write_error(self.path, exc) from exc
                raise OutputLockedError(
                    f"{self.path.parent} is in use by another tsoreduce run ({_holder(read_lock(self.path))}); "
                    f"wait for it to finish or choose another --output-dir") from None
            # the previous holder may have removed the file between our open and flock
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            old = read_lock(self.path)
            if old:
                if old.get("host") not in (None, host):
                    os.close(fd)
                    raise OutputLockedError(
                        f"{self.path.parent} is locked by a run on another host ({_holder(old)}); if "
                        f"that run is over, delete {self.path}")
                pid = int(old.get("pid", -1))
                if pid != os.getpid() and _pid_alive(pid) and old.get("released") is None:
                    # a live process without the flock: not a tsoreduce run holding this lock;
                    # the pid was reused after the run died
                    log.warning("lock %s names pid %d, alive but not holding the lock (pid reused); "
                                "taking it over", self.path, pid)
                elif old.get("released") is None:
                    log.warning("output_dir %s: stale lock of a run that died (%s, process gone); "
                                "taking it over", self.path.parent, _holder(old))
            self.fd = fd
            break
        else:  # pragma: no cover - ten replacements in a row
            raise OutputLockedError(f"{self.path}: the lock file keeps being replaced; another run?")
        info = {"pid": os.getpid(), "host": host, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "config": self.config_source}
        try:
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, json.dumps(info).encode(), 0)
            os.fsync(self.fd)
        except OSError as exc:
            self._close()
            raise output_write_error(self.path, exc) from exc
        return self

    def _close(self):
        if self.fd is not None:
            os.close(self.fd)  # releases the flock
            self.fd = None

    def __exit__(self, *exc):
        # mark released before unlocking so a later run never reads it as a stale lock; the file
        # stays (removing it would race with a run that opened it and waits for flock)
        try:
            info = read_lock(self.path)
            info["released"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, json.dumps(info).encode(), 0)
        except OSError:
            pass
        finally:
            self._close()
        return False
