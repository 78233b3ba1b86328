"""Fault injection as a user meets it, through the command line in subprocesses (issue 15).

* ``kill -9`` during each stage, then the same command again -> the products are identical (hash of
  every data array and table column) to those of an uninterrupted run;
* a full disk (a 1 MB tmpfs when the test may mount one, else the writes patched to raise ENOSPC)
  -> one ``tsoreduce: error:`` line with the path and errno, exit 4, no partial file; the same
  command on a disk with room completes;
* two concurrent runs on one output_dir -> exactly one proceeds, the other exits 5;
* a read-only output dir -> one error line, exit 4.

The run is the smallest real one: 16 integrations x 5 groups in 2 uncal segments, least-squares
Stage 4, no figures.  The kill is injected by a driver script that wraps ``os.replace`` (every
product goes through ``tsoreduce._util.atomic_path``) and SIGKILLs its own process at the chosen
product of the chosen stage, before or after its rename -- the states a real kill leaves.
"""

import errno
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

REPO = Path(__file__).parents[1]
STAGE_DIRS = ["simulation", "stage1", "stage2", "stage3", "stage4"]


def _run_yaml(tmp_path, out) -> Path:
    from tsoreduce.simulate import LRSSimConfig
    sim = {"nints": 16, "ngroups": 5, "nsegments": 2, "seed": 7}
    tp = LRSSimConfig(**sim).transit_parameters()
    dur = LRSSimConfig(**sim).series_duration_days
    user = {
        "name": "f", "output_dir": str(out), "plots": False,
        "input": {"simulate": sim},
        "stage1": {"jump": {"method": "up_the_ramp"}},
        "stage2": {"pca": {"skip": True}},
        "stage3": {"lightcurves": {"bin_width": 3.0}},
        "stage4": {"fitter": {"method": "lsq"}, "n_processes": 1,
                   "systematics": {"ramp": "none", "polynomial_order": 0},
                   "parameters": {
                       "per": {"value": tp["period"], "prior": "fixed"},
                       "t0": {"value": tp["t0"], "prior": "uniform",
                              "bounds": [tp["t0"] - 0.1 * dur, tp["t0"] + 0.1 * dur]},
                       "rp_rs": {"value": 0.12, "prior": "uniform", "bounds": [0.05, 0.2]},
                       "a_rs": {"value": tp["a_rs"], "prior": "fixed"},
                       "inc": {"value": tp["inc"], "prior": "fixed"}}},
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(user, sort_keys=False))
    return path


# the driver: the CLI, with os.replace wrapped to SIGKILL this process at one product of one stage
DRIVER = textwrap.dedent("""
    import os, signal, sys
    stage_dir, nth, when = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    real_replace = os.replace
    count = [0]
    def replace(src, dst, *a, **k):
        dst_s = str(dst)
        is_product = (os.sep + stage_dir + os.sep) in dst_s and not os.path.basename(dst_s).startswith(".")
        if is_product:
            count[0] += 1
            if count[0] == nth and when == "before":
                os.kill(os.getpid(), signal.SIGKILL)   # temp file written, not renamed
        real_replace(src, dst, *a, **k)
        if is_product and count[0] == nth and when == "after":
            os.kill(os.getpid(), signal.SIGKILL)       # product renamed, stage not marked done
    os.replace = replace
    from tsoreduce.cli import main
    sys.exit(main(sys.argv[4:]))
""")


def _env():
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("COLUMNS", None)
    return env


def _cli(args, **kw):
    return subprocess.run([sys.executable, "-m", "tsoreduce.cli", *map(str, args)], capture_output=True,
                          text=True, env=_env(), **kw)


def _hash_product(path: Path) -> str:
    """Hash of a product's data: every FITS HDU's array or table, every ECSV column, every HDF5
    dataset -- not headers or attributes, which hold dates and run ids."""
    h = hashlib.sha256()
    name = path.name
    if name.endswith(".fits"):
        from astropy.io import fits
        with fits.open(path) as hdul:
            for hdu in hdul:
                if hdu.data is not None:
                    h.update(hdu.name.encode())
                    h.update(np.ascontiguousarray(hdu.data).tobytes())
    elif name.endswith(".ecsv"):
        from astropy.table import Table
        t = Table.read(path, format="ascii.ecsv")
        for c in t.colnames:
            h.update(c.encode())
            h.update(np.ascontiguousarray(np.asarray(t[c])).tobytes())
    elif name.endswith((".h5", ".hdf5")):
        import h5py
        with h5py.File(path, "r") as f:
            def visit(key, obj):
                if isinstance(obj, h5py.Dataset):
                    h.update(key.encode())
                    h.update(np.ascontiguousarray(obj[()]).tobytes())
            f.visititems(visit)
    else:
        h.update(path.read_bytes())
    return h.hexdigest()


def _product_hashes(out: Path) -> dict:
    hashes = {}
    for d in STAGE_DIRS:
        marker = json.loads((out / d / ".done.json").read_text())
        for rel in marker["products"]:
            hashes[f"{d}/{rel}"] = _hash_product(out / d / rel)
    return hashes


def _leftovers(out: Path) -> list:
    return [str(p) for p in out.rglob("*.tmp*")]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One uninterrupted run: its run file, output directory and product hashes."""
    tmp = tmp_path_factory.mktemp("faults_ref")
    out = tmp / "out"
    run = _run_yaml(tmp, out)
    t = time.perf_counter()
    res = _cli([run, "--no-progress", "-q"])
    assert res.returncode == 0, res.stderr
    print(f"\nuninterrupted small run: {time.perf_counter() - t:.1f} s")
    return run, out, _product_hashes(out)


# (stage index, which product of the stage, kill before or after its rename)
KILLS = [(0, 1, "after"), (1, 1, "after"), (2, 1, "before"), (3, 2, "before"), (4, 1, "after")]


@pytest.mark.parametrize("stage,nth,when", KILLS, ids=[f"{STAGE_DIRS[s]}-{w}" for s, _, w in KILLS])
def test_kill9_during_stage_then_rerun_gives_identical_products(reference, tmp_path, stage, nth, when):
    run, ref_out, ref_hashes = reference
    out = tmp_path / "out"
    # the finished stages before the one killed are those of the uninterrupted run (markers and all):
    # only the stage under test runs twice
    out.mkdir()
    for d in STAGE_DIRS[:stage]:
        shutil.copytree(ref_out / d, out / d)
    args = [run, "--output-dir", out, "--no-progress", "-q"]
    killed = subprocess.run([sys.executable, "-c", DRIVER, STAGE_DIRS[stage], str(nth), when,
                             *map(str, args)], capture_output=True, text=True, env=_env())
    assert killed.returncode == -signal.SIGKILL, (killed.returncode, killed.stderr[-2000:])
    assert (out / STAGE_DIRS[stage] / ".running.json").exists()
    assert not (out / STAGE_DIRS[stage] / ".done.json").exists()
    again = _cli(args)
    assert again.returncode == 0, again.stderr
    assert "stale lock" in again.stderr  # the killed run's lock, taken over with a warning
    assert _product_hashes(out) == ref_hashes
    assert _leftovers(out) == []  # a killed write's temporary file is cleaned on resume


def _can_mount_tmpfs(where: Path) -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(where)], capture_output=True)
    return r.returncode == 0


ENOSPC_DRIVER = textwrap.dedent("""
    import errno, sys
    import astropy.io.fits as fits
    real = fits.HDUList.writeto
    def writeto(self, name, *a, **k):
        if "stage1" in str(name):
            with open(name, "wb") as fh:           # what a full disk leaves: part of the file
                fh.write(b"SIMPLE  =" + b" " * 1000)
            raise OSError(errno.ENOSPC, "No space left on device", str(name))
        return real(self, name, *a, **k)
    fits.HDUList.writeto = writeto
    from tsoreduce.cli import main
    sys.exit(main(sys.argv[1:]))
""")


@pytest.mark.parametrize("how", ["tmpfs", "patched"])
def test_disk_full_clean_error_no_partial_file_then_rerun_completes(reference, tmp_path, how):
    run, ref_out, _ = reference
    disk = tmp_path / "disk"
    disk.mkdir()
    out = disk / "out"
    mounted = how == "tmpfs" and _can_mount_tmpfs(disk)
    if how == "tmpfs" and not mounted:
        pytest.skip("no tmpfs can be mounted here (needs root); the 'patched' case covers ENOSPC")
    try:
        if mounted:
            # a real full disk: 1 MB cannot hold the uncal segments (~1.5 MB each)
            res = _cli([run, "--output-dir", out, "--no-progress", "-q", "--stages", "1"])
            stage = "simulation"
        else:
            # no tmpfs here: astropy's writer fails with ENOSPC after writing part of a Stage 1 product
            out.mkdir()
            shutil.copytree(ref_out / "simulation", out / "simulation")
            res = subprocess.run([sys.executable, "-c", ENOSPC_DRIVER, run, "--output-dir", out,
                                  "--no-progress", "-q", "--stages", "1"],
                                 capture_output=True, text=True, env=_env())
            stage = "stage1"
        print(f"\nfull disk ({'tmpfs 1 MB' if mounted else 'patched writeto'}): {res.stderr.strip()}")
        assert res.returncode == 4, res.stderr
        errors = [ln for ln in res.stderr.splitlines() if ln.startswith("tsoreduce: error:")]
        assert len(errors) == 1 and "Traceback" not in res.stderr
        assert f"errno {errno.ENOSPC} ENOSPC" in errors[0] and str(out / stage) in errors[0]
        assert _leftovers(out) == []
        assert list((out / stage).glob("*.fits")) == []  # no partial product
        assert not (out / stage / ".done.json").exists()
        if mounted:
            subprocess.run(["umount", str(disk)], check=True)
            mounted = False
            out.mkdir()  # the same output_dir, now on a disk with room
        again = _cli([run, "--output-dir", out, "--no-progress", "-q", "--stages", "1"])
        assert again.returncode == 0, again.stderr
        assert (out / "stage1" / ".done.json").exists()
    finally:
        if mounted:
            subprocess.run(["umount", str(disk)])


def test_two_concurrent_runs_exactly_one_proceeds(reference, tmp_path):
    run, _, _ = reference
    out = tmp_path / "out"
    args = [sys.executable, "-m", "tsoreduce.cli", str(run), "--output-dir", str(out), "--no-progress",
            "-q", "--stages", "1"]
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
             for _ in range(2)]
    results = [(p.wait(), p.stderr.read()) for p in procs]
    codes = sorted(c for c, _ in results)
    assert codes == [0, 5], results
    refused = next(err for c, err in results if c == 5)
    assert "in use by another tsoreduce run" in refused and "pid" in refused
    assert (out / "simulation" / ".done.json").exists()


def test_read_only_output_dir_clean_error(reference, tmp_path):
    run, _, _ = reference
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o555)
    try:
        if os.geteuid() == 0:
            # root writes into a 0555 directory regardless: the driver makes the lock file's open
            # fail with EACCES, as it would for any other user
            driver = textwrap.dedent("""
                import errno, os, sys
                real_open = os.open
                def guarded(path, *a, **k):
                    if str(path).startswith(sys.argv[1]):
                        raise PermissionError(errno.EACCES, "Permission denied", str(path))
                    return real_open(path, *a, **k)
                os.open = guarded
                from tsoreduce.cli import main
                sys.exit(main(sys.argv[2:]))
            """)
            res = subprocess.run([sys.executable, "-c", driver, str(out), str(run), "--output-dir",
                                  str(out), "-q", "--no-progress"], capture_output=True, text=True, env=_env())
        else:
            res = _cli([run, "--output-dir", out, "-q", "--no-progress"])
        assert res.returncode == 4, res.stderr
        assert res.stderr.count("tsoreduce: error:") == 1 and "Traceback" not in res.stderr
        assert f"errno {errno.EACCES} EACCES" in res.stderr and str(out) in res.stderr
        assert list(out.iterdir()) == []
    finally:
        out.chmod(0o755)
