"""Synthetic MIRI MRS spectral-cube (s3d) time series with known truth.

Each integration is one cube per band, on a fixed grid (as cube_build gives with pinned ra_center /
dec_center / cube_pa / nspax), in MJy/sr:

    S(t, lambda, y, x) = F(lambda) T(t, lambda) P(lambda; y, x) / (1e6 PIXAR_SR) + B(lambda) + g_x dx + g_y dy

* P: circular Gaussian integrated exactly over each spaxel (erf differences) with
  FWHM(lambda) = 0.033 lambda + 0.106 arcsec (Law et al. 2023); optional pointing jitter per integration.
* F(lambda) = flux_jy (lambda / 5 um)^flux_index; T = batman quadratic-limb-darkened transit with
  Rp/Rs(lambda) = rp_rs + rp_rs_slope (lambda - 5 um).
* B: background surface brightness (lambda / 5 um)^2 scaled, with a linear spatial gradient.
* Defects: one hot spaxel in the background annulus (all integrations), one core spaxel next to the peak
  that is NaN / DO_NOT_USE in ``flicker_integrations`` only, and a NaN border of ``nan_border`` spaxels
  (outside the footprint, DQ = DO_NOT_USE + NON_SCIENCE as cube_build writes).
* Noise (optional): Gaussian with sigma = sqrt(err_floor^2 + poisson_scale |S|) MJy/sr, which is also
  the ERR array.

Planes are far coarser than the real 0.0008-0.006 um steps (``nwave`` per band, spread over the band's
range): enough to test extraction physics in seconds.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
from astropy.io import fits

from .._util import atomic_write, document_fields, field_doc
from ..datamodel import DQ, IntTimes
from ..errors import NotImplementedStepError, OverwriteError
from ..io.int_times import int_times_hdu
from ..mrs.apertures import pixel_integrated_gaussian, psf_fwhm_arcsec
from ..mrs.cubes import ARCSEC2_TO_SR, MRS_BANDS, CubeSeries

__all__ = ["MRSSimConfig", "MRSTruth", "MRSBandTruth", "simulate_mrs_cubes", "write_mrs_cubes"]

_BAND_WORDS = {"A": "SHORT", "B": "MEDIUM", "C": "LONG"}


@document_fields
@dataclass
class MRSSimConfig:
    """Settings of a synthetic MRS cube time series (every effect switchable).

    Each field's description lives in its ``metadata["doc"]`` (:func:`tsoreduce._util.field_doc`),
    with the bounds the run-config schema applies (``input.mrs.simulate``).

    Notes
    -----
    The source is a pixel-integrated Gaussian PSF of the band's FWHM (:mod:`tsoreduce.mrs.apertures`);
    the background scales as (lambda / 5 um)^2 with a linear gradient; the transit is a batman
    quadratic-limb-darkening model with Rp/Rs linear in wavelength.
    """

    nints: int = field_doc(40, "integrations", min=3)
    bands: tuple = field_doc(("1A",), "MRS sub-bands to simulate, e.g. [1A, 2A]", item_type=str)
    nwave: int = field_doc(12, "planes per band", min=2)
    field_arcsec: float = field_doc(3.6, "side of the square field, arcsec (odd number of spaxels at the "
                                    "band's default scale)", min=0.0)
    integration_time_s: float = field_doc(360.0, "integration duration (s)", min=1.0)
    t_start: float = field_doc(60000.0, "start of the first integration, BMJD_TDB (days)")
    flux_jy: float = field_doc(0.1, "source flux density at 5 um (Jy)", min=0.0)
    flux_index: float = field_doc(-2.0, "power-law index of the source flux density in wavelength")
    source_offset: tuple = field_doc((0.3, -0.4), "source centre offset from the field centre (x, y), "
                                     "spaxels")
    jitter_spaxels: float = field_doc(0.0, "pointing jitter rms (spaxels)", min=0.0)
    background: bool = field_doc(True, "add a background")
    background_mjysr: float = field_doc(5.0, "background at 5 um, MJy/sr (scaled by (lambda/5)^2)")
    gradient_mjysr: tuple = field_doc((0.05, -0.03), "background gradient per spaxel in (x, y), MJy/sr")
    transit: bool = field_doc(True, "inject the transit")
    t0: float | None = field_doc(None, "mid-transit time, BMJD_TDB; None -> middle of the series")
    period: float = field_doc(2.0, "orbital period, days")
    a_rs: float = field_doc(8.0, "a/Rs")
    inc: float = field_doc(88.0, "inclination, deg")
    u1: float = field_doc(0.1, "quadratic limb-darkening coefficient u1")
    u2: float = field_doc(0.1, "quadratic limb-darkening coefficient u2")
    rp_rs: float = field_doc(0.1, "planet-to-star radius ratio at 5 um", min=0.0, max=0.5)
    rp_rs_slope: float = field_doc(0.0, "d(Rp/Rs)/d(lambda) per um")
    hot_spaxel: bool = field_doc(True, "a hot spaxel in the annulus")
    hot_mjysr: float = field_doc(200.0, "excess of the hot spaxel (at 3 FWHM from the source), MJy/sr")
    flicker: bool = field_doc(True, "a core spaxel NaN in two integrations")
    flicker_offset: tuple = field_doc((1, 0), "offset of the flickering spaxel from the peak (x, y), "
                                      "spaxels")
    flicker_integrations: tuple = field_doc((12, 13), "integrations (0-based) in which it is NaN")
    nan_border: int = field_doc(1, "width of the NaN border of each cube plane, spaxels", min=0)
    noise: bool = field_doc(True, "add Gaussian noise")
    err_floor: float = field_doc(0.5, "noise floor per spaxel, MJy/sr", min=0.0)
    poisson_scale: float = field_doc(0.05, "signal-dependent noise: sigma^2 += poisson_scale * |signal| "
                                     "(MJy/sr)", min=0.0)
    psf: str = field_doc("gaussian", "PSF model (only 'gaussian' is implemented)")
    seed: int = field_doc(0, "random seed")


@dataclass
class MRSBandTruth:
    """Truth of one band.

    Parameters
    ----------
    wavelength : numpy.ndarray
        ``(nwave,)`` um.
    flux_jy : numpy.ndarray
        ``(nwave,)`` total source flux density out of transit, Jy.
    background : numpy.ndarray
        ``(nwave,)`` MJy/sr at the source centre.
    sigma_pix : numpy.ndarray
        ``(nwave,)`` Gaussian PSF sigma, spaxels.
    centre : tuple of float
        ``(x, y)`` mean source position, spaxels.
    centres : numpy.ndarray
        ``(nints, 2)`` source position per integration, ``(x, y)`` spaxels.
    rp_rs : numpy.ndarray
        ``(nwave,)`` injected Rp/Rs.
    transit : numpy.ndarray
        ``(nints, nwave)`` relative flux.
    hot_spaxel : tuple of int or None
        ``(y, x)`` of the hot spaxel.
    flicker_spaxel : tuple of int or None
        ``(y, x)`` of the flickering spaxel.
    pixar_sr : float
        Solid angle of a spaxel, sr.
    pixel_scale : float
        Spaxel size, arcsec.
    """

    wavelength: np.ndarray
    flux_jy: np.ndarray
    background: np.ndarray
    sigma_pix: np.ndarray
    centre: tuple
    centres: np.ndarray
    rp_rs: np.ndarray
    transit: np.ndarray
    hot_spaxel: tuple | None
    flicker_spaxel: tuple | None
    pixar_sr: float
    pixel_scale: float

    def depth(self) -> np.ndarray:
        """Injected transit depth (Rp/Rs)^2 per plane."""
        return self.rp_rs ** 2

    def psf_image(self, k: int, shape=None) -> np.ndarray:
        """The noiseless, unit-integral pixelised PSF of plane ``k`` at the mean centre ``(ny, nx)``."""
        return pixel_integrated_gaussian(shape, self.centre[0], self.centre[1], self.sigma_pix[k])


@dataclass
class MRSTruth:
    """Truth of a simulation.

    Parameters
    ----------
    bands : dict
        Band label -> :class:`MRSBandTruth`.
    int_times : IntTimes
        The integrations' times.
    params : dict
        The transit parameters (t0, per, a, inc, ecc, w, u).
    config : MRSSimConfig
        The configuration that produced it.
    """

    bands: dict
    int_times: IntTimes
    params: dict
    config: MRSSimConfig = field(repr=False, default=None)


def _times(cfg):
    dt = cfg.integration_time_s / 86400.0
    start = cfg.t_start + dt * np.arange(cfg.nints)
    return IntTimes(np.arange(1, cfg.nints + 1), start, start + dt / 2, start + dt,
                    start - 69.184 / 86400, start + dt / 2 - 69.184 / 86400, start + dt - 69.184 / 86400)


def _transit(cfg, t, rp_rs):
    import batman
    p = batman.TransitParams()
    p.t0 = cfg.t0 if cfg.t0 is not None else float(t.mean())
    p.per, p.a, p.inc, p.ecc, p.w = cfg.period, cfg.a_rs, cfg.inc, 0.0, 90.0
    p.u, p.limb_dark, p.rp = [cfg.u1, cfg.u2], "quadratic", float(rp_rs[0])
    m = batman.TransitModel(p, t)
    out = np.empty((t.size, rp_rs.size))
    for k, rp in enumerate(rp_rs):
        p.rp = float(rp)
        out[:, k] = m.light_curve(p)
    return out, {"t0": p.t0, "per": p.per, "a": p.a, "inc": p.inc, "ecc": 0.0, "w": 90.0,
                 "u": [cfg.u1, cfg.u2]}


def simulate_mrs_cubes(cfg: MRSSimConfig | None = None):
    """Simulate MRS cube time series.

    Parameters
    ----------
    cfg : MRSSimConfig, optional
        The simulation (default ``MRSSimConfig()``).

    Returns
    -------
    cubes : dict
        Band label -> :class:`~tsoreduce.mrs.CubeSeries` ``(nints, nwave, ny, nx)`` MJy/sr.
    truth : MRSTruth
        Everything injected.

    Raises
    ------
    NotImplementedStepError
        A PSF other than "gaussian".
    KeyError
        An unknown band.
    """
    cfg = cfg or MRSSimConfig()
    if cfg.psf != "gaussian":
        raise NotImplementedStepError(f"simulate_mrs_cubes: psf {cfg.psf!r} (only 'gaussian')")
    rng = np.random.default_rng(cfg.seed)
    times = _times(cfg)
    t = times.mid_bjd_tdb
    cubes, truths, params = {}, {}, {}
    jitter = rng.normal(0.0, cfg.jitter_spaxels, (cfg.nints, 2)) if cfg.jitter_spaxels > 0 \
        else np.zeros((cfg.nints, 2))
    for label in cfg.bands:
        if label not in MRS_BANDS:
            raise KeyError(f"unknown MRS band {label!r}; known: {', '.join(MRS_BANDS)}")
        lo, hi, scale, _ = MRS_BANDS[label]
        dl = (hi - lo) / cfg.nwave
        wl = lo + dl * (np.arange(cfg.nwave) + 0.5)
        n = int(round(cfg.field_arcsec / scale)) | 1
        shape = (n, n)
        pixar = scale ** 2 * ARCSEC2_TO_SR
        sig = psf_fwhm_arcsec(wl) / scale / (2 * np.sqrt(2 * np.log(2)))
        xc0 = (n - 1) / 2 + cfg.source_offset[0]
        yc0 = (n - 1) / 2 + cfg.source_offset[1]
        cen = np.column_stack([xc0 + jitter[:, 0], yc0 + jitter[:, 1]])
        fnu = cfg.flux_jy * (wl / 5.0) ** cfg.flux_index
        rp = cfg.rp_rs + cfg.rp_rs_slope * (wl - 5.0)
        if cfg.transit:
            tr, params = _transit(cfg, t, rp)
        else:
            tr = np.ones((cfg.nints, cfg.nwave))
        yy, xx = np.mgrid[:n, :n].astype(float)
        b0 = cfg.background_mjysr * (wl / 5.0) ** 2 if cfg.background else np.zeros(cfg.nwave)
        grad = (cfg.gradient_mjysr[0] * (xx - xc0) + cfg.gradient_mjysr[1] * (yy - yc0)) \
            if cfg.background else np.zeros(shape)
        bkg = b0[:, None, None] + grad[None]                        # (nwave, ny, nx)
        data = np.empty((cfg.nints, cfg.nwave, n, n))
        for i in range(cfg.nints):
            P = pixel_integrated_gaussian(shape, np.full(cfg.nwave, cen[i, 0]),
                                          np.full(cfg.nwave, cen[i, 1]), sig)
            data[i] = (fnu * tr[i])[:, None, None] * P / (1e6 * pixar) + bkg
        hot = flick = None
        if cfg.hot_spaxel:
            r3 = 3.0 * np.median(sig) * 2 * np.sqrt(2 * np.log(2))
            hot = (int(round(yc0)), int(round(xc0 + r3)))
            data[:, :, hot[0], hot[1]] += cfg.hot_mjysr
        err = np.sqrt(cfg.err_floor ** 2 + cfg.poisson_scale * np.abs(data))
        if cfg.noise:
            data = data + rng.normal(size=data.shape) * err
        dq = np.zeros(data.shape, np.uint32)
        if cfg.nan_border > 0:
            b = cfg.nan_border
            edge = np.ones(shape, bool)
            edge[b:-b, b:-b] = False
            data[:, :, edge] = np.nan
            err[:, :, edge] = np.nan
            dq[:, :, edge] = DQ.DO_NOT_USE | DQ.NON_SCIENCE
        ints = np.asarray([i for i in cfg.flicker_integrations if 0 <= i < cfg.nints], int)
        if cfg.flicker and ints.size:  # integrations beyond nints are ignored (short test runs)
            flick = (int(round(yc0)) + cfg.flicker_offset[1], int(round(xc0)) + cfg.flicker_offset[0])
            data[ints, :, flick[0], flick[1]] = np.nan
            err[ints, :, flick[0], flick[1]] = np.nan
            dq[ints, :, flick[0], flick[1]] = DQ.DO_NOT_USE
        ch, sb = label[0], _BAND_WORDS[label[1]]
        meta = {"TELESCOP": "JWST", "INSTRUME": "MIRI", "EXP_TYPE": "MIR_MRS", "CHANNEL": ch,
                "BAND": sb, "DETECTOR": "MIRIFUSHORT" if ch in "12" else "MIRIFULONG",
                "TSOVISIT": True, "NINTS": cfg.nints, "SRCTYPE": "POINT", "TARGNAME": "SIM-MRS"}
        cubes[label] = CubeSeries(data.astype(np.float32), err.astype(np.float32), dq, wl, pixar, scale,
                                  None, times, label, meta)
        truths[label] = MRSBandTruth(wl, fnu, b0 + 0.0, sig, (xc0, yc0), cen, rp, tr, hot, flick,
                                     pixar, scale)
    return cubes, MRSTruth(truths, times, params, cfg)


def _cube_hdul(cubes: CubeSeries, sl, wave_axis, intstart):
    nw = cubes.nwave
    ny, nx = cubes.data.shape[2:]
    ph = fits.Header()
    for k, v in cubes.meta.items():
        if not k.startswith("_") and len(k) <= 8 and isinstance(v, (str, int, float, bool)):
            ph[k] = v
    nint = (sl.stop - sl.start)
    ph["INTSTART"], ph["INTEND"] = intstart, intstart + nint - 1
    sh = fits.Header()
    sh["BUNIT"] = "MJy/sr"
    sh["CTYPE1"], sh["CTYPE2"] = "RA---TAN", "DEC--TAN"
    sh["CUNIT1"], sh["CUNIT2"] = "deg", "deg"
    sh["CDELT1"] = sh["CDELT2"] = cubes.pixel_scale / 3600.0
    sh["CRPIX1"], sh["CRPIX2"] = (nx + 1) / 2, (ny + 1) / 2
    sh["CRVAL1"], sh["CRVAL2"] = 150.0, 2.0
    sh["PC1_1"], sh["PC2_2"] = -1.0, 1.0
    wl = cubes.wavelength
    if wave_axis == "linear":
        d = float(np.mean(np.diff(wl))) if nw > 1 else 0.001
        if nw > 1 and not np.allclose(np.diff(wl), d, rtol=1e-9, atol=1e-12):
            raise ValueError("write_mrs_cubes: wave_axis='linear' needs an evenly spaced wavelength axis")
        sh["CTYPE3"], sh["CUNIT3"], sh["CRPIX3"] = "WAVE", "um", 1.0
        sh["CRVAL3"], sh["CDELT3"] = float(wl[0]), d
    elif wave_axis == "tab":
        sh["CTYPE3"], sh["CUNIT3"], sh["CRPIX3"], sh["CRVAL3"] = "WAVE-TAB", "um", 1.0, 1.0
        sh["PS3_0"], sh["PS3_1"] = "WCS-TABLE", "wavelength"
    else:
        raise ValueError(f"write_mrs_cubes: wave_axis {wave_axis!r} is not 'linear' or 'tab'")
    sh["PIXAR_SR"] = cubes.pixar_sr
    sh["PIXAR_A2"] = cubes.pixar_sr / ARCSEC2_TO_SR
    squeeze = (lambda a: a[sl][0]) if nint == 1 else (lambda a: a[sl])  # noqa: E731
    hdus = [fits.PrimaryHDU(header=ph),
            fits.ImageHDU(squeeze(cubes.data), sh, name="SCI"),
            fits.ImageHDU(squeeze(cubes.err), name="ERR"),
            fits.ImageHDU(squeeze(cubes.dq), name="DQ")]
    if cubes.wmap is not None:
        hdus.append(fits.ImageHDU(squeeze(cubes.wmap), name="WMAP"))
    hdus[2].header["BUNIT"] = "MJy/sr"
    col = fits.Column("wavelength", f"{nw}D", unit="um", dim=f"(1,{nw})", array=wl.reshape(1, nw, 1))
    if wave_axis == "tab" or True:  # cube_build always writes WCS-TABLE (jwst cube_build/ifu_cube.py)
        hdus.append(fits.BinTableHDU.from_columns([col], name="WCS-TABLE"))
    if cubes.int_times is not None:
        hdus.append(int_times_hdu(cubes.int_times))
    return fits.HDUList(hdus)


def _atomic_write(hdul, path, overwrite):
    if os.path.exists(path) and not overwrite:
        raise OverwriteError(f"{path} exists; pass overwrite=True to replace it")
    atomic_write(path, lambda tmp: hdul.writeto(tmp, overwrite=True), ".fits")


def write_mrs_cubes(cubes, outdir, *, layout: str = "per_integration", wave_axis: str = "linear",
                    prefix: str = "jw99999001001_04101_00001", overwrite: bool = False,
                    include_wcs_table: bool = True) -> list[str]:
    """Write cubes as ``s3d`` FITS files (PRIMARY, SCI, ERR, DQ, [WMAP], WCS-TABLE, INT_TIMES).

    Parameters
    ----------
    cubes : :class:`~tsoreduce.mrs.CubeSeries` or dict of them (one per band).
    outdir : directory (created).
    layout : ``"per_integration"`` (one 3-D cube per integration, INTSTART = INTEND = i + 1, each carrying
        the full INT_TIMES table as analysts attach the calints one) or ``"stack"`` (one 4-D file).
    wave_axis : ``"linear"`` (CTYPE3 = WAVE, CRVAL3/CDELT3/CRPIX3) or ``"tab"`` (CTYPE3 = WAVE-TAB).
    prefix : str
        File-name prefix (a JWST-style observation id).
    overwrite : bool
        Replace existing files.
    include_wcs_table : write WCS-TABLE for linear cubes too (cube_build does); it is always written
        for ``"tab"``.

    Returns
    -------
    list of str
        The paths written (sorted by integration), each atomically.

    Raises
    ------
    OverwriteError
        A file exists and ``overwrite`` is False.
    ValueError
        An unknown ``layout`` or ``wave_axis``, or a linear axis that is not evenly spaced.
    """
    if isinstance(cubes, CubeSeries):
        cubes = {cubes.band: cubes}
    os.makedirs(outdir, exist_ok=True)
    paths = []
    for label, c in cubes.items():
        tag = f"ch{label}".lower()
        if layout == "per_integration":
            for i in range(c.nints):
                hdul = _cube_hdul(c, slice(i, i + 1), wave_axis, i + 1)
                if not include_wcs_table and wave_axis == "linear":
                    del hdul["WCS-TABLE"]
                p = os.path.join(str(outdir), f"{prefix}_int{i + 1:05d}_{tag}_s3d.fits")
                _atomic_write(hdul, p, overwrite)
                paths.append(p)
        elif layout == "stack":
            hdul = _cube_hdul(c, slice(0, c.nints), wave_axis, 1)
            if not include_wcs_table and wave_axis == "linear":
                del hdul["WCS-TABLE"]
            p = os.path.join(str(outdir), f"{prefix}_{tag}_s3d4d.fits")
            _atomic_write(hdul, p, overwrite)
            paths.append(p)
        else:
            raise ValueError(f"write_mrs_cubes: layout {layout!r} is not 'per_integration' or 'stack'")
    return paths
