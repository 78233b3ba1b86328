"""The optimal-extraction profile model at a spectrum that ends on bright rows.

With the specwcs_0009 wavelength map the brightest LRS rows (~ 5 um) are the last rows of the table, so
the first row without star light has bright neighbours.  Its noise fractions must not enter the spline
fit of the profile (they did when the row selection used only the neighbours' median S/N: the spline's
end rang over ~ 15 rows, the profile was 15 % off in the core at 5-5.5 um, Horne's clipping then rejected
good bright pixels in some integrations, and the 5-6 um light curves had 2-3x their expected scatter).
"""

from __future__ import annotations

import numpy as np
from scipy.special import erf

from tsoreduce.extraction import box_weights
from tsoreduce.extraction.profile import smooth_profile


def _gauss_profile(nrows, ncols, centre, sigma):
    edges = np.arange(ncols + 1) - 0.5
    cdf = 0.5 * (1 + erf((edges[None, :] - centre[:, None]) / (np.sqrt(2) * sigma[:, None])))
    return np.diff(cdf, axis=1)


def test_profile_fit_ignores_dark_row_beyond_bright_edge():
    rng = np.random.default_rng(1)
    nrows, ncols, last = 120, 72, 110           # star light in rows 0..110, none beyond
    rows = np.arange(nrows, dtype=float)
    centre = 36.3 + 0.002 * rows
    sigma = 1.2 - 0.004 * rows                  # narrower toward the bright (blue) end
    prof = _gauss_profile(nrows, ncols, centre, sigma)
    flux = np.where(rows <= last, 2000.0 + 150.0 * rows, 0.0)   # brightest at the edge, then nothing
    var = 0.5 + 0.002 * flux[:, None] * prof + np.zeros((nrows, ncols))
    # + a small positive background residual, so the dark rows' sums are positive (as row 394 of the
    # simulated specwcs_0009 deep frame)
    deep = flux[:, None] * prof + 0.3 + rng.normal(0.0, np.sqrt(var))
    region = box_weights(centre, 21.0, ncols)
    model, info = smooth_profile(deep, var, region)
    truth = prof * region
    truth /= truth.sum(axis=1, keepdims=True)
    core = slice(34, 40)
    err = np.abs(model[:last + 1, core] - truth[:last + 1, core]).max(axis=1) / truth[:last + 1, core].max(axis=1)
    print(f"rows fitted {info['rows_fit']}, rms z {info['rms_z']:.2f}, worst core error over the last 20 "
          f"bright rows {100 * err[-20:].max():.2f} % (elsewhere {100 * err[:-20].max():.2f} %)")
    assert info["rows_fit"][1] == last
    assert err.max() < 0.01
