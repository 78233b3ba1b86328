"""Point-source aperture photometry of every wavelength plane of an MRS cube time series.

Method (STScI extract_1d IFU point-source branch -- JWST pipeline documentation, Extract1D; jwst
``extract_1d/ifu.py`` -- with the TSO changes below):

* **Centre**: one fixed centre for all integrations, from the time-median, wavelength-summed,
  background-subtracted image (:func:`~tsoreduce.mrs.apertures.find_centre`), unless given.
* **Aperture**: r(lambda) = k_ap x FWHM(lambda), FWHM = 0.033 lambda + 0.106 arcsec (Law et al. 2023),
  k_ap = 2 as the pipeline's MRS reference radius; exact circle-spaxel overlap weights computed once
  per plane (the centre is fixed) and applied to all integrations by one tensor contraction.
* **Background**: the weighted mean surface brightness of the annulus [k_in, k_out] x FWHM
  (default 2.5-3.5), iteratively sigma-clipped, per integration and plane, over valid spaxels only
  (never pi r^2); net = sum_ap w S - B sum_ap w.  The pipeline instead counts clipped spaxels in the
  annulus area, which biases B low (jwst ``extract_1d/ifu.py``).
* **Bad spaxels, held fixed in time** (``mask_mode``): ``"union"`` (default) removes from the aperture
  every spaxel that is bad in ANY integration (a constant loss per plane, but if the lost spaxel is in the
  PSF core, pointing jitter modulates it: ~PSF fraction x gradient x jitter, e.g. 0.2 % rms for 0.02
  spaxel jitter and a 13 % core spaxel -- decorrelate against the centroids or use ``"fill"``);
  ``"fill"`` replaces a voxel bad in some integrations by
  the scaled time-median PSF (background-subtracted template x per-integration scale fitted on the
  always-good aperture spaxels); ``"per_integration"`` is the pipeline's behaviour (mask each
  integration on its own) and is kept only to show its failure: a flickering core spaxel fakes a 5-13 %
  dip (measured: ``tests/test_mrs.py::test_flickering_core_spaxel_pipeline_masking_fakes_a_dip_union_does_not``).
* **Flux**: F [Jy] = 1e6 x PIXAR_SR x sum(w S), errors
  sigma_F^2 = (1e6 Omega)^2 [sum w^2 sigma^2 + (sum w)^2 sum_ann w^2 sigma^2 / (sum_ann w)^2] (propagation
  of a weighted sum and of the annulus weighted mean;
  checked by ``tests/test_mrs.py::test_propagated_errors_match_scatter``),
  times ``covar_scale`` (drizzle covariance, Law et al. 2023: 1.5-3).
* **Aperture correction** (optional): a table (wavelength, apcorr) or an analytic PSF model, multiplying
  flux and error (the pipeline's apply_apcorr convention).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import numpy as np

from .._util import quiet_nan_warnings
from ..datamodel import DQ, IntTimes, SpectraData
from ..errors import EmptyDataError, NotImplementedStepError
from .apertures import (airy_encircled_energy, annulus_overlap, circle_overlap, find_centre,
                        gaussian_encircled_energy, psf_fwhm_arcsec)
from .cubes import MRS_BANDS, CubeSeries, band_of_wavelength

log = logging.getLogger(__name__)

__all__ = ["CubePhotometry", "extract_cube_photometry", "aperture_correction", "collapsed_image"]

MASK_MODES = ("union", "fill", "per_integration")


@dataclass
class CubePhotometry:
    """Per-integration, per-plane point-source photometry of one :class:`CubeSeries`.

    Shapes: ``nints`` integrations, ``nwave`` planes.

    Parameters
    ----------
    wavelength : numpy.ndarray
        ``(nwave,)`` um.
    flux, flux_err : numpy.ndarray
        ``(nints, nwave)`` Jy (aperture-corrected when ``apcorr`` != 1).
    surf_bright : numpy.ndarray
        ``(nints, nwave)`` net mean surface brightness in the aperture, MJy/sr.
    background, background_err : numpy.ndarray
        ``(nints, nwave)`` annulus mean surface brightness, MJy/sr.
    dq : numpy.ndarray
        ``(nints, nwave)`` uint32; DO_NOT_USE where nothing could be measured.
    npix : numpy.ndarray
        ``(nwave,)`` aperture area actually used (spaxels).
    npix_lost : numpy.ndarray
        ``(nwave,)`` area removed by the fixed bad-spaxel mask (spaxels).
    psf_lost : numpy.ndarray
        ``(nwave,)`` fraction of the PSF (Gaussian model) in the removed spaxels -- a constant per
        plane, so it cancels in normalised light curves.
    centre : tuple of float
        (x, y) fixed aperture centre, 0-based spaxels of the full cube.
    centroid_x, centroid_y : numpy.ndarray or None
        ``(nints,)`` per-integration centroids (spaxels).
    radius, r_in, r_out : numpy.ndarray
        ``(nwave,)`` aperture and annulus radii in spaxels.
    apcorr : numpy.ndarray
        ``(nwave,)`` applied multiplicative aperture correction.
    band : str
        Band label of the input cubes.
    pixar_sr : float
        Spaxel solid angle (sr).
    pixel_scale : float
        Spaxel side (arcsec).
    int_times : tsoreduce.datamodel.IntTimes or None
        Integration times of the input cubes.
    meta : dict
        Header keywords of the input cubes plus the aperture settings (MRS_KAP, MRS_KIN, ...).
    """

    wavelength: np.ndarray
    flux: np.ndarray
    flux_err: np.ndarray
    surf_bright: np.ndarray
    background: np.ndarray
    background_err: np.ndarray
    dq: np.ndarray
    npix: np.ndarray
    npix_lost: np.ndarray
    psf_lost: np.ndarray
    centre: tuple
    centroid_x: np.ndarray | None
    centroid_y: np.ndarray | None
    radius: np.ndarray
    r_in: np.ndarray
    r_out: np.ndarray
    apcorr: np.ndarray
    band: str
    pixar_sr: float
    pixel_scale: float
    int_times: IntTimes | None = None
    meta: dict = field(default_factory=dict)

    def plane_bands(self) -> np.ndarray:
        """Band label of every plane ``(nwave,)``: the cube's label for a single-band cube; for a
        multi-band (channel / multi, WAVE-TAB) cube the nominal sub-band of each wavelength (bluer band
        in overlaps, :func:`~tsoreduce.mrs.cubes.band_of_wavelength`), so light-curve channels still
        never mix bands."""
        if self.band in MRS_BANDS:
            return np.full(self.wavelength.size, self.band)
        lab = band_of_wavelength(self.wavelength).astype(object)
        lab[lab == ""] = self.band
        return lab.astype(str)

    def to_spectra(self) -> SpectraData:
        """The x1dints-level :class:`~tsoreduce.datamodel.SpectraData` (Jy), with the centroids (if
        tracked) in ``aux`` and the band label / aperture in ``meta``."""
        aux = {}
        if self.centroid_x is not None:
            aux = {"centroid_x": self.centroid_x, "centroid_y": self.centroid_y}
        meta = {k: v for k, v in self.meta.items() if not k.startswith("_")}
        meta.update({"EXP_TYPE": "MIR_MRS", "MRSBANDS": self.band, "SRCXPOS": self.centre[0],
                     "SRCYPOS": self.centre[1], "EXTRMETH": "aperture", "PIXAR_SR": self.pixar_sr,
                     "_band": self.plane_bands(), "_photometry": self})
        return SpectraData(self.flux, self.flux_err, self.dq, self.wavelength, self.int_times, aux,
                           meta, units="Jy")


def aperture_correction(spec, wavelength, k_ap, k_in, k_out, *, subtract_background=True) -> np.ndarray:
    """Multiplicative aperture correction per plane.

    Analytic corrections are 1 / [EE(k_ap) - (k_ap^2 / (k_out^2 - k_in^2)) (EE(k_out) - EE(k_in))],
    the inverse of the net fraction of a point source left after subtracting the annulus mean
    (checked by ``tests/test_mrs.py::test_aperture_corrections``; the pipeline applies its table after
    background subtraction too, JWST pipeline documentation, Extract1D).

    Parameters
    ----------
    spec : str or None
        None / ``"none"`` (ones); ``"gaussian"`` or ``"airy"`` (analytic); or a path to a table
        readable by astropy (ECSV, CSV, FITS) with columns ``wavelength`` (um) and ``apcorr`` for THIS
        radius, interpolated linearly (held constant beyond its ends).
    wavelength : array_like
        ``(nwave,)`` um.
    k_ap, k_in, k_out : float
        Aperture and annulus radii in FWHM.
    subtract_background : bool
        Whether the annulus mean is subtracted (analytic corrections account for the PSF wings in it).

    Returns
    -------
    numpy.ndarray
        ``(nwave,)`` factors multiplying flux and error.

    Raises
    ------
    FileNotFoundError
        For a missing table.
    KeyError
        For a table without a ``wavelength`` or ``apcorr`` column.
    """
    wl = np.asarray(wavelength, float)
    if spec is None or spec == "none":
        return np.ones(wl.size)
    if spec in ("gaussian", "airy"):
        ee = gaussian_encircled_energy if spec == "gaussian" else airy_encircled_energy
        frac = ee(k_ap)
        if subtract_background:
            frac = frac - k_ap ** 2 / (k_out ** 2 - k_in ** 2) * (ee(k_out) - ee(k_in))
        return np.full(wl.size, 1.0 / frac)
    from astropy.table import Table
    if not os.path.exists(str(spec)):
        raise FileNotFoundError(f"{spec}: aperture-correction table not found")
    tab = Table.read(str(spec))
    for col in ("wavelength", "apcorr"):
        if col not in tab.colnames:
            raise KeyError(f"{spec}: aperture-correction table needs a {col!r} column "
                           f"(has {', '.join(tab.colnames)})")
    order = np.argsort(np.asarray(tab["wavelength"], float))
    return np.interp(wl, np.asarray(tab["wavelength"], float)[order], np.asarray(tab["apcorr"], float)[order])


def collapsed_image(cubes: CubeSeries, *, max_wavelength=26.0, max_ints: int = 64) -> np.ndarray:
    """Time-median, per-plane median-subtracted, wavelength-summed image for centring.

    Planes beyond ``max_wavelength`` are skipped as in the pipeline's ``ifu_autocen`` (low S/N in 4C).

    Parameters
    ----------
    cubes : CubeSeries
        ``(nints, nwave, ny, nx)``, MJy/sr.
    max_wavelength : float
        Longest wavelength used (um).
    max_ints : int
        The median is over at most this many evenly spaced integrations.

    Returns
    -------
    numpy.ndarray
        ``(ny, nx)``; NaN where a spaxel is bad in most planes.
    """
    step = max(1, cubes.nints // max_ints)
    sel = cubes.wavelength <= max_wavelength
    if not sel.any():
        sel[:] = True
    sub = cubes.select_integrations(slice(None, None, step))
    sub = sub.replace(data=sub.data[:, sel], err=sub.err[:, sel], dq=sub.dq[:, sel],
                      wmap=None if sub.wmap is None else sub.wmap[:, sel], wavelength=sub.wavelength[sel])
    d = np.where(sub.bad_voxels(), np.nan, sub.data)
    with np.errstate(all="ignore"), quiet_nan_warnings():
        med = np.nanmedian(d, axis=0)                       # (nw, ny, nx)
        med = med - np.nanmedian(med, axis=(1, 2))[:, None, None]
        nbad = np.isnan(med).sum(axis=0)
        img = np.nansum(med, axis=0)
    img[nbad > 0.5 * med.shape[0]] = np.nan
    return img


def _annulus_background(S, E, valid, w_ann, sigma, maxiters, model, dx, dy):
    """Sigma-clipped background from the annulus, for every (integration, plane).

    ``S``, ``E``, ``valid``: ``(t, k, y, x)``; ``w_ann``: ``(k, y, x)`` overlap weights; ``dx``, ``dy``:
    ``(y, x)`` offsets of spaxel centres from the aperture centre.  ``model="mean"``: weighted mean
    surface brightness; ``model="plane"``: weighted least-squares plane a + b dx + c dy (a linear
    gradient averages exactly over a spaxel, so the plane is unbiased by gradients and by spaxels lost
    to clipping, which bias the mean by (gradient x offset) / N).  Clipping: residuals beyond
    ``sigma`` x weighted rms are dropped, iterated to convergence (at most ``maxiters``); sigma <= 0
    disables it.

    Returns (bkg ``(t, k)`` value at the centre, bkg_var ``(t, k)`` its variance, per-spaxel background
    ``(t, k, y, x)``, gradient ``(t, k, 3)`` coefficients (a, b, c), covariance ``(t, k, 3, 3)``).
    """
    w = np.broadcast_to(w_ann[None] * valid, S.shape)
    basis = np.stack([np.ones_like(dx), dx, dy])                     # (3, y, x)
    nb = 1 if model == "mean" else 3
    B = basis[:nb]
    for it in range(max(1, maxiters) + 1):
        # normal equations per (t, k): (B W B^T) c = B W S
        M = np.einsum("pyx,tkyx,qyx->tkpq", B, w, B)
        rhs = np.einsum("pyx,tkyx->tkp", B, w * S)
        ok = np.linalg.det(M) > 0 if nb > 1 else M[..., 0, 0] > 0
        Msafe = np.where(ok[..., None, None], M, np.eye(nb))
        coef = np.linalg.solve(Msafe, rhs[..., None])[..., 0]
        coef[~ok] = np.nan
        fit = np.einsum("tkp,pyx->tkyx", coef, B)
        if sigma <= 0 or it == maxiters:
            break
        res = S - fit
        sw = w.sum(axis=(2, 3))
        with np.errstate(invalid="ignore", divide="ignore"):
            rms = np.sqrt(np.einsum("tkyx,tkyx->tk", w, res * res) / sw)
            keep = np.abs(res) <= sigma * rms[..., None, None]
        new_w = np.where(keep, w, 0.0)
        if np.array_equal(new_w > 0, w > 0):
            break
        w = new_w
    # covariance of the coefficients: (B W B^T)^-1 B W diag(E^2) W B^T (B W B^T)^-1
    Minv = np.linalg.inv(Msafe)
    mid = np.einsum("pyx,tkyx,qyx->tkpq", B, w * w * E * E, B)
    cov = Minv @ mid @ Minv
    cov[~ok] = np.nan
    if nb == 1:
        full = np.zeros(coef.shape[:2] + (3,))
        full[..., 0] = coef[..., 0]
        fcov = np.zeros(coef.shape[:2] + (3, 3))
        fcov[..., 0, 0] = cov[..., 0, 0]
        coef, cov = full, fcov
    return coef[..., 0], cov[..., 0, 0], fit, coef, cov


def _check_arguments(mask_mode, subtract_background, k_ap, k_in, k_out, bkg_model, centre_method):
    """Refuse unknown modes and radii that are not increasing, before any work."""
    if mask_mode not in MASK_MODES:
        raise ValueError(f"mask_mode {mask_mode!r} is not one of {', '.join(MASK_MODES)}")
    if subtract_background and not (0 < k_ap and k_in < k_out):
        raise ValueError(f"annulus radii must satisfy k_in < k_out (got {k_in}, {k_out})")
    if bkg_model not in ("mean", "plane"):
        raise ValueError(f"bkg_model {bkg_model!r} is not 'mean' or 'plane'")
    if centre_method not in ("moment", "gaussian"):
        raise NotImplementedStepError(f"centre_method {centre_method!r}: only 'moment' and 'gaussian'")


def _fixed_centre(cubes: CubeSeries, centre, centre_method, fwhm_pix) -> tuple:
    """The given centre, or the one measured on the collapsed image (logged)."""
    if centre is None:
        img = collapsed_image(cubes)
        centre = find_centre(img, float(fwhm_pix.max()), method=centre_method)
        log.info("%s: fixed aperture centre (%.3f, %.3f) spaxels from the collapsed image (%s)",
                 cubes.band, centre[0], centre[1], centre_method)
    return float(centre[0]), float(centre[1])


@dataclass
class _Box:
    """The spaxel box that holds the largest aperture or annulus: the rest of the field never enters."""

    x0: int
    x1: int
    y0: int
    y1: int
    bx: float          # centre in box coordinates
    by: float
    dx: np.ndarray     # (y, x) offsets of spaxel centres from the aperture centre
    dy: np.ndarray

    @property
    def shape(self):
        return (self.y1 - self.y0, self.x1 - self.x0)

    @classmethod
    def around(cls, xc, yc, rmax, ny, nx):
        x0, x1 = max(0, int(np.floor(xc - rmax))), min(nx, int(np.ceil(xc + rmax)) + 1)
        y0, y1 = max(0, int(np.floor(yc - rmax))), min(ny, int(np.ceil(yc + rmax)) + 1)
        bx, by = xc - x0, yc - y0
        dyg, dxg = np.mgrid[:y1 - y0, :x1 - x0].astype(float)
        return cls(x0, x1, y0, y1, bx, by, dxg - bx, dyg - by)


def _chunk_voxels(cubes: CubeSeries, ks: slice, box: _Box):
    """Surface brightness and errors ``(t, k, y, x)`` of planes ``ks`` in the box (bad voxels zeroed),
    and the bad-voxel mask (non-finite, DO_NOT_USE, or no coverage)."""
    sl = (slice(None), ks, slice(box.y0, box.y1), slice(box.x0, box.x1))
    S = cubes.data[sl].astype(np.float64)
    E = cubes.err[sl].astype(np.float64)
    bad = ~np.isfinite(S) | ~np.isfinite(E)
    bad |= (cubes.dq[sl] & np.uint32(DQ.DO_NOT_USE)) != 0
    if cubes.wmap is not None:
        bad |= ~(cubes.wmap[sl] > 0)
    return np.where(bad, 0.0, S), np.where(bad, 0.0, E), bad


def _chunk_background(S, E, bad, union, box: _Box, r_in, r_out, *, mask_mode, sigma, maxiters, model,
                      overlap, subpixels):
    """Annulus background of a chunk: (bkg ``(t, k)``, its variance, the model image ``(t, k, y, x)``,
    coefficient covariance ``(t, k, 3, 3)``, the basis ``(3, y, x)`` of the aperture sum, and the
    (t, k) measurements without a background)."""
    w_ann = np.clip(annulus_overlap(box.shape, box.bx, box.by, r_in, r_out, overlap=overlap,
                                    subpixels=subpixels), 0.0, 1.0)
    ann_valid = ~bad if mask_mode == "per_integration" else ~union[None]
    bkg, bkg_var, bkg_img, coef, cov = _annulus_background(S, E, ann_valid, w_ann, sigma, maxiters, model,
                                                           box.dx, box.dy)
    no_bkg = ~np.isfinite(bkg)
    bkg = np.where(no_bkg, 0.0, bkg)
    bkg_img = np.where(no_bkg[..., None, None], 0.0, bkg_img)
    # variance of sum_ap w x model = g^T Cov g, g = (sum w, sum w dx, sum w dy)
    gvec = np.stack([np.ones_like(box.dx), box.dx, box.dy])
    return bkg, bkg_var, bkg_img, cov, gvec, no_bkg


def _no_background(S, box: _Box):
    """The zero background of :func:`_chunk_background`'s shape (background subtraction off)."""
    bkg = np.zeros(S.shape[:2])
    return bkg, np.zeros_like(bkg), np.zeros_like(S), np.zeros(bkg.shape + (3, 3)), \
        np.zeros((3,) + box.shape), np.zeros(bkg.shape, bool)


def _aperture_sums(D, E, bad, union, allbad, w_ap, psf, gvec, mask_mode):
    """Weighted aperture sums of one chunk under the bad-spaxel ``mask_mode``.

    Returns (net ``(t, k)`` sum w D, var ``(t, k)`` sum w^2 E^2, n_use ``(t, k)`` sum w, g ``(t, k, 3)``
    the background-model gradient of the sum, and per plane: aperture spaxels, spaxels lost, PSF
    fraction lost)."""
    nints = D.shape[0]
    if mask_mode == "per_integration":
        w_eff = w_ap[None] * ~bad                     # (t, k, y, x): the pipeline's choice
        g = np.einsum("tkyx,pyx->tkp", w_eff, gvec)
        n_use = w_eff.sum(axis=(2, 3))
        net = np.einsum("tkyx,tkyx->tk", w_eff, D)
        var = np.einsum("tkyx,tkyx->tk", w_eff * w_eff, E * E)
        lost = (w_ap.sum(axis=(1, 2)), (w_ap[None] * bad).sum(axis=(2, 3)).mean(axis=0),
                np.einsum("tkyx,kyx->k", w_ap[None] * bad, psf) / nints)
        return net, var, n_use, g, lost
    keep = ~(allbad if mask_mode == "fill" else union)
    w_eff = w_ap * keep                          # (k, y, x), fixed in time
    n_k = w_eff.sum(axis=(1, 2))
    g = np.broadcast_to(np.einsum("kyx,pyx->kp", w_eff, gvec)[None], (nints,) + (n_k.size, 3))
    lost = (n_k, (w_ap * ~keep).sum(axis=(1, 2)), (w_ap * ~keep * psf).sum(axis=(1, 2)))
    Ev = E
    if mask_mode == "fill":
        D, Ev = _fill_from_template(D, E, bad, allbad, w_eff)
    net = np.einsum("tkyx,kyx->tk", D, w_eff)
    var = np.einsum("tkyx,kyx->tk", Ev * Ev, w_eff * w_eff)
    return net, var, np.broadcast_to(n_k, net.shape), g, lost


def _chunk_size(chunk_planes, nints, box: _Box) -> int:
    """Planes per chunk: about 12 float64 temporaries of (nints, chunk, box) live at once; ~256 MB."""
    per_plane = 12 * 8 * nints * box.shape[0] * box.shape[1]
    return int(max(1, min(chunk_planes, 256e6 // max(per_plane, 1))))


def _flag_empty(out, dq, src, band):
    """NaN the flux of DO_NOT_USE measurements; EmptyDataError when every one is flagged."""
    flagged = (dq & np.uint32(DQ.DO_NOT_USE)) != 0
    for key in ("flux", "flux_err", "sb"):
        out[key][flagged] = np.nan
    if flagged.all():
        raise EmptyDataError(src, f"band {band}: no plane of any integration has usable "
                                  "spaxels in the aperture")
    if flagged.any():
        log.info("%s: %d of %d (integration, plane) measurements flagged DO_NOT_USE (empty aperture or "
                 "annulus)", band, int(flagged.sum()), flagged.size)


def extract_cube_photometry(cubes: CubeSeries, *, centre=None, centre_method: str = "moment",
                            track_centroids: bool = True, k_ap: float = 2.0, k_in: float = 2.5,
                            k_out: float = 3.5, subtract_background: bool = True,
                            bkg_sigma: float = 3.0, bkg_maxiters: int = 5, bkg_model: str = "mean",
                            mask_mode: str = "union",
                            overlap: str = "exact", subpixels: int = 21, apcorr=None,
                            covar_scale: float = 1.0, chunk_planes: int = 64) -> CubePhotometry:
    """Aperture photometry of every plane of every integration (see the module docstring for the method).

    Parameters
    ----------
    cubes : CubeSeries
        ``(nints, nwave, ny, nx)``, MJy/sr; not modified.
    centre : tuple of float, optional
        (x, y) fixed centre (0-based spaxels); None: measured on the collapsed image.
    centre_method : str
        How the centre is measured: "moment" (iterated first moment) or "gaussian".
    track_centroids : bool
        Also measure per-integration centroids (first moment in 2 FWHM, iterated 3 times) for use as
        decorrelation regressors.
    k_ap, k_in, k_out : float
        Aperture radius and annulus radii in units of FWHM(lambda).
    subtract_background : bool
        Subtract the annulus background.
    bkg_sigma : float
        Sigma-clipping threshold in the annulus (0: no clipping).
    bkg_maxiters : int
        Clipping iterations at most.
    bkg_model : str
        "mean" (weighted mean SB of the annulus, the pipeline's quantity) or "plane" (a tilted plane
        fitted to the annulus and evaluated on each aperture spaxel; exact for linear gradients).
    mask_mode : str
        "union" | "fill" | "per_integration" (see the module docstring).
    overlap : str
        Circle-spaxel overlap: "exact" or "subpixel" (photutils apertures).
    subpixels : int
        Samples per spaxel side for "subpixel".
    apcorr : str or None
        None | "gaussian" | "airy" | table path (:func:`aperture_correction`).
    covar_scale : float
        Multiplies the propagated errors (drizzle covariance).
    chunk_planes : int
        At most this many wavelength planes are processed together; fewer when the temporaries (about
        12 x nints x chunk x box^2 x 8 bytes, box = the largest annulus) would exceed ~256 MB.

    Returns
    -------
    CubePhotometry
        Flux per (integration, plane) in Jy, with the aperture diagnostics.

    Raises
    ------
    ValueError
        For an unknown ``mask_mode`` / ``overlap`` / ``bkg_model`` or radii not increasing.
    tsoreduce.errors.NotImplementedStepError
        For a ``centre_method`` that is not implemented.
    tsoreduce.errors.EmptyDataError
        When no plane yields a measurement.
    """
    _check_arguments(mask_mode, subtract_background, k_ap, k_in, k_out, bkg_model, centre_method)
    nints, nwave, ny, nx = cubes.shape
    wl = cubes.wavelength
    fwhm_pix = psf_fwhm_arcsec(wl) / cubes.pixel_scale
    xc, yc = _fixed_centre(cubes, centre, centre_method, fwhm_pix)
    r_ap = k_ap * fwhm_pix
    r_in, r_out = k_in * fwhm_pix, k_out * fwhm_pix
    box = _Box.around(xc, yc, float((r_out if subtract_background else r_ap).max()) + 1.0, ny, nx)
    if r_out.max() > min(xc + 0.5, nx - 0.5 - xc, yc + 0.5, ny - 0.5 - yc) and subtract_background:
        log.info("%s: the background annulus leaves the field at the longest wavelengths; its area "
                 "is taken from the spaxels inside the field only", cubes.band)

    out = {k: np.full((nints, nwave), np.nan) for k in ("flux", "flux_err", "sb", "bkg", "bkg_err")}
    dq = np.zeros((nints, nwave), np.uint32)
    npix, npix_lost, psf_lost = np.zeros(nwave), np.zeros(nwave), np.zeros(nwave)
    white = np.zeros((nints,) + box.shape) if track_centroids else None
    omega = 1e6 * cubes.pixar_sr
    sig_pix = fwhm_pix / (2.0 * np.sqrt(2.0 * np.log(2.0)))
    chunk = _chunk_size(chunk_planes, nints, box)
    for k0 in range(0, nwave, chunk):
        ks = slice(k0, min(nwave, k0 + chunk))
        S, E, bad = _chunk_voxels(cubes, ks, box)
        union = bad.any(axis=0)                          # (k, y, x): bad in any integration
        w_ap = circle_overlap(box.shape, box.bx, box.by, r_ap[ks], overlap=overlap, subpixels=subpixels)
        if subtract_background:
            bkg, bkg_var, bkg_img, cov, gvec, no_bkg = _chunk_background(
                S, E, bad, union, box, r_in[ks], r_out[ks], mask_mode=mask_mode, sigma=bkg_sigma,
                maxiters=bkg_maxiters, model=bkg_model, overlap=overlap, subpixels=subpixels)
        else:
            bkg, bkg_var, bkg_img, cov, gvec, no_bkg = _no_background(S, box)
        psf = _psf_fraction(box.shape, box.bx, box.by, sig_pix[ks])
        net, var, n_use, g, (npix[ks], npix_lost[ks], psf_lost[ks]) = _aperture_sums(
            S - bkg_img, E, bad, union, bad.all(axis=0), w_ap, psf, gvec, mask_mode)
        if subtract_background:
            # the aperture sum of the background model has variance g^T Cov g (linear error propagation)
            var = var + np.nan_to_num(np.einsum("tkp,tkpq,tkq->tk", g, cov, g))
        with np.errstate(invalid="ignore", divide="ignore"):
            out["flux"][:, ks] = omega * net
            out["flux_err"][:, ks] = omega * np.sqrt(var)
            out["sb"][:, ks] = net / n_use
        out["bkg"][:, ks] = bkg
        out["bkg_err"][:, ks] = np.sqrt(bkg_var)
        nothing = ~(n_use > 0) | (no_bkg if subtract_background else False)
        dq[:, ks][nothing] |= np.uint32(DQ.DO_NOT_USE)
        if track_centroids:
            good_t = ~bad & ~union[None] if mask_mode != "per_integration" else ~bad
            white += np.where(good_t, S - bkg_img, 0.0).sum(axis=1)

    _flag_empty(out, dq, cubes.meta.get("_source_path", "<memory>"), cubes.band)
    if mask_mode == "union" and psf_lost.max() > 0.01:
        k = int(np.argmax(psf_lost))
        log.warning("%s: the time-fixed (union) mask removes %.1f %% of the PSF from the aperture at %.3f um "
                    "(a spaxel bad in some integrations lies in the core); pointing jitter modulates "
                    "that loss -- decorrelate against the centroids or use mask_mode='fill'",
                    cubes.band, 100 * psf_lost[k], wl[k])
    ac = aperture_correction(apcorr, wl, k_ap, k_in, k_out, subtract_background=subtract_background)
    cx = cy = None
    if track_centroids:
        cx, cy = _track_centroids(white, box.bx, box.by, 2.0 * float(np.median(fwhm_pix)))
        cx, cy = cx + box.x0, cy + box.y0
    meta = dict(cubes.meta)
    meta.update({"MRS_KAP": k_ap, "MRS_KIN": k_in, "MRS_KOUT": k_out, "MRS_MASK": mask_mode})
    return CubePhotometry(wl.copy(), out["flux"] * ac, out["flux_err"] * ac * covar_scale, out["sb"] * ac,
                          out["bkg"], out["bkg_err"], dq, npix, npix_lost, psf_lost, (xc, yc), cx, cy, r_ap,
                          r_in, r_out, ac, cubes.band, cubes.pixar_sr, cubes.pixel_scale, cubes.int_times,
                          meta)


def _psf_fraction(shape, x0, y0, sigma):
    from .apertures import pixel_integrated_gaussian
    return pixel_integrated_gaussian(shape, np.full(sigma.size, x0), np.full(sigma.size, y0), sigma)


def _fill_from_template(D, E, bad, allbad, w_eff):
    """Replace voxels bad in SOME integrations by a_t x P: P = time-median of the background-subtracted
    planes, each first normalised by its aperture sum over the always-good spaxels s_t (so a transit or
    drift in time does not enter the template); a_t = s_t / sum(w P) over the same spaxels.  Voxels bad
    in every integration stay out (their weight is already 0).  Errors of filled voxels: the
    time-median ERR of that spaxel, scaled like the template."""
    sometimes = bad & ~allbad[None]
    if not sometimes.any():
        return D, E
    always = w_eff * ~bad.any(axis=0)
    s_t = np.einsum("tkyx,kyx->tk", D, always)                       # (t, k)
    with np.errstate(all="ignore"), quiet_nan_warnings():
        norm = np.where(s_t != 0, s_t, np.nan)[..., None, None]
        P = np.nanmedian(np.where(bad, np.nan, D / norm), axis=0)    # (k, y, x), unit aperture sum
        Pe = np.nanmedian(np.where(bad, np.nan, E / np.abs(norm)), axis=0)
        den = np.einsum("kyx,kyx->k", np.nan_to_num(P), always)
    with np.errstate(all="ignore"):
        a = s_t / den[None]
    a = np.where(np.isfinite(a), a, 0.0)
    D = np.where(sometimes, a[..., None, None] * np.nan_to_num(P)[None], D)
    E = np.where(sometimes, np.abs(a[..., None, None]) * np.nan_to_num(Pe)[None], E)
    return D, E


def _track_centroids(white, x, y, radius, iters: int = 3):
    """Per-integration first moments of the background-subtracted, wavelength-summed images
    ``white`` ``(t, y, x)`` inside circles of ``radius`` spaxels, re-centred ``iters`` times."""
    nt = white.shape[0]
    yy, xx = np.mgrid[:white.shape[1], :white.shape[2]].astype(float)
    cx = np.full(nt, x)
    cy = np.full(nt, y)
    for _ in range(iters):
        w = circle_overlap(white.shape[1:], cx, cy, np.full(nt, radius)) * white
        tot = w.sum(axis=(1, 2))
        with np.errstate(invalid="ignore", divide="ignore"):
            cx = np.where(tot > 0, (w * xx).sum(axis=(1, 2)) / tot, np.nan)
            cy = np.where(tot > 0, (w * yy).sum(axis=(1, 2)) / tot, np.nan)
        cx = np.where(np.isfinite(cx), cx, x)
        cy = np.where(np.isfinite(cy), cy, y)
    return cx, cy
