"""`python -m hsutils ...`: the same command line as the installed `hsutils` script."""

import sys

from hsutils.cli import main

sys.exit(main())
