"""``python -m xwserver``: the same as the ``xwserver`` command."""

import sys

from .cli import main

sys.exit(main())
