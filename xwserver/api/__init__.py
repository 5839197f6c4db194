"""The HTTP layer: handlers parse, authorize, call one domain function, map errors."""
