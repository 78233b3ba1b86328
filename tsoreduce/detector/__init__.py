"""Stage 1 (detector): uncal ramps -> rateints (DN/s).

Steps, in the MIRI order applied by :func:`run` (``run_stage1`` is the same function; one function per
step):

=================  ==========================================  ===============================
step               function                                    module
=================  ==========================================  ===============================
DQ init            :func:`dq_init`                             ``detector/dq_init.py``
EMI (390 Hz)       :func:`correct_emi`                         ``detector/emi.py``
saturation         :func:`flag_saturation`                     ``detector/dq_init.py``
reset / RSCD       :func:`flag_reset_groups`                   ``detector/reset.py``
linearity          :func:`apply_linearity`,                    ``detector/calibrate.py``
                   :func:`self_calibrate_linearity`
dark               :func:`subtract_dark`                       ``detector/calibrate.py``
jumps              :func:`detect_jumps_up_the_ramp`,           ``detector/jumps.py``
                   :func:`detect_jumps_time_domain`
ramp fit           :func:`fit_ramps`                           ``detector/rampfit.py``
=================  ==========================================  ===============================

:func:`run` obeys the stage contract (:mod:`tsoreduce.contract`): RampData in, a StageResult holding
the rateints out, the input unmodified.  Files are read and written by
:func:`tsoreduce.pipeline.run_stage1_files` (each uncal segment in chunks of integrations,
:func:`tsoreduce.pipeline.run_stage1_segment`).
"""

from .calibrate import apply_linearity, self_calibrate_linearity, subtract_dark
from .dq_init import dq_init, flag_saturation
from .emi import correct_emi, emi_fit_pixels, emi_frequencies, emi_periodogram
from .jumps import detect_jumps_and_fit, detect_jumps_time_domain, detect_jumps_up_the_ramp, jump_counts
from .rampfit import fit_ramps, poisson_signal_per_group, usable_group_range
from .reset import flag_reset_groups
from .stage import CONFIG_SCHEMA, _run_in_place, resolve_references, run, run_stage1

__all__ = [
    "CONFIG_SCHEMA", "run", "run_stage1", "resolve_references",
    "dq_init", "correct_emi", "flag_saturation", "flag_reset_groups", "apply_linearity",
    "self_calibrate_linearity", "subtract_dark", "detect_jumps_up_the_ramp", "detect_jumps_time_domain",
    "detect_jumps_and_fit",
    "fit_ramps", "poisson_signal_per_group", "usable_group_range", "jump_counts", "emi_frequencies",
    "emi_fit_pixels", "emi_periodogram",
]
