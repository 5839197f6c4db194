"""The XtremWeb-Py client: the SDK (:mod:`xwclient.sdk`) and XWHEP's command line (:mod:`xwclient.cli`)."""

from .sdk import Client, XWClient

__all__ = ["Client", "XWClient"]
