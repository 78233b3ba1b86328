"""Stage 3, extraction: calints -> x1dints + light curves (MIRI LRS slitless).

One module per step -- :mod:`.trace` (edgetrigger trace, per-integration position and width),
:mod:`.box` and :mod:`.optimal` (with the profile model of :mod:`.profile`), :mod:`.background_error`,
:mod:`.wavelength`, :mod:`.binning` (light curves) -- and :mod:`.stage` with the runner
``run(calints, config=None, *, plot_dir=None, references=None) -> StageResult`` (``run_stage3`` is the
same object).
"""

from .background_error import add_background_error, background_variance, optimal_response
from .binning import bin_lightcurves
from .box import box_extract, box_weights, optimize_box_width, white_light_scatter
from .optimal import optimal_extract
from .stage import CONFIG_SCHEMA, deep_frame, run, run_with_deep_frame
from .trace import edgetrigger_centres, find_trace, fit_trace_polynomial, measure_position_width
from .wavelength import wavelength_at_trace

run_stage3 = run

__all__ = ["CONFIG_SCHEMA", "run", "run_stage3", "run_with_deep_frame", "deep_frame", "edgetrigger_centres",
           "fit_trace_polynomial", "find_trace", "measure_position_width", "box_weights", "box_extract",
           "optimize_box_width", "optimal_extract", "wavelength_at_trace", "bin_lightcurves",
           "white_light_scatter", "background_variance", "add_background_error", "optimal_response"]
