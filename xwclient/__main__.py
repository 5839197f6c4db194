"""``python -m xwclient --xwCOMMAND …``."""

from .cli import main

raise SystemExit(main())
