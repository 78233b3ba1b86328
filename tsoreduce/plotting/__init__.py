"""Diagnostic figures, one function per figure, grouped by stage in submodules.

Every function takes the product (and step diagnostics) it shows, returns the matplotlib Figure and
saves it when given ``path``.  The Agg backend is used so figures work headless.
"""

import matplotlib

matplotlib.use("Agg", force=False)
