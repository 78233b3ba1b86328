"""Execution backends: where the independent work units of a run are computed.

A *work unit* is a call that reads its inputs by path and writes its products by path, so only small
objects (paths, configuration, a channel's light curve, a fit result) travel between processes:

* Stage 1 -- one uncal segment -> one rateints file (``pipeline.run_stage1_files``);
* Stage 4 -- one spectroscopic channel fit (``lightcurve.stage.fit_channels``);
* batch   -- one whole exposure, uncal -> spectrum in its own output folder (``tsoreduce.batch``).

Stages 2 and 3 run in the calling process: Stage 2 needs every integration at once (the PCA and the
outlier medians are over time), and Stage 3 on a full-size exposure is a small fraction of the run
(``benchmarks/bench_full_tso.py``), so integration blocks do not pay for their transfer.

The YAML ``execution`` section chooses the backend (:data:`CONFIG_SCHEMA`):

* ``serial`` (default) -- every unit in this process, in order; nothing is started.  Stage 4 keeps its
  own ``stage4.n_processes`` pool, as without this section.
* ``processes`` -- a :class:`concurrent.futures.ProcessPoolExecutor` of ``workers`` spawned processes
  (Python documentation, ``concurrent.futures``).  A pool broken by a killed worker is rebuilt and the
  unfinished units are submitted again, up to ``lost_worker_retries`` times.
* ``dask`` -- ``dask.distributed`` (https://distributed.dask.org): ``scheduler: local`` starts a
  ``LocalCluster`` of ``workers`` single-threaded worker processes; an address (``tcp://host:8786``)
  connects to a running scheduler whose workers see the same file system.  A unit whose worker dies
  is re-run on another worker by the scheduler (``distributed.scheduler.allowed-failures``).

Units give the same products on every backend: each is a pure function of its inputs (emcee is
seeded per channel, ``stage4.fitter.seed + k + 1``; BLAS runs one thread inside every unit, serial
included, as in a dask worker, so reductions round alike), products are written atomically
(``tsoreduce.io``: temporary file + ``os.replace``), and the stage's resume markers are written by the
calling process only after every unit of the stage has finished.  Log records a unit emits in another
process are sent back with its result and re-emitted here, so ``run.log`` is complete.

Library use::

    with execution.session({"backend": "dask", "workers": 4}):
        pipeline.run(config)                    # or any stage function
"""

from __future__ import annotations

import contextvars
import logging
import os
import uuid
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager

from .config import Param, validate
from .errors import BackendUnavailableError, ConfigError, WorkUnitError

__all__ = ["CONFIG_SCHEMA", "validate_config", "Executor", "SerialExecutor", "ProcessesExecutor",
           "DaskExecutor", "make_executor", "current", "session", "open_session"]

log = logging.getLogger(__name__)

CONFIG_SCHEMA = {
    "backend": Param("serial", str, "where work units run: serial (this process, nothing started), "
                     "processes (a local process pool) or dask (dask.distributed; pip install "
                     "tsoreduce[dask])", choices=("serial", "processes", "dask")),
    "scheduler": Param("local", str, "dask only: 'local' starts a LocalCluster of `workers` processes; "
                       "else the address of a running scheduler (tcp://host:8786) whose workers see "
                       "the same file system"),
    "workers": Param(None, int, "worker processes (processes; dask local); null: the number of CPUs",
                     nullable=True, min=1, max=4096),
    "memory_limit": Param("auto", str, "dask local: memory limit per worker, e.g. '4GB' ('auto': "
                          "system memory / workers); Stage 1 needs about stage1.memory.limit_gb"),
    "retries": Param(0, int, "times a unit that raised an exception is run again (a unit whose worker "
                     "died is always re-run, see lost_worker_retries)", min=0, max=10),
    "lost_worker_retries": Param(3, int, "times a unit is re-run after its worker process died "
                                 "(processes; dask local: distributed.scheduler.allowed-failures)",
                                 min=0, max=20),
}


def validate_config(section: dict | None) -> dict:
    """Validate an ``execution`` section and return it completed with defaults.

    Parameters
    ----------
    section : dict or None
        The user's ``execution`` section (None: serial).

    Returns
    -------
    dict
        The section with every key of :data:`CONFIG_SCHEMA`.

    Raises
    ------
    ConfigError
        For unknown keys or bad values, or a scheduler address without ``backend: dask``.
    BackendUnavailableError
        (a ConfigError) When ``backend: dask`` is asked for and ``dask.distributed`` cannot be
        imported.
    """
    cfg = validate(section, CONFIG_SCHEMA, "execution")
    if cfg["backend"] == "dask":
        _import_distributed()
    elif cfg["scheduler"] != "local":
        raise ConfigError(f"execution.scheduler: {cfg['scheduler']!r} is a dask scheduler address, but "
                          f"execution.backend is {cfg['backend']!r}; set backend: dask")
    return cfg


def _import_distributed():
    try:
        import distributed  # noqa: F401
    except ImportError as exc:
        raise BackendUnavailableError(
            f"execution.backend: 'dask' needs dask.distributed, which cannot be imported ({exc}); "
            f"install it with: pip install 'tsoreduce[dask]'") from exc
    return distributed


# ---- the unit wrapper (runs wherever the unit runs) ----------------------------------------------

class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []

    def emit(self, record):
        d = dict(record.__dict__)
        d["msg"], d["args"] = record.getMessage(), None  # arguments may not pickle
        d["exc_info"] = d["exc_text"] = None
        d["tsoreduce_worker_pid"] = os.getpid()
        self.records.append(d)


class _Box:
    """Carries a unit's argument opaquely (dask must not read a tuple argument as a task)."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value


def _one_blas_thread():
    """BLAS/OpenMP pools limited to one thread while a unit runs, on every backend: dask workers run
    single-threaded BLAS (distributed's nanny sets OMP/MKL/OPENBLAS_NUM_THREADS=1) and a threaded
    BLAS changes the last bits of reductions (e.g. Stage 2's PCA), so results would otherwise depend
    on where the unit ran (threadpoolctl, a scikit-learn dependency)."""
    import numpy  # noqa: F401  threadpoolctl limits only the libraries already loaded: numpy's
    import scipy.linalg  # noqa: F401  and scipy's own BLAS (scikit-learn's PCA runs on scipy's)
    from threadpoolctl import threadpool_limits
    return threadpool_limits(limits=1)


def _unit(fn, box: _Box, origin_pid: int, numba_threads: int | None = None):
    """Run ``fn(box.value)`` as a work unit: nested execution is serial (no pool inside a worker) and,
    away from the origin process, the unit's tsoreduce log records are returned with its result.
    ``numba_threads`` caps the numba thread pool (Stage 1's prange kernels), so that workers sharing
    a machine do not oversubscribe its cores; the kernels' results do not depend on it."""
    if numba_threads:
        import numba
        numba.set_num_threads(max(1, min(numba_threads, numba.config.NUMBA_NUM_THREADS)))
    token = _CURRENT.set(SerialExecutor(nested=True))
    collect = None
    root = logging.getLogger("tsoreduce")
    old_level = root.level
    if origin_pid is not None and os.getpid() != origin_pid:  # None: the caller does not want them
        collect = _Collect()
        root.addHandler(collect)
        if root.level == logging.NOTSET or root.level > logging.INFO:
            root.setLevel(logging.INFO)
    try:
        with _one_blas_thread():
            return fn(box.value), (collect.records if collect else [])
    finally:
        _CURRENT.reset(token)
        if collect is not None:
            root.removeHandler(collect)
            root.setLevel(old_level)


def _replay(records):
    for d in records:
        rec = logging.makeLogRecord(d)
        logger = logging.getLogger(rec.name)
        if logger.isEnabledFor(rec.levelno):
            logger.handle(rec)


# ---- executors -------------------------------------------------------------------------------------

class Executor:
    """Runs work units: ``map(fn, items)`` returns ``[fn(item) for item in items]`` (in order).

    The base class and the interface every backend implements.

    Parameters
    ----------
    nested : bool
        This executor runs inside a work unit (stages must not start pools of their own).

    Attributes
    ----------
    name : str
        Backend name.
    distributes : bool
        Units leave this process.
    """

    name = "serial"
    distributes = False

    def __init__(self, nested: bool = False):
        self.nested = nested

    def map(self, fn, items, *, labels=None, desc="work units", progress=False,
            return_exceptions=False, forward_logs=True, on_result=None) -> list:
        """Run ``fn`` on every item.

        Parameters
        ----------
        fn : a module-level function (picklable by reference) of one argument.
        items : list of picklable arguments (paths, configuration, small arrays).
        labels : one short name per item for messages and task keys (default ``unit-<k>``).
        desc, progress : tqdm bar over finished units.
        return_exceptions : put a unit's exception in its result slot instead of raising it.
        forward_logs : re-emit the units' log records in this process.
        on_result : called here as ``on_result(k, result)`` when unit ``k`` finishes.

        Raises
        ------
        The first exception of a unit (its own type) unless ``return_exceptions``;
        WorkUnitError when a unit's worker kept dying.
        """
        raise NotImplementedError

    def close(self):
        """Stop what this executor started (nothing for serial)."""

    def worker_peak_rss_gb(self) -> dict:
        """Peak resident memory (VmHWM) of each live worker process, in GB."""
        return {f"pid {os.getpid()}": _vmhwm_gb()}


def _threads_per_worker(workers: int) -> int:
    """Cores of this machine per local worker (at least 1)."""
    return max(1, (os.cpu_count() or 1) // max(1, workers))


def _labels(items, labels):
    return list(labels) if labels is not None else [f"unit-{k}" for k in range(len(items))]


def _bar(n, desc, progress):
    from tqdm.auto import tqdm
    return tqdm(total=n, desc=desc, unit="unit", disable=not progress)


def _settle(results: dict, k: int, value, on_result, bar):
    """Unit ``k`` is done with ``value`` (its result, or its exception under ``return_exceptions``):
    record it, hand it to ``on_result`` and advance the bar (the pool and dask loops)."""
    results[k] = value
    if on_result is not None:
        on_result(k, value)
    bar.update(1)


def _vmhwm_gb(pid="self") -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1e6
    except OSError:
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6 if pid == "self" else float("nan")


class SerialExecutor(Executor):
    """Every unit in this process, in order; nothing is started (the default backend).

    Parameters
    ----------
    nested : bool
        This executor runs inside a work unit.
    """

    def map(self, fn, items, *, labels=None, desc="work units", progress=False,
            return_exceptions=False, forward_logs=True, on_result=None):
        items = list(items)
        out = []
        with _bar(len(items), desc, progress) as bar:
            for item in items:
                try:
                    with _one_blas_thread():  # as in a worker process (see _one_blas_thread)
                        out.append(fn(item))
                except Exception as exc:
                    if not return_exceptions:
                        raise
                    out.append(exc)
                if on_result is not None:
                    on_result(len(out) - 1, out[-1])
                bar.update(1)
        return out


class ProcessesExecutor(Executor):
    """A pool of ``workers`` spawned processes (started at the first map, kept for the session).

    Python documentation, ``concurrent.futures.ProcessPoolExecutor`` (docs/sources.md).  A pool broken
    by a killed worker is rebuilt and the unfinished units are submitted again.

    Parameters
    ----------
    workers : int
        Worker processes.
    retries : int
        Times a unit that raised an exception is run again.
    lost_worker_retries : int
        Times the pool is rebuilt after a worker process died.
    """

    name = "processes"
    distributes = True

    def __init__(self, workers: int, *, retries: int = 0, lost_worker_retries: int = 3):
        super().__init__()
        self.workers, self.retries, self.lost_worker_retries = workers, retries, lost_worker_retries
        self._pool = None

    def _get_pool(self):
        if self._pool is None:
            import multiprocessing
            # spawn: the parent may hold numba / BLAS thread pools, which fork would copy half-locked
            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))
            log.info("execution: started a pool of %d worker processes", self.workers)
        return self._pool

    def map(self, fn, items, *, labels=None, desc="work units", progress=False,
            return_exceptions=False, forward_logs=True, on_result=None):
        items, labels = list(items), _labels(items, labels)
        results: dict = {}
        tries = {k: 0 for k in range(len(items))}
        lost = 0
        pid = os.getpid()
        with _bar(len(items), desc, progress) as bar:
            while len(results) < len(items):
                pool = self._get_pool()
                futs = {pool.submit(_unit, fn, _Box(items[k]), pid if forward_logs else None,
                                    _threads_per_worker(self.workers)): k
                        for k in tries if k not in results}
                broken = False
                from concurrent.futures import as_completed
                for fut in as_completed(futs):
                    k = futs[fut]
                    try:
                        res, records = fut.result()
                    except BrokenProcessPool:
                        broken = True
                        continue
                    except Exception as exc:
                        tries[k] += 1
                        if tries[k] <= self.retries:
                            log.warning("execution: %s raised %s: %s; running it again (%d/%d)", labels[k],
                                        type(exc).__name__, exc, tries[k], self.retries)
                            continue
                        if not return_exceptions:
                            self._abandon()
                            raise
                        res = exc
                    else:
                        if forward_logs:
                            _replay(records)
                    _settle(results, k, res, on_result, bar)
                if broken:
                    lost += 1
                    todo = [labels[k] for k in tries if k not in results]
                    self._abandon()
                    if lost > self.lost_worker_retries and return_exceptions:
                        for k in [k for k in tries if k not in results]:
                            results[k] = WorkUnitError(labels[k], f"a worker process died {lost} times; "
                                                       f"not retried again (execution.lost_worker_retries)")
                        break
                    if lost > self.lost_worker_retries:
                        raise WorkUnitError(todo[0], f"a worker process died {lost} times (last with "
                                            f"{len(todo)} unit(s) unfinished: {', '.join(todo[:5])}); "
                                            f"not retried again (execution.lost_worker_retries)")
                    log.warning("execution: a worker process died; restarting the pool and running the "
                                "%d unfinished unit(s) again (%d/%d): %s", len(todo), lost,
                                self.lost_worker_retries, ", ".join(todo[:5]))
        return [results[k] for k in range(len(items))]

    def _abandon(self):
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def worker_peak_rss_gb(self):
        procs = getattr(self._pool, "_processes", None) or {}
        return {f"pid {p}": _vmhwm_gb(p) for p in list(procs)}

    def close(self):
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


class DaskExecutor(Executor):
    """``dask.distributed``: a LocalCluster started here (``scheduler='local'``) or a running scheduler.

    Units go to the scheduler with ``client.map(..., pure=False, retries=retries)``; only the unit's
    arguments and result travel (paths, configuration, small arrays).  Dask.distributed documentation
    (docs/sources.md).

    Parameters
    ----------
    scheduler : str
        ``"local"`` or the address of a running scheduler (``tcp://host:8786``).
    workers : int, optional
        Local worker processes (default: the number of CPUs).
    memory_limit : str
        Memory limit per local worker (``"auto"`` or e.g. ``"4GB"``).
    retries : int
        Times a unit that raised an exception is run again.
    lost_worker_retries : int
        ``distributed.scheduler.allowed-failures`` of a local cluster.
    client : distributed.Client, optional
        A client to use instead of starting one (not closed by this executor).
    """

    name = "dask"
    distributes = True

    def __init__(self, scheduler: str = "local", workers: int | None = None, *, memory_limit="auto",
                 retries: int = 0, lost_worker_retries: int = 3, client=None):
        super().__init__()
        self.scheduler, self.workers, self.memory_limit = scheduler, workers, memory_limit
        self.retries, self.lost_worker_retries = retries, lost_worker_retries
        self._client, self._cluster, self._own_client = client, None, client is None

    @property
    def client(self):
        """The ``distributed.Client`` (started on first use)."""
        if self._client is None:
            distributed = _import_distributed()
            import dask
            if self.scheduler == "local":
                n = self.workers or os.cpu_count() or 1
                with dask.config.set({"distributed.scheduler.allowed-failures": self.lost_worker_retries}):
                    self._cluster = distributed.LocalCluster(
                        n_workers=n, threads_per_worker=1, processes=True,
                        memory_limit=self.memory_limit, dashboard_address=None)
                self._client = distributed.Client(self._cluster)
                log.info("execution: started a dask LocalCluster of %d worker processes (%s)", n,
                         self._cluster.scheduler_address)
            else:
                try:
                    self._client = distributed.Client(self.scheduler, timeout="30s")
                except OSError as exc:
                    raise ConfigError(f"execution.scheduler: cannot connect to the dask scheduler at "
                                      f"{self.scheduler!r} ({exc})") from exc
                nw = len(self._client.scheduler_info().get("workers", {}))
                log.info("execution: connected to the dask scheduler %s (%d workers)", self.scheduler, nw)
                if self.workers:
                    log.info("execution.workers = %d is ignored: the running cluster at %s decides",
                             self.workers, self.scheduler)
        return self._client

    def map(self, fn, items, *, labels=None, desc="work units", progress=False,
            return_exceptions=False, forward_logs=True, on_result=None):
        from distributed import as_completed
        from distributed.scheduler import KilledWorker

        items, labels = list(items), _labels(items, labels)
        if not items:
            return []
        client = self.client
        tag = uuid.uuid4().hex[:8]
        keys = [f"tsoreduce-{lab}-{tag}" for lab in labels]
        nt = _threads_per_worker(self.workers or os.cpu_count()) if self._cluster is not None else None
        futs = client.map(_unit, [fn] * len(items), [_Box(x) for x in items], [os.getpid() if forward_logs else None] * len(items),
                          [nt] * len(items), key=keys, pure=False, retries=self.retries)
        index = {f.key: k for k, f in enumerate(futs)}
        results: dict = {}
        with _bar(len(items), desc, progress) as bar:
            for fut in as_completed(futs):
                k = index[fut.key]
                try:
                    res, records = fut.result()
                except KilledWorker as exc:
                    err = WorkUnitError(labels[k], f"its worker died {self.lost_worker_retries + 1} times "
                                        f"while running it ({exc}); the unit is not tried again")
                    if not return_exceptions:
                        client.cancel(futs)
                        raise err from exc
                    res = err
                except Exception as exc:
                    if not return_exceptions:
                        client.cancel(futs)
                        raise
                    res = exc
                else:
                    if forward_logs:
                        _replay(records)
                _settle(results, k, res, on_result, bar)
        return [results[k] for k in range(len(items))]

    def worker_peak_rss_gb(self):
        if self._client is None:
            return {}
        return {w: v for w, v in self._client.run(_vmhwm_gb).items()}

    def close(self):
        if self._own_client and self._client is not None:
            self._client.close()
            self._client = None
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None


# ---- the current executor --------------------------------------------------------------------------

_DEFAULT = SerialExecutor()
_CURRENT: contextvars.ContextVar = contextvars.ContextVar("tsoreduce_executor", default=_DEFAULT)


def current() -> Executor:
    """The executor of the enclosing :func:`session` (serial outside any session).

    Returns
    -------
    Executor
        The current executor.
    """
    return _CURRENT.get()


def make_executor(section: dict | None) -> Executor:
    """An executor from a (validated or raw) ``execution`` section; nothing starts until its first map.

    Parameters
    ----------
    section : dict or None
        The ``execution`` section.

    Returns
    -------
    Executor
        A SerialExecutor, ProcessesExecutor or DaskExecutor.
    """
    cfg = validate_config(section)
    if cfg["backend"] == "serial":
        return SerialExecutor()
    workers = cfg["workers"] or os.cpu_count() or 1
    if cfg["backend"] == "processes":
        return ProcessesExecutor(workers, retries=cfg["retries"],
                                 lost_worker_retries=cfg["lost_worker_retries"])
    return DaskExecutor(cfg["scheduler"], cfg["workers"], memory_limit=cfg["memory_limit"],
                        retries=cfg["retries"], lost_worker_retries=cfg["lost_worker_retries"])


class _Session:
    def __init__(self, executor: Executor, own: bool):
        self.executor, self._own = executor, own
        self._token = _CURRENT.set(executor)

    def close(self):
        if self._token is None:
            return
        try:
            if self._own and self.executor.distributes:
                peaks = self.executor.worker_peak_rss_gb()
                if peaks:
                    log.info("execution: %s backend, peak RSS per worker (GB): %s", self.executor.name,
                             ", ".join(f"{v:.2f}" for v in peaks.values()))
        except Exception as exc:  # diagnostics only; never fail a finished run on them
            log.debug("execution: no worker memory figures (%s)", exc)
        finally:
            _CURRENT.reset(self._token)
            self._token = None
            if self._own:
                self.executor.close()


def open_session(section: dict | None) -> _Session:
    """Make the executor of ``section`` current until ``.close()`` (which also stops it).

    Inside a work unit (a nested serial executor is current) the section is ignored: a unit never
    starts a pool or a cluster of its own.

    Parameters
    ----------
    section : dict or None
        The ``execution`` section.

    Returns
    -------
    object
        The session: ``.executor`` and ``.close()``.
    """
    cur = current()
    if cur.nested:
        if section and validate_config(section)["backend"] != "serial":
            log.info("execution: inside a work unit; this run's units run serially in its worker")
        return _Session(cur, own=False)
    return _Session(make_executor(section), own=True)


@contextmanager
def session(section: dict | None = None):
    """Context manager around :func:`open_session`.

    Parameters
    ----------
    section : dict or None
        The ``execution`` section.

    Yields
    ------
    Executor
        The executor current inside the block.
    """
    s = open_session(section)
    try:
        yield s.executor
    finally:
        s.close()
