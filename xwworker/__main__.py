"""``python -m xwworker console|start|stop|status [--xwconfig FILE]``."""

from .cli import main

raise SystemExit(main())
