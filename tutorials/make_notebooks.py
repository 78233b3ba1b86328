"""Generate the tutorial notebooks 01-03 (committed without outputs): ``python tutorials/make_notebooks.py``.

Each notebook is small enough to execute in about a minute on 2 cores; ``tests/test_tutorials.py``
executes every ``tutorials/*.ipynb`` in a temporary directory it gives them (``TSOREDUCE_TUTORIAL_DIR``)
and fails on any cell error.  Each notebook ends with a cell asserting its key result.  Notebook 04
(MRS) is written by hand and follows the same two rules.
"""

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).parent

COMMON = '''\
import os
import tempfile
from pathlib import Path

import numpy as np
import matplotlib.pyplot as plt
from IPython.display import Image, display

# the repository root, whether the notebook runs from tutorials/ or from the root
REPO = Path.cwd().parent if (Path.cwd().parent / "runs").is_dir() else Path.cwd()
# products go to $TSOREDUCE_TUTORIAL_DIR when set (the tests set it), else to a new temporary folder
OUT = Path(os.environ.get("TSOREDUCE_TUTORIAL_DIR") or tempfile.mkdtemp(prefix="tsoreduce_tutorial_"))
OUT.mkdir(parents=True, exist_ok=True)


def show_figures(folder, width=640):
    """Display every PNG figure a stage wrote."""
    for png in sorted(Path(folder).rglob("*.png")):
        print(png.relative_to(OUT))
        display(Image(filename=str(png), width=width))
'''


def quickstart():
    cells = [
        new_markdown_cell("""\
# 1. Quick start: the demo, stage by stage

This notebook runs the same reduction as `python run_tso.py runs/demo.yaml`, one stage at a time,
and shows the diagnostic figures each stage writes.  To keep it to about a minute it simulates a
smaller TSO (60 integrations x 15 groups in 2 segments instead of 120 x 20 in 3) and fits the light
curves by least squares instead of emcee.

Everything the YAML file does is a function call:
`tsoreduce.config.validate_run_config` / `load_run_config` -> `tsoreduce.pipeline.run(config, stages=...)`."""),
        new_code_cell(COMMON + '''
import yaml
import tsoreduce
from tsoreduce import pipeline
from tsoreduce.config import validate_run_config
from tsoreduce.simulate import LRSSimConfig
print("tsoreduce", tsoreduce.__version__)'''),
        new_markdown_cell("""\
## The run configuration

`runs/demo.yaml` is read as a plain dict, made smaller, and validated.  Validation fills in every
default and stops on an unknown key or a bad value before any work.  The simulator knows the
ephemeris of its planet, so the Stage 4 priors are set from it (with a real planet they come from
the literature)."""),
        new_code_cell('''\
user = yaml.safe_load((REPO / "runs" / "demo.yaml").read_text())
sim = user["input"]["simulate"]
for key in ("t0_bjd_tdb", "period_days", "a_rs", "inc_deg"):
    sim.pop(key)                     # let the simulator centre the transit in the shorter series
sim.update(nints=60, ngroups=15, nsegments=2)
orbit = LRSSimConfig(**sim).transit_parameters()
duration = LRSSimConfig(**sim).series_duration_days
user["stage4"]["parameters"].update(
    per={"value": orbit["period"], "prior": "fixed"},
    t0={"value": orbit["t0"], "prior": "uniform",
        "bounds": [orbit["t0"] - 0.1 * duration, orbit["t0"] + 0.1 * duration]},
    a_rs={"value": orbit["a_rs"], "prior": "normal", "mean": orbit["a_rs"], "sigma": 0.3},
    inc={"value": orbit["inc"], "prior": "uniform", "bounds": [80.0, 90.0]})
user["stage4"]["fitter"] = {"method": "lsq"}
user["output_dir"] = str(OUT)

config = validate_run_config(user, REPO / "runs")
print(pipeline.run(config, dry_run=True)["text"])'''),
        new_code_cell('''\
# a bad value is caught before any work, naming the key and what is allowed
from tsoreduce.errors import ConfigError
try:
    validate_run_config({**user, "stage1": {"jump": {"method": "sigma_clip"}}}, REPO / "runs")
except ConfigError as err:
    print("ConfigError:", err)'''),
        new_markdown_cell("""\
## Simulation and Stage 1 (uncal -> rateints)

The simulator writes the uncal segments, the truth and CRDS-format reference files (linearity, dark,
gain, read noise, saturation) that Stage 1 uses.  Stage 1 processes one segment at a time: DQ init,
EMI correction, saturation, reset/RSCD group drop, linearity, dark, time-domain jump detection and
ramp fitting."""),
        new_code_cell('''\
summary = pipeline.run(config, stages="1", progress=False)
print(pipeline.format_summary(summary))
show_figures(OUT / "stage1" / "figures")'''),
        new_code_cell('''\
from tsoreduce import io
rates = io.read_segments(sorted((OUT / "stage1").glob("*_rateints.fits")))
print(rates.data.shape, rates.units)
plt.figure(figsize=(3, 6))
plt.imshow(np.nanmedian(rates.data, axis=0), origin="lower", aspect="auto", vmin=0,
           vmax=np.nanpercentile(rates.data, 99.5))
plt.colorbar(label="DN/s"); plt.xlabel("column"); plt.ylabel("row (wavelength decreases upward)")
plt.title("median rateints");'''),
        new_markdown_cell("""\
## Stage 2 (rateints -> calints)

Wavelength map, row-wise background subtraction, bad-pixel cleaning (spatial and temporal) and a
PCA of the frames (diagnostic: no component is removed by default)."""),
        new_code_cell('''\
summary = pipeline.run(config, stages="2", progress=False)
show_figures(OUT / "stage2" / "figures")'''),
        new_markdown_cell("""\
## Stage 3 (calints -> x1dints + light curves)

Edgetrigger trace on the deep frame, optimal extraction, per-integration trace position and width
(decorrelation regressors), and binning into spectroscopic light curves (1 um channels here)."""),
        new_code_cell('''\
summary = pipeline.run(config, stages="3", progress=False)
show_figures(OUT / "stage3" / "figures")
from tsoreduce.simulate import load_lrs_truth
lc = io.read_lightcurves(next((OUT / "stage3").glob("*_lightcurves.h5")))
truth = load_lrs_truth(next((OUT / "simulation").glob("*truth*.npz")))
plt.figure(figsize=(7, 3))
plt.plot(lc.time, lc.white_flux / np.median(lc.white_flux), "k.", label="extracted white light")
plt.plot(truth.times_bjd_tdb, truth.white_flux / np.median(truth.white_flux), "C3", label="injected")
plt.xlabel("BMJD_TDB"); plt.ylabel("relative flux"); plt.legend();'''),
        new_markdown_cell("""\
## Stage 4 (light curves -> spectrum)

The white light curve is fitted first (batman transit x exponential settling ramp x linear trend x
linear decorrelation against trace position/width, error multiplier), then each channel with the
orbit fixed to the white-light solution.  For a simulation the pipeline also writes
`injected_spectrum.ecsv` (the injected depth binned exactly like `spectrum.ecsv`) and the figure
of recovered vs injected."""),
        new_code_cell('''\
summary = pipeline.run(config, stages="4", progress=False)
print(pipeline.format_summary(summary))
display(Image(filename=str(OUT / "stage4" / "figures" / "recovered_vs_injected.png"), width=640))'''),
        new_code_cell('''\
from tsoreduce.simulate.truth import read_spectrum
spectrum = read_spectrum(OUT / "stage4" / "spectrum.ecsv")
injected = read_spectrum(OUT / "stage4" / "injected_spectrum.ecsv")
z = (np.asarray(spectrum["transit_depth"]) - np.asarray(injected["transit_depth"])) / (
    0.5 * (np.asarray(spectrum["transit_depth_err_lower"]) + np.asarray(spectrum["transit_depth_err_upper"])))
print("recovered - injected in sigma per channel:", np.round(z, 2))
print(f"chi2 = {np.sum(z**2):.1f} for {z.size} channels")
assert np.sum(z**2) < z.size + 4 * np.sqrt(2 * z.size), "spectrum not recovered"'''),
        new_markdown_cell("""\
## Re-running

A second run finds every stage's `.done.json` marker with the same configuration hash and skips
it; `force=True` (`--force`) recomputes; a changed configuration with existing products stops with
an `OverwriteError` instead of overwriting them."""),
        new_code_cell('''\
again = pipeline.run(config, progress=False)
print({n: s["action"] for n, s in again["stages"].items()})'''),
        new_code_cell('''\
# the key results of this notebook, checked: the injected spectrum is recovered (chi2 within 4 sigma
# of its expectation), the white-light Rp/Rs matches the injected 0.12 (+ the 7.7 um feature's
# ~0.0005) within 3 sigma + 0.002, and a re-run skips every stage
n = summary["numbers"]
print({k: n[k] for k in ("truth.chi2", "truth.nchannels", "white.rp_rs", "white.rp_rs_err")})
assert n["truth.chi2"] < n["truth.nchannels"] + 4 * np.sqrt(2 * n["truth.nchannels"]), n
assert abs(n["white.rp_rs"] - 0.1205) < 3 * n["white.rp_rs_err"] + 0.002, n
assert {s["action"] for s in again["stages"].values()} == {"skip"}'''),
    ]
    return cells


def in_depth():
    cells = [
        new_markdown_cell("""\
# 2. MIRI LRS in depth

The steps that matter for MIRI LRS slitless time series, each on a small simulation with known
truth so every correction can be checked: EMI (390 Hz), jumps in the time domain vs up the ramp,
the background, a PCA of the frames, the edgetrigger trace, and box vs optimal extraction.
(About a minute: 30 integrations x 15 groups.)"""),
        new_code_cell(COMMON + '''
from tsoreduce.datamodel import DQ
from tsoreduce.simulate import LRSSimConfig, simulate_lrs
cfg = LRSSimConfig(nints=30, ngroups=15, seed=3, emi_components=((390.625, 8.0),),
                   cosmic_ray_rate_cm2_s=20.0)
sim = simulate_lrs(cfg)
ramp, truth = sim.segments[0], sim.truth
print(ramp.data.shape, "(integration, group, row, column), DN")'''),
        new_markdown_cell("""\
## EMI

MIRI's readout picks up electromagnetic interference at 390.625 Hz (and other tones): a sinusoid in
each pixel's *read time*, which is row- and column-dependent within a frame.  `correct_emi` fits the
tone's amplitude and phase per integration on pixels away from the trace and subtracts it from every
read (jwst `emicorr`; jwst issue #7729).  The periodogram of the reads shows the tone before and its
removal after."""),
        new_code_cell('''\
from tsoreduce.detector import correct_emi, dq_init, emi_periodogram
r0 = dq_init(ramp)
f, p_before = emi_periodogram(r0)
r1, emi_diag = correct_emi(r0)
f, p_after = emi_periodogram(r1)
plt.figure(figsize=(7, 3))
plt.semilogy(f, p_before, label="before"); plt.semilogy(f, p_after, label="after correct_emi")
plt.axvline(390.625, color="k", ls=":"); plt.xlabel("frequency (Hz)"); plt.ylabel("power"); plt.legend()
near = np.abs(f - 390.625) < 2
print(f"power near 390.6 Hz reduced by a factor {p_before[near].max() / p_after[near].max():.0f}")
print("injected EMI:", truth.emi)'''),
        new_markdown_cell("""\
## Jumps: time domain vs up the ramp

Cosmic rays are steps between two reads.  The usual up-the-ramp test (two-point differences within
one ramp, jwst `jump`) flags the brightest trace pixels of flight MIRI LRS data as jumps (the
MR-LRS03 known issue, caused by real ramps departing from the noise model); comparing each group
difference with the same difference in neighbouring *integrations* (exoTEDRF's time-domain approach,
our default) is immune to that because a pixel is compared with itself.  The truth lists every
injected cosmic ray, so both detection rates and false flags on the trace are counted below.  (The
simulated ramps follow the noise model exactly, so here the up-the-ramp test does not show the
flight false positives either; the point of the comparison is that the time-domain test loses
nothing.)"""),
        new_code_cell('''\
from tsoreduce.detector import (detect_jumps_time_domain, detect_jumps_up_the_ramp, flag_reset_groups,
                                flag_saturation)
r2 = flag_reset_groups(flag_saturation(r1), n_groups=5)
found = {"time domain": detect_jumps_time_domain(r2), "up the ramp": detect_jumps_up_the_ramp(r2)}
cr = truth.cosmic_rays
usable = (cr["group"] > 5) & (cr["group"] < cfg.ngroups - 1) & (cr["amplitude_dn"] > 300)
bright = np.nanmedian(truth.rate_star, axis=0) > 0.2 * cfg.peak_rate_dn_s
hit = np.zeros(ramp.data.shape, bool)
hit[cr["integration"], cr["group"], cr["row"], cr["col"]] = True
for name, r in found.items():
    jump = (r.groupdq & DQ.JUMP_DET) != 0
    detected = jump[cr["integration"][usable], cr["group"][usable], cr["row"][usable], cr["col"][usable]]
    false_on_trace = (jump & ~hit & bright[None, None]).sum()
    print(f"{name:12s}: {detected.mean():.0%} of {usable.sum()} cosmic rays > 300 DN found; "
          f"{false_on_trace} false flags on bright trace pixels")'''),
        new_markdown_cell("""\
## Rates, background and PCA

The full Stage 1 (`detector.run`, whose result's `.product` is the RateData) gives the rateints.  The background is estimated row by row from
columns away from the trace (exoTEDRF/ExoTiC-MIRI style) and compared here with the injected one.
The estimate also absorbs any additive offset common to a row -- here the residual of the reset
(RSCD) transient that survives the dropped groups, which lowers every slope by the same amount.
Dropping more groups shrinks it (at the cost of signal-to-noise); the background step removes it
either way.
A PCA of the frames (exoTEDRF, Radica 2024; Coulombe et al. 2023) separates the transit (PC scores follow the light curve) from
trace motion."""),
        new_code_cell('''\
from tsoreduce import detector
from tsoreduce.spectroscopic import make_deep_frame, pca_reconstruct, subtract_background
rows = np.arange(150, 390)
for n_reset in (10, 5):   # the second one is kept for the rest of the notebook
    rates = detector.run(ramp, {"reset": {"n_groups": n_reset}}).product
    sub, background = subtract_background(rates)
    resid = np.nanmedian(background[:, rows] - truth.rate_background[:, rows])
    print(f"{n_reset:2d} reset groups dropped: median estimated - injected background = {resid:+.2f} DN/s "
          f"(injected median {np.median(truth.rate_background[:, rows]):.2f} DN/s)")
plt.figure(figsize=(7, 3))
plt.plot(np.nanmedian(background[:, :, 8], axis=0), label="estimated (column 8)")
plt.plot(np.median(truth.rate_background[:, :, 8], axis=0), "--", label="injected")
plt.xlabel("row"); plt.ylabel("DN/s"); plt.legend();'''),
        new_code_cell('''\
cleaned, pca = pca_reconstruct(sub, n_components=4)
print("explained variance ratio:", np.round(pca.explained_variance_ratio, 3))
fig, ax = plt.subplots(1, 2, figsize=(9, 3))
for k in range(3):
    s = pca.timeseries[k]
    ax[0].plot((s - s.mean()) / s.std(), label=f"PC{k + 1}")
ax[0].plot((truth.white_flux - truth.white_flux.mean()) / truth.white_flux.std(), "k:", label="injected white light")
ax[0].legend(fontsize=7); ax[0].set_xlabel("integration")
ax[1].imshow(pca.eigenimages[0], origin="lower", aspect="auto"); ax[1].set_title("eigenimage 1");'''),
        new_markdown_cell("""\
## Edgetrigger trace

The trace centre in each row is the midpoint of the steepest rising and falling edges of the
cross-dispersion profile of the deep frame (exoTEDRF's edgetrigger), then a robust polynomial in row.
Compared with the injected trace centre:"""),
        new_code_cell('''\
from tsoreduce.extraction import box_extract, find_trace, optimal_extract
deep = make_deep_frame(sub)
trace, info = find_trace(deep)
used = info["rows"]
err_px = trace[used] - truth.trace_x.mean(axis=0)[used]
print(f"trace: {len(used)} rows, rms error {np.sqrt(np.mean(err_px**2)):.3f} px vs the injected centre")
plt.figure(figsize=(7, 3))
plt.plot(used, err_px, "k.", ms=3); plt.xlabel("row"); plt.ylabel("measured - injected (px)");'''),
        new_markdown_cell("""\
## Box vs optimal extraction

Box extraction sums a fixed-width aperture; optimal extraction (Horne 1986) weights each pixel by the
spatial profile over its variance and rejects outliers.  Their white light curves are compared with
the injected one (the transit and settling included): the residual scatter measures extraction noise."""),
        new_code_cell('''\
fb, eb, qb = box_extract(sub, trace, width=7.0)
fo, eo, qo, nrej = optimal_extract(sub, deep, trace)
sel = slice(150, 390)
inj = truth.white_flux / np.median(truth.white_flux)
for name, f in (("box (7 px)", fb), ("optimal", fo)):
    white = np.nansum(f[:, sel], axis=1)
    white = white / np.median(white)
    print(f"{name:10s}: rms of white light - injected = {1e6 * np.std(white - inj):.0f} ppm")
plt.figure(figsize=(7, 3))
plt.plot(np.nansum(fo[:, sel], 1) / np.median(np.nansum(fo[:, sel], 1)), "k.", label="optimal")
plt.plot(np.nansum(fb[:, sel], 1) / np.median(np.nansum(fb[:, sel], 1)), "C0x", label="box")
plt.plot(inj, "C3", label="injected"); plt.legend(); plt.xlabel("integration");'''),
        new_code_cell('''\
# the key results of this notebook, checked against the simulation's truth
emi_factor = p_before[near].max() / p_after[near].max()
td = (found["time domain"].groupdq & DQ.JUMP_DET) != 0
recall = td[cr["integration"][usable], cr["group"][usable], cr["row"][usable], cr["col"][usable]].mean()
trace_rms = np.sqrt(np.mean(err_px**2))
white_rms = {}
for name, f in (("box", fb), ("optimal", fo)):
    white = np.nansum(f[:, sel], axis=1)
    white_rms[name] = np.std(white / np.median(white) - inj)
print(f"EMI power / {emi_factor:.0f}; time-domain recall {recall:.2f}; trace rms {trace_rms:.3f} px; "
      f"white-light rms box {1e6 * white_rms['box']:.0f} ppm, optimal {1e6 * white_rms['optimal']:.0f} ppm")
assert emi_factor > 10, "EMI tone not removed"
assert recall > 0.9, "time-domain jump detection misses cosmic rays"
assert trace_rms < 0.05, "trace off the injected centre"
assert white_rms["optimal"] < 1.2 * white_rms["box"], "optimal extraction noisier than the box"'''),
    ]
    return cells


def real_lightcurves():
    cells = [
        new_markdown_cell("""\
# 3. Fitting real light curves: WASP-107b and WASP-43b

Stage 4 on real JWST MIRI LRS light curves from `../shared/data` (see its PROVENANCE.md): the
WASP-107b transit white light curve (GO 1280, Eureka! reduction) and the WASP-43b full-orbit phase
curve (ERS 1366, Bell et al. 2024, SPARTA reduction).  The run files `runs/wasp107b_white.yaml` and
`runs/wasp43b_phasecurve.yaml` hold the models and priors; here they are loaded, the sampler is
switched to least squares so the notebook runs in about a minute (the YAML runs use emcee), and
the fits are shown."""),
        new_code_cell(COMMON + '''
from tsoreduce import io
from tsoreduce.config import load_run_config
from tsoreduce.lightcurve import run_stage4
DATA = REPO.parent / "shared" / "data"
if not DATA.is_dir():
    raise SystemExit(f"this tutorial needs the data folder {DATA} (../shared/data beside the repository)")'''),
        new_markdown_cell("""\
## WASP-107b transit

The light curve starts with MIRI's exponential settling ramp; the model is a batman transit x a
single exponential ramp x a linear trend, with linear decorrelation against the trace position and
width, and an error multiplier."""),
        new_code_cell('''\
cfg = load_run_config(REPO / "runs" / "wasp107b_white.yaml")
lc = io.read_lightcurves(cfg["input"]["lightcurves"][0])
print(lc.nints, "integrations;", "regressors:", list(lc.regressors))
plt.figure(figsize=(7, 3))
plt.plot(lc.time, lc.white_flux, "k.", ms=1); plt.xlabel("BMJD_TDB"); plt.ylabel("relative flux");'''),
        new_code_cell('''\
stage4 = dict(cfg["stage4"], fitter={**cfg["stage4"]["fitter"], "method": "lsq"})
res = run_stage4(lc, stage4, plot_dir=OUT / "wasp107b" / "figures").product
w = res.white
for name in ("rp_rs", "a_rs", "inc", "t0", "ramp_amp1", "err_mult"):
    if name in w.median:
        print(f"{name:10s} = {w.median[name]:.9g} +- {0.5 * (w.err_lower[name] + w.err_upper[name]):.2g}")
print(f"transit depth = {1e6 * w.median['rp_rs']**2:.0f} ppm; reduced chi2 {w.chi2_red:.2f}")
show_figures(OUT / "wasp107b" / "figures")'''),
        new_markdown_cell("""\
## WASP-43b phase curve

Transit + eclipse (batman) x a first-order sinusoidal planet phase variation, with the settling ramp
and a linear trend; the 790 integrations masked by the SPARTA reduction are excluded.  Only the
white light curve is fitted here (the YAML run also fits the 14 channels)."""),
        new_code_cell('''\
cfg43 = load_run_config(REPO / "runs" / "wasp43b_phasecurve.yaml")
lc43 = io.read_lightcurves(cfg43["input"]["lightcurves"][0])
good = ~lc43.mask
plt.figure(figsize=(8, 3))
plt.plot(lc43.time[good], lc43.white_flux[good], "k.", ms=1)
plt.xlabel("BMJD_TDB"); plt.ylabel("relative flux");'''),
        new_code_cell('''\
stage4 = dict(cfg43["stage4"], fit_channels=False,
              fitter={**cfg43["stage4"]["fitter"], "method": "lsq"})
res43 = run_stage4(lc43, stage4, plot_dir=OUT / "wasp43b" / "figures").product
w = res43.white
for name in ("rp_rs", "fp", "pc_amp1", "pc_offset1", "t0", "a_rs", "inc"):
    if name in w.median:
        print(f"{name:10s} = {w.median[name]:.9g} +- {0.5 * (w.err_lower[name] + w.err_upper[name]):.2g}")
if "fp" in w.median:
    print(f"eclipse depth = {1e6 * w.median['fp']:.0f} ppm")
show_figures(OUT / "wasp43b" / "figures")'''),
        new_code_cell('''\
# the key results of this notebook, checked against the fits of the same files in docs/validation.md:
# WASP-107b Rp/Rs 0.143242 (Eureka!), WASP-43b eclipse depth 5631 ppm (our emcee run)
rp107, fp43 = res.white.median["rp_rs"], 1e6 * res43.white.median["fp"]
print(f"WASP-107b Rp/Rs {rp107:.6f}; WASP-43b eclipse depth {fp43:.0f} ppm")
assert abs(rp107 - 0.143242) < 0.0003, rp107   # 3 sigma of the fit
assert abs(fp43 - 5631) < 50, fp43   # 3 sigma of the emcee fit'''),
    ]
    return cells


def write(name, cells):
    nb = new_notebook(cells=cells, metadata={
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"}})
    nbformat.validate(nb)
    path = HERE / name
    nbformat.write(nb, path)
    print("wrote", path)


if __name__ == "__main__":
    write("01_quickstart.ipynb", quickstart())
    write("02_miri_lrs_in_depth.ipynb", in_depth())
    write("03_fitting_real_lightcurves.ipynb", real_lightcurves())
