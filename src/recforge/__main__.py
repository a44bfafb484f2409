"""``python -m recforge`` runs the command line."""

import sys

from recforge.cli.main import main

sys.exit(main())
