#!/usr/bin/env python
"""Run a tsoreduce reduction from a YAML file: ``python run_tso.py runs/demo.yaml [--stages 1-4]``.

Same as the ``tsoreduce`` console script; ``python run_tso.py --help`` lists the options.
"""

import sys

from tsoreduce.cli import main

if __name__ == "__main__":
    sys.exit(main())
