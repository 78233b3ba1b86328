"""Tiny stand-in stage modules and I/O for testing the pipeline machinery without the real stages.

Stage 1 obeys the stage contract (``run(product, config, *, plot_dir, references) -> StageResult``);
the others take the keyword arguments their real counterparts take today.  They do real (if simple)
arithmetic so a wrong wiring changes the numbers: Stage 1 takes the slope
between the first and last group, Stage 2 subtracts the median of the outer columns, Stage 3 sums
rows into 2 channels, Stage 4 writes the mean depth per channel.
"""

import json
import pickle
import sys
import types
from pathlib import Path

import numpy as np

from tsoreduce.config import Param
from tsoreduce.contract import StageResult
from tsoreduce.datamodel import IntTimes, LightCurves, RampData, RateData, SpectraData

CALLS = {}


def _count(name):
    CALLS[name] = CALLS.get(name, 0) + 1


def make_modules(fail_stage2_once=False):
    det = types.ModuleType("tsoreduce.detector")
    det.CONFIG_SCHEMA = {"ramp_fit": {"method": Param("ols", str, "ramp fitting method",
                                                      choices=("ols", "gls"))},
                         "drop_groups": Param(1, int, "groups dropped at the start", min=0, max=10)}

    def run(ramp, config=None, *, plot_dir=None, references=None):  # the stage contract
        _count("stage1")
        d = config["drop_groups"]
        slope = (ramp.data[:, -1] - ramp.data[:, d]) / (ramp.ngroups - 1 - d)
        figures = []
        if plot_dir is not None:
            figures.append(Path(plot_dir) / "stage1_fig.png")
            figures[-1].write_bytes(b"png")
        return StageResult(RateData(slope, int_times=ramp.int_times, meta=dict(ramp.meta)),
                           {"drop_groups": d}, figures)
    det.run = det.run_stage1 = det._run_in_place = run

    spec = types.ModuleType("tsoreduce.spectroscopic")
    spec.CONFIG_SCHEMA = {"background": {"skip": Param(False, bool, "skip the background step")}}
    state = {"fail": fail_stage2_once}

    def run_stage2(rates, config, *, plot_dir=None, references=None):
        from tsoreduce.contract import StageResult
        _count("stage2")
        if state["fail"]:
            state["fail"] = False
            raise KeyboardInterrupt("simulated interruption")
        bkg = 0.0 if config["background"]["skip"] else np.median(rates.data[:, :, :2], axis=(1, 2))
        return StageResult(rates.replace(data=rates.data - np.asarray(bkg)[..., None, None] if np.ndim(bkg)
                                         else rates.data), {"deep_frame": rates.data.mean(0)})
    spec.run = spec.run_stage2 = run_stage2
    spec.write_stage2_diagnostics = lambda path, diag, overwrite=False: np.save(f"{path}.npy", diag["deep_frame"])

    from tsoreduce.contract import Stage3Product, StageResult

    ext = types.ModuleType("tsoreduce.extraction")
    ext.CONFIG_SCHEMA = {"nchannels": Param(2, int, "number of channels", min=1, max=10)}

    def run_stage3(cal, config, *, plot_dir=None, progress=False):
        _count("stage3")
        n = config["nchannels"]
        rows = np.array_split(np.arange(cal.data.shape[1]), n)
        flux = np.array([cal.data[:, r, 2:5].sum(axis=(1, 2)) for r in rows])
        flux /= np.median(flux, axis=1, keepdims=True)
        x1d = SpectraData(cal.data.sum(axis=2), int_times=cal.int_times)
        lc = LightCurves(time=cal.int_times.mid_bjd_tdb, flux=flux, err=np.full(flux.shape, 1e-3),
                         wavelength=np.arange(n) + 5.0, white_flux=flux.mean(0))
        return StageResult(Stage3Product(x1dints=x1d, lightcurves=lc))
    ext.run_stage3 = run_stage3

    lcm = types.ModuleType("tsoreduce.lightcurve")
    lcm.CONFIG_SCHEMA = {"fit": {"nwalkers": Param(16, int, "emcee walkers", min=4)}}

    def run_stage4(lc, config, *, plot_dir=None, references=None):
        _count("stage4")
        from astropy.table import Table

        from tsoreduce.contract import StageResult
        depth = (1 - lc.flux.min(axis=1)) * 1e6
        spec = Table({"wavelength": lc.wavelength, "transit_depth": depth,
                      "transit_depth_err": np.full(lc.nchan, 10.0)})
        product = types.SimpleNamespace(tables={"spectrum": spec}, files={}, white=types.SimpleNamespace(
            params={"rp_rs": 0.1}))
        return StageResult(product=product)

    def write_products(products, outdir, *, provenance=None):
        products.tables["spectrum"].write(Path(outdir) / "spectrum.ecsv", overwrite=True)
        (Path(outdir) / "white_fit.ecsv").write_text("# fake\n")
        return {"spectrum": Path(outdir) / "spectrum.ecsv", "white_fit": Path(outdir) / "white_fit.ecsv"}
    lcm.run = lcm.run_stage4 = run_stage4
    lcm.write_products = write_products
    lcm.output_names = lambda joint: ("spectrum.ecsv", "white_fit.ecsv")

    mrs = types.ModuleType("tsoreduce.mrs")
    mrs.CONFIG_SCHEMA = {"aperture_radius": Param(2.0, float, "aperture radius (spaxels)", min=0.5)}
    mrs.INPUT_SCHEMA = {"cubes": Param("*_s3d.fits", str, "glob of s3d cubes")}

    def run_mrs(cubes, config, *, plot_dir=None, references=None):
        _count("mrs")
        from tsoreduce.contract import Stage3Product, StageResult
        n = np.arange(6)
        flux = np.vstack([1 - 0.002 * ((n >= 2) & (n < 4))] * 3)
        return StageResult(product=Stage3Product(None, LightCurves(time=n * 0.01, flux=flux,
                                                                   err=np.full(flux.shape, 1e-4),
                                                                   wavelength=[5.0, 6.0, 7.0])))
    mrs.run = run_mrs
    mrs.read_cube_bands = lambda source, **crop: {"1A": source}
    mrs.write_products = lambda product, outdir, *, name="tso", overwrite=False: []

    sim = types.ModuleType("tsoreduce.simulate.lrs")

    from dataclasses import dataclass

    from tsoreduce._util import field_doc

    @dataclass
    class LRSSimConfig:
        """Fake simulator config (field descriptions in the fields' metadata, as the real one)."""
        nints: int = field_doc(6, "number of integrations")
        ngroups: int = field_doc(5, "groups per integration")
        nsegments: int = field_doc(2, "number of segments")
        depth: float = field_doc(0.01, "transit depth")

    def write_lrs_simulation(cfg, outdir, *, overwrite=False):
        _count("simulate")
        rng = np.random.default_rng(0)
        outdir = Path(outdir)
        paths = []
        per = cfg.nints // cfg.nsegments
        for s in range(cfg.nsegments):
            n = np.arange(s * per, (s + 1) * per)
            flux = 1 - cfg.depth * ((n >= 2) & (n < 4))
            star = np.array([5.0, 5.0, 100.0, 100.0, 100.0, 5.0])  # background 5, star 95 per group
            ramp = (np.cumsum(np.ones((per, cfg.ngroups, 8, 6)) * star, axis=1)
                    * np.where(star > 5, flux[:, None, None, None], 1.0) )
            ramp += rng.normal(0, 0.01, ramp.shape)
            it = IntTimes(n + 1, n * 0.01, n * 0.01 + 0.005, n * 0.01 + 0.01)
            p = outdir / f"sim-seg{s + 1:03d}_uncal.fits"
            write_uncal(p, RampData(ramp, int_times=it, meta={"INTSTART": int(n[0]) + 1}))
            paths.append(str(p))
        truth = outdir / "truth.json"
        truth.write_text(json.dumps({"depth": cfg.depth}))
        return {"uncal": paths, "truth": str(truth), "references": {}}
    sim.LRSSimConfig = LRSSimConfig
    sim.write_lrs_simulation = write_lrs_simulation
    # the real package's __init__ star-imports it when tsoreduce.simulate is first imported under
    # the fake (e.g. for simulate.truth in the run summary)
    sim.__all__ = ["LRSSimConfig", "write_lrs_simulation"]
    return {"tsoreduce.detector": det, "tsoreduce.spectroscopic": spec,
            "tsoreduce.extraction": ext, "tsoreduce.lightcurve": lcm, "tsoreduce.simulate.lrs": sim,
            "tsoreduce.mrs": mrs}


def _write(path, obj, overwrite=False, provenance=None):
    path = Path(path)
    if path.exists() and not overwrite:
        from tsoreduce.errors import OverwriteError
        raise OverwriteError(f"{path} exists")
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(pickle.dumps((obj, provenance)))
    tmp.replace(path)


def _read(path):
    return pickle.loads(Path(path).read_bytes())[0]


def write_uncal(path, ramp, *, overwrite=False, provenance=None):
    _write(path, ramp, overwrite, provenance)


def read_provenance(path):
    return pickle.loads(Path(path).read_bytes())[1]


def make_io():
    io = types.ModuleType("fake_io")
    io.read_uncal = _read
    io.read_segments = lambda paths, **kwargs: (lambda parts: parts[0] if len(parts) == 1 else
                                      __import__("tsoreduce.datamodel", fromlist=["x"]).concatenate(parts))(
        [_read(p) for p in paths])
    for name in ("write_rateints", "write_calints", "write_x1dints"):
        setattr(io, name, lambda path, obj, *, overwrite=False, provenance=None:
                _write(path, obj, overwrite, provenance))
    io.write_lightcurves = lambda path, lc, overwrite=False: _write(path, lc, True)
    io.read_lightcurves = _read
    return io


def install(monkeypatch, **kw):
    """Install the fake stage modules and I/O for one test; returns the CALLS counter (reset)."""
    CALLS.clear()
    for name, mod in make_modules(**kw).items():
        monkeypatch.setitem(sys.modules, name, mod)
    import tsoreduce.pipeline as pipeline
    io = make_io()
    monkeypatch.setattr(pipeline, "_io", lambda: io)
    return CALLS
