"""Opening FITS files safely: the completeness check every reader (products, reference files, input
checks) goes through, and the shape of an image HDU read from its header."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from astropy.io import fits

from ..errors import ProductError, TruncatedFileError

__all__ = ["open_checked", "image_shape", "read_image_blocks"]


def open_checked(path, *, what: str) -> fits.HDUList:
    """Open ``path`` read-only, every HDU header loaded, after checking the file is complete.

    The FITS standard (4.0, sect. 3.1) makes a file whole 2880-byte blocks and each HDU's data
    ``|BITPIX|/8 * GCOUNT * (PCOUNT + NAXIS1*...*NAXISn)`` bytes: a file shorter than its headers announce
    was cut short (astropy may open such a file silently because data are read lazily).

    Parameters
    ----------
    path : str or pathlib.Path
        The FITS file.
    what : str
        What the file is, for the error messages (e.g. ``"rateints"``).

    Returns
    -------
    astropy.io.fits.HDUList
        The open file (the caller closes it; use it as a context manager).

    Raises
    ------
    ProductError
        The file does not exist or is not readable FITS.
    TruncatedFileError
        The file is shorter than its headers announce.
    """
    path = Path(path)
    if not path.is_file():
        raise ProductError(path, f"{what}: no such file")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            hdul = fits.open(path, memmap=False, lazy_load_hdus=False)
    except (OSError, ValueError, TypeError, IndexError) as exc:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            looks_fits = fh.read(9) == b"SIMPLE  ="
        if looks_fits and size % 2880:
            # FITS files are whole 2880-byte blocks: a broken one of odd length was cut short
            raise TruncatedFileError(path, f"{what}: unreadable and {size} bytes long, not a multiple of "
                                     f"2880 (interrupted download or copy?): {exc}") from exc
        raise ProductError(path, f"{what}: not a readable FITS file ({exc})") from exc
    if any("truncated" in str(w.message).lower() for w in caught):
        hdul.close()
        raise TruncatedFileError(path, f"{what}: astropy reports the file truncated: "
                                 + "; ".join(str(w.message) for w in caught))
    # astropy may load a cut file silently (data are read lazily): compare what every header
    # announces (FITS standard: |BITPIX|/8 * GCOUNT * (PCOUNT + NAXIS1*...*NAXISn)) with the file size
    size = path.stat().st_size
    for i, hdu in enumerate(hdul):
        h = hdu.header
        naxis = int(h.get("NAXIS", 0))
        nbytes = 0
        if naxis > 0:
            nbytes = abs(int(h["BITPIX"])) // 8 * int(h.get("GCOUNT", 1)) * (
                int(h.get("PCOUNT", 0)) + int(np.prod([int(h[f"NAXIS{k}"]) for k in range(1, naxis + 1)])))
        end = hdu.fileinfo()["datLoc"] + nbytes
        if end > size:
            hdul.close()
            raise TruncatedFileError(path, f"{what}: HDU {i} ({hdu.name}) needs bytes up to {end} but the "
                                     f"file has only {size} bytes (interrupted download or copy?)")
    return hdul


def image_shape(hdu) -> tuple:
    """Shape of an image HDU from its header, without reading the data.

    Parameters
    ----------
    hdu : astropy.io.fits.ImageHDU or PrimaryHDU
        The HDU.

    Returns
    -------
    tuple of int
        numpy order (slowest axis first); ``(0,)`` for NAXIS = 0.
    """
    naxis = int(hdu.header.get("NAXIS", 0))
    if naxis == 0:
        return (0,)
    return tuple(int(hdu.header[f"NAXIS{k}"]) for k in range(naxis, 0, -1))


def read_image_blocks(path, name: str, dtype, *, block: int = 64) -> np.ndarray:
    """An image extension as a native ``dtype`` array, read ``block`` planes of its first axis at a time.

    ``ImageHDU.section`` reads each block from disk, so neither the whole raw (big-endian) array nor a
    memory map of the file is held next to the result: reading a cube costs the output plus one block.
    BZERO/BSCALE are applied here (exact for integer data in float64) and BLANK becomes NaN in
    floating-point outputs, astropy's own conventions (FITS standard 4.0, sect. 4.4.2.5).

    Parameters
    ----------
    path : str or pathlib.Path
        The FITS file (already checked with :func:`open_checked`).
    name : str
        Extension name (e.g. ``"SCI"``).
    dtype : numpy dtype
        Output type (float32 for SCI/ERR, uint32 for DQ).
    block : int
        Planes read per step.

    Returns
    -------
    numpy.ndarray
        The image, numpy axis order (slowest FITS axis first), e.g. ``(nints, rows, cols)``.
    """
    with fits.open(path, memmap=False, do_not_scale_image_data=True, lazy_load_hdus=True) as hdul:
        hdu = hdul[name]
        h = hdu.header
        shape = image_shape(hdu)
        bscale, bzero = float(h.get("BSCALE", 1.0)), float(h.get("BZERO", 0.0))
        blank = h.get("BLANK") if np.issubdtype(dtype, np.floating) else None
        work = np.float64 if np.issubdtype(dtype, np.integer) else dtype
        out = np.empty(shape, dtype)
        if out.ndim == 0 or out.size == 0:
            return out
        for a in range(0, shape[0], block):
            raw = hdu.section[a:a + block]
            b = a + raw.shape[0]
            if bscale == 1.0 and bzero == 0.0:
                out[a:b] = raw
            else:
                out[a:b] = raw.astype(work) * work(bscale) + work(bzero)
            if blank is not None:
                out[a:b][raw == blank] = np.nan
    return out
