"""Routes: Users, user groups, passwords."""

from __future__ import annotations

from .route import Route

USER_ROUTES: list[Route] = []
