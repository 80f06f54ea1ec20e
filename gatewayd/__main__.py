"""``python -m gatewayd``: the same as the ``gatewayd`` command."""

import sys

from gatewayd.cli import main

sys.exit(main())
