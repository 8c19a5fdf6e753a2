"""``python -m so3net ...`` is the ``so3net`` command (works where console scripts are not on PATH)."""
import sys

from .cli import main

sys.exit(main())
