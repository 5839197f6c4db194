"""The XtremWeb-Py volunteer worker: pulls jobs from the server, runs them, sends results back."""

from xwcommon import __version__

__all__ = ["__version__"]
