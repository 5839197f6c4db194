"""Shared vocabulary of XtremWeb-Py: statuses, levels, platforms, URIs, config, wire."""

__version__ = "0.1.0"
