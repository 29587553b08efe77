"""``python -m skfingerprint.cli``: the ``skfingerprint`` command."""

import sys

from . import main

sys.exit(main())
