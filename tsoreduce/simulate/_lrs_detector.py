"""Detector side of the LRS simulator: per-pixel detector maps, cosmic rays, EMI phases, the
linearity polynomial and the per-integration ramp builder.

Private helpers of :mod:`tsoreduce.simulate.lrs` (which documents every effect and its source).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .. import instrument as inst
from ._lrs_kernels import POISSON_INVERSION_MAX, poisson_by_inversion, raw_reads

if TYPE_CHECKING:
    from .lrs import LRSSimConfig

#: MIRI Si:As pixel pitch 25 um (JDox "MIRI Detector Overview") -> pixel area in cm^2
PIXEL_AREA_CM2 = (25e-4) ** 2
#: one record per injected cosmic ray; ``integration`` is global over segments (0-based), ``group`` is
#: the first group (0-based) whose read contains the deposited charge, ``amplitude_dn`` the deposited
#: charge in linear DN (before the non-linearity).
COSMIC_RAY_DTYPE = np.dtype([("integration", np.int64), ("group", np.int64), ("row", np.int64),
                             ("col", np.int64), ("amplitude_dn", np.float64)])

# ------------------------------------------------------------------------------------------------
# linearity polynomial
# ------------------------------------------------------------------------------------------------
def apply_linearity_polynomial(raw, coeffs) -> np.ndarray:
    """``corrected = sum_k c_k raw**k`` (the CRDS MIRI linearity convention), Horner scheme.

    raw : any shape ``(..., ny, nx)``; coeffs : ``(ncoeffs,)`` or ``(ncoeffs, ny, nx)``.  float64 result.
    """
    raw = np.asarray(raw, np.float64)
    c = np.asarray(coeffs, np.float64)
    if c.ndim == 1:
        c = c[:, None, None] if raw.ndim >= 2 else c
    out = np.zeros(np.broadcast_shapes(raw.shape, c.shape[1:]))
    for k in range(c.shape[0] - 1, -1, -1):
        out = out * raw + c[k]
    return out


def invert_linearity_polynomial(corrected, coeffs, *, tol_dn: float = 1e-6, max_iter: int = 30) -> np.ndarray:
    """Raw DN whose linearity correction equals ``corrected`` (Newton iterations, float64).

    Used to impose the detector non-linearity on the simulated linear ramps, so that the CRDS-style
    correction ``sum_k c_k raw**k`` exactly recovers them.  Requires the polynomial to be increasing
    over the range (true for the MIRI-like defaults).  Raises ``ArithmeticError`` if it fails to converge.
    """
    y = np.asarray(corrected, np.float64)
    c = np.asarray(coeffs, np.float64)
    if c.ndim == 1:
        c = c[:, None, None]
    deriv = np.array([k * c[k] for k in range(1, c.shape[0])])
    x = y.copy()
    for _ in range(max_iter):
        f = apply_linearity_polynomial(x, c) - y
        d = apply_linearity_polynomial(x, deriv)
        step = f / d
        x -= step
        if np.max(np.abs(step), initial=0.0) < tol_dn:
            return x
    raise ArithmeticError("invert_linearity_polynomial did not converge")


def detector_maps(cfg: LRSSimConfig, rng: np.random.Generator, shape) -> dict:
    """Per-pixel detector properties (always drawn in the same order; zeroed/neutral when switched off)."""
    nr, nc = shape
    amp = rng.uniform(-100.0, 100.0, 4)
    bias = cfg.bias_dn + amp[np.arange(nc) % 4][None, :] + rng.normal(0.0, 50.0, shape)
    dark = cfg.dark_rate_dn_s * rng.lognormal(0.0, 0.3, shape)
    hot = rng.random(shape) < cfg.hot_pixel_fraction
    dark = np.where(hot, dark * rng.uniform(10.0, 100.0, shape), dark)
    rn = cfg.read_noise_dn * (1.0 + 0.05 * rng.standard_normal(shape)).clip(0.5, None)
    sat = cfg.saturation_dn * (1.0 + 0.01 * rng.standard_normal(shape))
    sat = np.minimum(sat, 65535.0)
    c = np.asarray(cfg.nonlinearity_coeffs, float)
    coeffs = np.broadcast_to(c[:, None, None], (c.size,) + tuple(shape)).copy()
    scat = 1.0 + cfg.nonlinearity_scatter * rng.standard_normal(shape)
    coeffs[2:] *= scat[None]
    if not cfg.read_noise:
        rn = np.zeros(shape)
    if not cfg.dark:
        dark = np.zeros(shape)
    if not cfg.nonlinearity:
        coeffs = np.zeros_like(coeffs)
        coeffs[1] = 1.0
    if not cfg.saturation:
        sat = np.full(shape, 65535.0)
    return dict(bias=bias, dark=dark, read_noise_dn=rn, saturation_dn=sat, nonlinearity_coeffs=coeffs,
                gain=np.full(shape, cfg.gain))


def cosmic_rays(cfg: LRSSimConfig, rng: np.random.Generator, shape) -> np.ndarray:
    """Poisson number of hits per integration over the light-sensitive pixels during the
    ``(ngroups - 1) * tframe`` between the first and last read; log-uniform amplitudes."""
    nr, nc = shape
    ncol_light = nc - inst.N_REFERENCE_COLUMNS
    mean = cfg.cosmic_ray_rate_cm2_s * PIXEL_AREA_CM2 * nr * ncol_light * (cfg.ngroups - 1) * cfg.tframe
    counts = rng.poisson(mean, cfg.nints)
    n = int(counts.sum())
    hits = np.zeros(n, COSMIC_RAY_DTYPE)
    hits["integration"] = np.repeat(np.arange(cfg.nints), counts)
    hits["group"] = rng.integers(1, cfg.ngroups, n)
    hits["row"] = rng.integers(0, nr, n)
    hits["col"] = rng.integers(inst.N_REFERENCE_COLUMNS, nc, n)
    lo, hi = np.log(cfg.cosmic_ray_min_dn), np.log(cfg.cosmic_ray_max_dn)
    hits["amplitude_dn"] = np.exp(rng.uniform(lo, hi, n))
    if not cfg.cosmic_rays:
        return hits[:0]
    return hits


def emi_truth(cfg: LRSSimConfig, rng: np.random.Generator) -> dict:
    """Frequencies (Hz), amplitudes (DN) and random phases (rad) of the EMI components (empty when off)."""
    comps = cfg.emi_list()
    phases = rng.uniform(0.0, 2 * np.pi, max(len(comps), 1))[:len(comps)]
    if not cfg.emi:
        comps, phases = [], phases[:0]
    return dict(frequencies=np.array([c[0] for c in comps], float),
                amplitudes=np.array([c[1] for c in comps], float), phases=np.asarray(phases, float))


# ------------------------------------------------------------------------------------------------
# ramps
# ------------------------------------------------------------------------------------------------
def poisson_frames(rng: np.random.Generator, per_frame: np.ndarray, nframes: int) -> np.ndarray:
    """Independent Poisson charge (e-) of ``nframes`` frames, float64 ``(nframes, ny, nx)``.

    Exact in both regimes: faint pixels (mean < 50 e-/frame, ~ 98 % of the subarray) by CDF inversion
    of numpy uniforms in a numba kernel (faster than ``Generator.poisson`` for small means, see
    benchmarks/bench_simulate.py), bright trace pixels with ``Generator.poisson``.  Deterministic for a
    given generator state."""
    u = rng.random((nframes,) + per_frame.shape)
    frames = np.zeros_like(u)
    poisson_by_inversion(per_frame, u, frames)
    bright = per_frame >= POISSON_INVERSION_MAX
    if bright.any():
        frames[:, bright] = rng.poisson(per_frame[bright], size=(nframes, int(bright.sum())))
    return frames


class RampBuilder:
    """Builds one integration's raw reads, ``(ngroups, nrows, ncols)`` float32, from the truth."""

    def __init__(self, cfg: LRSSimConfig, truth_parts: dict, maps: dict, hits: np.ndarray, emi: dict,
                 noise_seq: np.random.SeedSequence, shape):
        self.cfg, self.p, self.maps, self.emi = cfg, truth_parts, maps, emi
        self.shape = shape
        ng = cfg.ngroups
        # per integration, one stream for the photon noise and one for the read noise: the Poisson
        # draws of bright pixels consume a data-dependent count of numbers, so sharing a generator would
        # redraw every read noise whenever dark, drift or settling change the photon rates
        self.noise_seqs = [s.spawn(2) for s in noise_seq.spawn(cfg.nints)]
        self.hits_by_int = {}
        for h in hits:
            self.hits_by_int.setdefault(int(h["integration"]), []).append(h)
        g = np.arange(ng, dtype=float)
        self.rscd_shape = -(1.0 - np.exp(-g / cfg.rscd_tau_groups))  # (ngroups,)
        t_int, t_group, t_pix = inst.pixel_read_time_offsets(cfg.nints, ng, shape=shape)
        self.t_int, self.t_group = t_int, t_group
        self.emi_pix = []
        for f, a, ph in zip(emi["frequencies"], emi["amplitudes"], emi["phases"]):
            b = 2 * np.pi * f * t_pix + ph
            self.emi_pix.append((f, a, np.cos(b), np.sin(b)))

    def electrons_rate(self, i: int) -> np.ndarray:
        """e-/s per pixel in integration i (star + background + dark)."""
        p, m = self.p, self.maps
        return (p["rate_star"][i].astype(np.float64) + p["rate_background"][i] + m["dark"]) * self.cfg.gain

    def read_noise_draw(self, i: int) -> np.ndarray:
        """Standard-normal read-noise draws of integration ``i``, float32 ``(ngroups, nrows, ncols)``,
        from the integration's own read-noise stream (independent of every other effect)."""
        rng = np.random.default_rng(self.noise_seqs[i][1])
        return rng.standard_normal((self.cfg.ngroups,) + tuple(self.shape), dtype=np.float32)

    def integration(self, i: int, out: np.ndarray | None = None) -> np.ndarray:
        """Raw reads of global integration ``i``, float32 ``(ngroups, nrows, ncols)`` integer DN."""
        cfg, m = self.cfg, self.maps
        ng = cfg.ngroups
        nr, nc = self.shape
        rng = np.random.default_rng(self.noise_seqs[i][0])
        per_frame = self.electrons_rate(i) * cfg.tframe  # e- per frame
        if cfg.poisson:
            frames = poisson_frames(rng, per_frame, ng)
        else:
            frames = np.broadcast_to(per_frame, (ng, nr, nc)).copy()
        for h in self.hits_by_int.get(i, ()):
            # deposited between reads g-1 and g: the cumulative sum carries it to every later read
            frames[int(h["group"]), int(h["row"]), int(h["col"])] += h["amplitude_dn"] * cfg.gain
        if cfg.rscd:
            if i == 0 and cfg.rscd_first_int_anomaly:
                prev = 0.0
            else:
                prev = self.electrons_rate(max(i - 1, 0)) / cfg.gain * ng * cfg.tframe
            rscd_amp = np.broadcast_to(cfg.rscd_amplitude_dn + cfg.rscd_flux_fraction * prev, (nr, nc))
        else:
            rscd_amp = np.zeros((nr, nc))
        rn_draw = self.read_noise_draw(i)  # x read-noise map (0 when off)
        ne = len(self.emi_pix)
        sin_g, cos_g = np.zeros((ne, ng)), np.zeros((ne, ng))
        cos_p, sin_p = np.zeros((ne, nr, nc)), np.zeros((ne, nr, nc))
        for e, (f, a, cb, sb) in enumerate(self.emi_pix):
            ag = 2 * np.pi * f * (self.t_int[i] + self.t_group)
            sin_g[e], cos_g[e] = a * np.sin(ag), a * np.cos(ag)
            cos_p[e], sin_p[e] = cb, sb
        if out is None:
            out = np.empty((ng, nr, nc), np.float32)
        raw_reads(frames, float(cfg.gain), self.rscd_shape, np.ascontiguousarray(rscd_amp, np.float64),
                  m["bias"], m["nonlinearity_coeffs"], bool(cfg.nonlinearity), rn_draw,
                  m["read_noise_dn"], sin_g, cos_g, cos_p, sin_p, m["saturation_dn"], out)
        return out
