"""Benchmark: peak memory of Stage 2 against the number of integrations (issue 17).

For each ``--nints`` a synthetic SLITLESSPRISM rateints (Gaussian trace on a background, Gaussian
noise, ERR/DQ/VAR_POISSON/VAR_RNOISE) is written once into ``--workdir``; a child process then does
what :func:`tsoreduce.pipeline.run_stage2_files` does -- read, ``spectroscopic.run``, write the
diagnostics and the calints -- while a thread samples its resident memory (``VmRSS``, every 5 ms).
Printed per size: the peak of each phase and the process peak (``ru_maxrss``); then the
per-integration slope of each phase (least squares over the sizes) and its extrapolation to a full
9-segment exposure (1779 integrations).  For reference: the input RateData is 5 arrays of 120 kB per
integration (600 kB); the product adds a new SCI and DQ (240 kB); ERR and the variances are shared.

Usage::

    python benchmarks/bench_stage2_memory.py                       # 100, 400, 800 integrations
    python benchmarks/bench_stage2_memory.py --nints 198 396 1779 --workdir /tmp/s2mem
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

FULL_NINTS = 1779

CHILD = r"""
import json, resource, sys, threading, time
state = {"phase": "import", "peak": {}}
def rss():
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1e6
def sample():
    while True:
        p = state["phase"]
        state["peak"][p] = max(state["peak"].get(p, 0.0), rss())
        time.sleep(0.005)
threading.Thread(target=sample, daemon=True).start()
from tsoreduce import io, spectroscopic
src, out = sys.argv[1], sys.argv[2]
def phase(name):
    time.sleep(0.02)
    state["phase"] = name
phase("read"); rates = io.read_segments([src])
phase("run")
if hasattr(spectroscopic, "run"):
    res = spectroscopic.run(rates)
    product, diag = res.product, res.diagnostics
else:  # the Stage 2 of before issue 18 (a tuple), for before/after comparisons
    product, diag = spectroscopic.run_stage2(rates)
del rates
phase("write"); spectroscopic.write_stage2_diagnostics(out + "_diag.fits", diag, overwrite=True)
io.write_calints(out + "_calints.fits", product, overwrite=True)
phase("end")
state["peak"]["process"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
print("PEAKS", json.dumps(state["peak"]))
"""


def write_input(path: Path, nints: int, seed: int = 0) -> None:
    from tsoreduce import io
    from tsoreduce.datamodel import DQ, IntTimes, RateData

    rng = np.random.default_rng(seed)
    ny, nx = 416, 72
    y, x = np.mgrid[0:ny, 0:nx]
    star = 200.0 * np.exp(-0.5 * ((y - 290) / 85.0) ** 2) * np.exp(-0.5 * ((x - 37.0) / 1.1) ** 2)
    frame = (star + 5.0).astype(np.float32)
    var = (frame / 31.0 + 0.09).astype(np.float32)
    data = np.empty((nints, ny, nx), np.float32)
    for i in range(nints):
        data[i] = frame + rng.normal(size=frame.shape).astype(np.float32) * np.sqrt(var)
    dq = np.zeros(data.shape, np.uint32)
    dq[:, :, :4] = DQ.REFERENCE_PIXEL
    dt = 10.0 / 86400
    t = 60000.0 + np.arange(nints) * dt
    rates = RateData(data=data, err=np.broadcast_to(np.sqrt(var), data.shape), dq=dq,
                     var_poisson=np.broadcast_to(var - 0.09, data.shape),
                     var_rnoise=np.full(data.shape, 0.09, np.float32),
                     int_times=IntTimes(np.arange(1, nints + 1), t - dt / 2, t, t + dt / 2),
                     meta={"INTSTART": 1, "INTEND": nints, "NINTS": nints})
    io.write_rateints(path, rates, overwrite=True)


def measure(src: Path, out: Path) -> dict:
    r = subprocess.run([sys.executable, "-c", CHILD, str(src), str(out)], capture_output=True, text=True,
                       env=os.environ)
    if r.returncode:
        raise SystemExit(r.stderr[-3000:])
    line = next(l for l in r.stdout.splitlines() if l.startswith("PEAKS "))
    return json.loads(line[6:])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--nints", type=int, nargs="+", default=[100, 400, 800])
    p.add_argument("--workdir", default="/tmp/tsoreduce_stage2_memory")
    a = p.parse_args(argv)
    work = Path(a.workdir)
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    print("| integrations | read (GB) | run (GB) | write (GB) | process peak (GB) |")
    print("|---|---|---|---|---|")
    for n in a.nints:
        src = work / f"n{n}_rateints.fits"
        if not src.exists():
            write_input(src, n)
        pk = measure(src, work / f"n{n}")
        rows.append((n, pk))
        print(f"| {n} | {pk['read']:.3f} | {pk['run']:.3f} | {pk['write']:.3f} | {pk['process']:.3f} |",
              flush=True)
    if len(rows) > 1:
        n = np.array([r[0] for r in rows], float)
        for key in ("read", "run", "write", "process"):
            slope, icpt = np.polyfit(n, [r[1][key] for r in rows], 1)
            print(f"{key:8s}: {slope * 1e3:.2f} MB per integration, {icpt:.2f} GB fixed; "
                  f"{FULL_NINTS} integrations -> {icpt + slope * FULL_NINTS:.2f} GB")


if __name__ == "__main__":
    main()
