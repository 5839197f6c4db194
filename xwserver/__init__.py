"""The trusted XtremWeb-Py server."""
