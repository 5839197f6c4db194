"""The XtremWeb-Py client: the SDK (:mod:`xwclient.sdk`) and XWHEP's command line (:mod:`xwclient.cli`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .sdk import Client, XWClient

__all__ = ["Client", "XWClient"]


def __getattr__(name: str) -> Any:
    # the SDK is imported when first named: the command-line programs import what they need
    # first (xwcommon.programs), which they could not if the package imported the SDK itself
    if name in __all__:
        from . import sdk

        return getattr(sdk, name)
    raise AttributeError(f"module 'xwclient' has no attribute {name!r}")
