"""`python -m exolam.cli ...` = `exolam ...`."""

import sys

from exolam.cli import main

sys.exit(main())
