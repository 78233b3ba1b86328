"""Module-level work units for the execution-backend tests (importable by spawned worker processes)."""

import os


def die_once(unit):
    """Return k * k; the first attempt at k == 1 kills its own worker process (as the OOM killer would)."""
    flag_dir, k = unit
    if k == 1:
        try:
            fd = os.open(os.path.join(flag_dir, "died.pid"), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return k * k, os.getpid()
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        os._exit(137)
    return k * k, os.getpid()


def fail(unit):
    raise ValueError(f"unit {unit} is bad")
