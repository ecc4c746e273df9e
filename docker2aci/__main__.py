"""``python -m docker2aci``: the command line."""

import sys

from .cli import main

sys.exit(main())
