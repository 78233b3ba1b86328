"""PSF-size law, circle-pixel overlap weights (photutils apertures), encircled energy and centring for MRS cubes.

Pixel convention (photutils / STScI extract_1d): 0-based spaxel index i spans
[i - 0.5, i + 0.5]; a centre (x, y) is in those coordinates (x along the cube's last axis).
"""

from __future__ import annotations

import logging

import numpy as np
from astropy.stats import mad_std
from scipy import optimize, special

log = logging.getLogger(__name__)

__all__ = ["psf_fwhm_arcsec", "gaussian_encircled_energy", "airy_encircled_energy", "circle_overlap",
           "annulus_overlap",
           "pixel_integrated_gaussian", "find_centre", "FWHM_SLOPE", "FWHM_INTERCEPT"]

#: MRS PSF FWHM law, FWHM [arcsec] = 0.033 (lambda/um) + 0.106 (Law et al. 2023, AJ 166, 45; the law the
#: STScI extract_1d MRS reference radius 2 x FWHM is built on, jwst #7815; stpsf detectors.py).
FWHM_SLOPE = 0.033
FWHM_INTERCEPT = 0.106
_SIGMA_PER_FWHM = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))


def psf_fwhm_arcsec(wavelength) -> np.ndarray:
    """MRS point-source FWHM: 0.033 lambda + 0.106 arcsec (Law et al. 2023).

    Parameters
    ----------
    wavelength : float or array_like
        Wavelength in um, any shape.

    Returns
    -------
    numpy.ndarray
        FWHM in arcsec, the shape of ``wavelength``.
    """
    return FWHM_SLOPE * np.asarray(wavelength, float) + FWHM_INTERCEPT


def gaussian_encircled_energy(k) -> np.ndarray:
    """Encircled energy of a circular Gaussian within r = k x FWHM (before pixelisation).

    EE = 1 - 2^(-4 k^2), since the profile is exp(-r^2 / 2 sigma^2) with FWHM^2 = 8 ln2 sigma^2.

    Parameters
    ----------
    k : float or array_like
        Radius in units of the FWHM.

    Returns
    -------
    numpy.ndarray
        Fraction of the flux inside r, the shape of ``k``.
    """
    k = np.asarray(k, float)
    return 1.0 - 2.0 ** (-4.0 * k * k)


def airy_encircled_energy(k) -> np.ndarray:
    """Encircled energy of an Airy pattern within r = k x FWHM.

    EE = 1 - J0(x)^2 - J1(x)^2 with x = pi x 1.029 x k (the Airy FWHM is 1.029 lambda/D; Born & Wolf,
    Principles of Optics, section 8.5).

    Parameters
    ----------
    k : float or array_like
        Radius in units of the FWHM.

    Returns
    -------
    numpy.ndarray
        Fraction of the flux inside r, the shape of ``k``.
    """
    x = np.pi * 1.029 * np.asarray(k, float)
    return 1.0 - special.j0(x) ** 2 - special.j1(x) ** 2


def _overlap_images(make, shape, n, method, subpixels):
    """``(n, ny, nx)`` images of the photutils apertures ``make(i)`` (None: empty) on a ``shape`` grid."""
    if method not in ("exact", "subpixel"):
        raise ValueError(f"aperture overlap {method!r} is not 'exact' or 'subpixel'")
    w = np.zeros((n,) + tuple(shape))
    for i in range(n):  # one aperture per plane: the radius changes with wavelength
        ap = make(i)
        if ap is None:
            continue
        img = ap.to_mask(method=method, subpixels=int(subpixels)).to_image(tuple(shape))
        if img is not None:  # None: the aperture misses the grid
            w[i] = img
    return w


def circle_overlap(shape, xc, yc, r, *, overlap: str = "exact", subpixels: int = 21) -> np.ndarray:
    """Fractional area of each spaxel inside circle(s) of radius ``r`` spaxels centred at (xc, yc).

    photutils ``CircularAperture`` masks (exact circle-rectangle area, or ``subpixels`` x ``subpixels``
    samples per spaxel), the weights the STScI ``extract_1d`` IFU branch uses (photutils aperture
    photometry, JWST pipeline documentation).

    Parameters
    ----------
    shape : tuple of int
        ``(ny, nx)`` of the spaxel grid.
    xc, yc, r : float or numpy.ndarray
        Centre and radius in spaxels (0-based centre convention), scalars or 1-D arrays broadcast to
        one length n.
    overlap : str
        ``"exact"`` (analytic overlap area) or ``"subpixel"``.
    subpixels : int
        Samples per spaxel side for ``"subpixel"``.

    Returns
    -------
    numpy.ndarray
        float64 ``(ny, nx)`` for scalar inputs, else ``(n, ny, nx)``; values in [0, 1]; zero for r <= 0.

    Raises
    ------
    ValueError
        For an ``overlap`` other than ``"exact"`` or ``"subpixel"``.
    """
    from photutils.aperture import CircularAperture

    scalar = np.ndim(xc) == 0 and np.ndim(yc) == 0 and np.ndim(r) == 0
    xc, yc, r = np.broadcast_arrays(*(np.atleast_1d(np.asarray(v, float)) for v in (xc, yc, r)))
    w = _overlap_images(lambda i: CircularAperture((xc[i], yc[i]), r=r[i]) if r[i] > 0 else None,
                        shape, xc.size, overlap, subpixels)
    return w[0] if scalar else w


def annulus_overlap(shape, xc, yc, r_in, r_out, *, overlap: str = "exact", subpixels: int = 21) -> np.ndarray:
    """Fractional area of each spaxel inside circular annuli [r_in, r_out] centred at (xc, yc).

    photutils ``CircularAnnulus`` masks (the background region of the STScI ``extract_1d`` IFU branch).

    Parameters
    ----------
    shape : tuple of int
        ``(ny, nx)`` of the spaxel grid.
    xc, yc, r_in, r_out : float or numpy.ndarray
        Centre and radii in spaxels, scalars or 1-D arrays broadcast to one length n; r_in < r_out.
    overlap : str
        ``"exact"`` or ``"subpixel"``.
    subpixels : int
        Samples per spaxel side for ``"subpixel"``.

    Returns
    -------
    numpy.ndarray
        float64 ``(ny, nx)`` for scalar inputs, else ``(n, ny, nx)``; values in [0, 1].

    Raises
    ------
    ValueError
        For an ``overlap`` other than ``"exact"`` or ``"subpixel"``.
    """
    from photutils.aperture import CircularAnnulus, CircularAperture

    scalar = all(np.ndim(v) == 0 for v in (xc, yc, r_in, r_out))
    xc, yc, r_in, r_out = np.broadcast_arrays(*(np.atleast_1d(np.asarray(v, float))
                                                for v in (xc, yc, r_in, r_out)))

    def make(i):
        if r_out[i] <= 0:
            return None
        if r_in[i] <= 0:
            return CircularAperture((xc[i], yc[i]), r=r_out[i])
        return CircularAnnulus((xc[i], yc[i]), r_in=r_in[i], r_out=r_out[i])

    w = _overlap_images(make, shape, xc.size, overlap, subpixels)
    return w[0] if scalar else w


def pixel_integrated_gaussian(shape, x0, y0, sigma) -> np.ndarray:
    """A unit-integral circular Gaussian integrated exactly over each spaxel.

    P_ij = 1/4 [erf((x_j + 1/2 - x0)/(sqrt2 sigma)) - erf((x_j - 1/2 - x0)/(sqrt2 sigma))] x [same in y]
    (the exact integral of a separable Gaussian over a unit square).

    Parameters
    ----------
    shape : tuple of int
        ``(ny, nx)`` of the spaxel grid.
    x0, y0, sigma : float or numpy.ndarray
        Centre (0-based spaxels) and standard deviation (spaxels), scalars or 1-D arrays of one
        length n.

    Returns
    -------
    numpy.ndarray
        ``(ny, nx)`` for scalar inputs, else ``(n, ny, nx)``; sums to 1 over an infinite grid.
    """
    ny, nx = shape
    scalar = np.ndim(x0) == 0 and np.ndim(y0) == 0 and np.ndim(sigma) == 0
    x0, y0, sigma = np.broadcast_arrays(*(np.atleast_1d(np.asarray(v, float)) for v in (x0, y0, sigma)))
    s2 = np.sqrt(2.0) * sigma[:, None]
    xe = np.arange(nx + 1) - 0.5
    ye = np.arange(ny + 1) - 0.5
    px = 0.5 * np.diff(special.erf((xe[None, :] - x0[:, None]) / s2), axis=1)
    py = 0.5 * np.diff(special.erf((ye[None, :] - y0[:, None]) / s2), axis=1)
    p = py[:, :, None] * px[:, None, :]
    return p[0] if scalar else p


def _plane_fit_subtract(img, good, mask_far):
    """Subtract a robust tilted plane a + b x + c y fitted to ``img`` where ``good & mask_far``."""
    ny, nx = img.shape
    yy, xx = np.mgrid[:ny, :nx].astype(float)
    sel = good & mask_far
    if sel.sum() < 6:
        return img - (np.nanmedian(img[good]) if good.any() else 0.0)
    A = np.column_stack([np.ones(sel.sum()), xx[sel], yy[sel]])
    z = img[sel]
    keep = np.ones(z.size, bool)
    for _ in range(5):  # iterative 3-sigma rejection: field stars / hot spaxels must not tilt the plane
        coef, *_ = np.linalg.lstsq(A[keep], z[keep], rcond=None)
        res = z - A @ coef
        sd = mad_std(res[keep])
        new = np.abs(res) <= 3 * max(sd, 1e-30)
        if np.array_equal(new, keep) or new.sum() < 6:
            break
        keep = new
    return img - (coef[0] + coef[1] * xx + coef[2] * yy)


def find_centre(image, fwhm_pix, *, method: str = "moment", guess=None, tol: float = 1e-5,
                maxiter: int = 50):
    """Centre of a point source in a (time- and wavelength-collapsed) image.

    Steps (this project's design; accuracy measured by ``tests/test_mrs.py::test_centroids_fixed_and_tracked``):
    peak guess (brightest spaxel of the 3x3-box-smoothed image unless
    ``guess``); subtract a robust tilted plane fitted beyond 3 FWHM of the guess (background with a
    gradient); then either the iterated first moment inside r = 2 FWHM (exact overlap weights, until the
    shift < ``tol`` spaxel), or (``method="gaussian"``) a least-squares pixel-integrated 2-D Gaussian +
    constant seeded by the moment.

    Parameters
    ----------
    image : numpy.ndarray
        ``(ny, nx)`` float, NaN where unusable.
    fwhm_pix : float
        FWHM (spaxels) of the PSF in the image (the largest one when collapsed over wavelength).
    method : str
        ``"moment"`` or ``"gaussian"``.
    guess : tuple of float, optional
        Starting (x, y); default the peak of the smoothed image.
    tol : float
        Convergence of the moment iteration (spaxels).
    maxiter : int
        Iterations of the moment at most.

    Returns
    -------
    tuple of float
        (x, y), 0-based spaxel coordinates.

    Raises
    ------
    ValueError
        When no finite spaxel or no positive flux near the peak exists, or for an unknown method.
    """
    img = np.asarray(image, float)
    good = np.isfinite(img)
    if not good.any():
        raise ValueError("find_centre: the collapsed image has no finite spaxel")
    ny, nx = img.shape
    yy, xx = np.mgrid[:ny, :nx].astype(float)
    if guess is None:
        from scipy.ndimage import uniform_filter
        sm = uniform_filter(np.where(good, img, np.nanmedian(img)), 3, mode="nearest")
        iy, ix = np.unravel_index(np.argmax(np.where(good, sm, -np.inf)), img.shape)
        guess = (float(ix), float(iy))
    x, y = guess
    far = np.hypot(xx - x, yy - y) > 3.0 * fwhm_pix
    sub = np.where(good, _plane_fit_subtract(np.where(good, img, 0.0), good, far), 0.0)
    for _ in range(maxiter):
        w = circle_overlap(img.shape, x, y, 2.0 * fwhm_pix) * good
        tot = np.sum(w * sub)
        if not tot > 0:
            raise ValueError("find_centre: no positive flux inside 2 FWHM of the peak")
        nx_, ny_ = np.sum(w * sub * xx) / tot, np.sum(w * sub * yy) / tot
        shift = np.hypot(nx_ - x, ny_ - y)
        x, y = nx_, ny_
        if shift < tol:
            break
    if method == "moment":
        return float(x), float(y)
    if method != "gaussian":
        raise ValueError(f"find_centre: method {method!r} is not 'moment' or 'gaussian'")
    box = (np.abs(xx - x) <= 3 * fwhm_pix) & (np.abs(yy - y) <= 3 * fwhm_pix) & good
    sig0 = fwhm_pix * _SIGMA_PER_FWHM
    amp0 = max(np.sum(sub[box]), 1e-30)

    def resid(p):
        model = p[0] * pixel_integrated_gaussian(img.shape, p[1], p[2], abs(p[3])) + p[4]
        return (model - sub)[box]

    sol = optimize.least_squares(resid, [amp0, x, y, sig0, 0.0], x_scale=[amp0, 0.1, 0.1, 0.1, 1.0])
    return float(sol.x[1]), float(sol.x[2])
