"""Benchmark: a batch of small simulated exposures, serial vs processes vs Dask (LocalCluster).

Four exposures (default: 80 integrations x 20 groups in 2 segments each, from
``tsoreduce.simulate.write_lrs_simulation`` with different seeds; simulated once, before any timing)
are reduced uncal -> spectrum with ``tsoreduce batch`` semantics (:func:`tsoreduce.batch.run_batch`):
each exposure is one work unit of the backend.  Stage 4 is least squares and figures are off, so the
figures are the reduction's.  Each backend runs in a fresh child process (a cold start, as a user's
run: worker start-up and imports are part of the wall time):

* serial     -- the exposures one after another in the child;
* processes  -- ``execution: {backend: processes, workers: 2}``;
* dask       -- ``execution: {backend: dask, scheduler: local, workers: 2}`` (LocalCluster started and
                stopped inside the timed call).

Printed per backend: wall time, speed-up and parallel efficiency (T_serial / (workers x T)), the peak
resident memory (VmHWM) of each worker process and of the parent, and whether every exposure's
products are identical to the serial run's (sha256 of every data array and table column).

    python benchmarks/bench_scaling.py
    python benchmarks/bench_scaling.py --exposures 4 --nints 40 --ngroups 10     # quicker
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

BACKENDS = {"serial": {"backend": "serial"},
            "processes": {"backend": "processes", "workers": 2},
            "dask": {"backend": "dask", "scheduler": "local", "workers": 2}}


def simulate(workdir: Path, n: int, nints: int, ngroups: int) -> list[dict]:
    from tsoreduce.simulate import LRSSimConfig, lrs
    out = []
    for k in range(n):
        d = workdir / "input" / f"exp{k + 1}"
        cfg = LRSSimConfig(nints=nints, ngroups=ngroups, nsegments=2, seed=100 + k)
        if not (d / "done").exists():
            res = lrs.write_lrs_simulation(cfg, d, overwrite=True)
            (d / "done").write_text(json.dumps({"uncal": [str(p) for p in res["uncal"]],
                                                "references": {a: str(b) for a, b in res["references"].items()}}))
        m = json.loads((d / "done").read_text())
        m["transit"] = {a: float(b) for a, b in cfg.transit_parameters().items()}
        m["name"] = f"exp{k + 1}"
        out.append(m)
    return out


def batch_file(workdir: Path, exposures, backend: str) -> Path:
    import yaml
    tp = exposures[0]["transit"]
    doc = {"output_dir": str(workdir / backend), "plots": False, "execution": BACKENDS[backend],
           "stage1": {"reset": {"n_groups": 6}},
           "stage4": {"systematics": {"ramp": "none", "polynomial_order": 1},
                      "parameters": {"per": {"value": tp["period"], "prior": "fixed"},
                                     "t0": {"value": tp["t0"], "prior": "fixed"},
                                     "a_rs": {"value": tp["a_rs"], "prior": "fixed"},
                                     "inc": {"value": tp["inc"], "prior": "fixed"},
                                     "q1": {"value": 0.04, "prior": "fixed"},
                                     "q2": {"value": 0.25, "prior": "fixed"},
                                     "rp_rs": {"value": 0.12, "prior": "uniform", "bounds": [0.0, 0.3]}},
                      "fitter": {"method": "lsq"}, "n_processes": 1},
           "exposures": [{"name": e["name"], "input": {"uncal": e["uncal"], "references": e["references"]}}
                         for e in exposures]}
    path = workdir / f"batch_{backend}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def child(path: str):
    """Run one batch file (in a fresh process) and print its figures as JSON on the last line."""
    from tsoreduce import batch
    exps, bdir, ex = batch.load_batch([path])
    import shutil
    shutil.rmtree(bdir, ignore_errors=True)
    t0 = time.perf_counter()
    rows = batch.run_batch(exps, bdir, execution=ex, progress=False)
    wall = time.perf_counter() - t0
    summary = json.loads((Path(bdir) / "batch_summary.json").read_text())
    with open("/proc/self/status") as f:
        parent = next(int(l.split()[1]) / 1e6 for l in f if l.startswith("VmHWM:"))
    print(json.dumps({"wall_s": wall, "status": [r["status"] for r in rows],
                      "workers_gb": summary.get("worker_peak_rss_gb", {}), "parent_gb": parent,
                      "batch_dir": str(bdir)}))


def hashes(out_dir: Path) -> dict:
    from astropy.io import fits
    from astropy.table import Table
    import h5py

    h = {}

    def digest(a):
        return hashlib.sha256(np.ascontiguousarray(np.asarray(a)).tobytes()).hexdigest()[:16]

    for f in sorted(out_dir.rglob("*")):
        if not f.is_file() or f.name.startswith(".") or f.name.startswith("batch_"):
            continue
        rel = str(f.relative_to(out_dir))
        if f.suffix == ".fits":
            with fits.open(f) as hdul:
                for ext in hdul:
                    # the ASDF extension mirrors the headers and provenance (which name each
                    # backend's own batch file), like the headers it is not a data product
                    if ext.data is not None and ext.name != "ASDF":
                        h[f"{rel}[{ext.name}]"] = digest(ext.data)
        elif f.suffix == ".ecsv":
            t = Table.read(f, format="ascii.ecsv")
            for c in t.colnames:
                h[f"{rel}:{c}"] = digest(t[c])
        elif f.suffix == ".h5":
            with h5py.File(f) as hf:
                hf.visititems(lambda n, o: h.__setitem__(f"{rel}/{n}", digest(o[()]))
                              if isinstance(o, h5py.Dataset) else None)
    return h


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--exposures", type=int, default=4)
    p.add_argument("--nints", type=int, default=80)
    p.add_argument("--ngroups", type=int, default=20)
    p.add_argument("--workdir", default="/tmp/tsoreduce_bench_scaling")
    p.add_argument("--backends", default="serial,processes,dask")
    p.add_argument("--child", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        return child(a.child)
    workdir = Path(a.workdir) / f"{a.exposures}x{a.nints}x{a.ngroups}"
    workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    exposures = simulate(workdir, a.exposures, a.nints, a.ngroups)
    print(f"{a.exposures} exposures of {a.nints} integrations x {a.ngroups} groups (2 segments each), "
          f"simulated in {time.perf_counter() - t0:.0f} s; {os.cpu_count()} CPUs")
    res = {}
    for b in a.backends.split(","):
        path = batch_file(workdir, exposures, b)
        r = subprocess.run([sys.executable, __file__, "--child", str(path)], capture_output=True, text=True)
        if r.returncode != 0:
            print(r.stderr[-3000:])
            raise SystemExit(f"{b} failed")
        res[b] = json.loads(r.stdout.strip().splitlines()[-1])
        print(f"  {b}: {res[b]['wall_s']:.1f} s, statuses {res[b]['status']}", flush=True)
    ref = hashes(Path(res["serial"]["batch_dir"])) if "serial" in res else None
    t_ser = res.get("serial", {}).get("wall_s")
    print("\n| backend | workers | wall (s) | speed-up | efficiency | peak RSS per worker (GB) | parent (GB) "
          "| identical to serial |")
    print("|---|---|---|---|---|---|---|---|")
    for b, r in res.items():
        nw = BACKENDS[b].get("workers", 1)
        same = "-" if ref is None or b == "serial" else (
            "yes" if hashes(Path(r["batch_dir"])) == ref else "NO")
        sp = t_ser / r["wall_s"] if t_ser else float("nan")
        workers = ", ".join(f"{v:.2f}" for v in r["workers_gb"].values()) if b != "serial" else "(in parent)"
        print(f"| {b} | {nw} | {r['wall_s']:.1f} | {sp:.2f} | {sp / nw:.2f} | {workers} | "
              f"{r['parent_gb']:.2f} | {same} |")
    (workdir / "bench_scaling.json").write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
