"""`python -m distill` and `accelerate launch -m distill run RECIPE`."""

import sys

from distill.cli import main

sys.exit(main())
