"""Routes: Access rights: objects by UID, chmod, enabling and disabling hosts."""

from __future__ import annotations

from .route import Route

ACCESS_ROUTES: list[Route] = []
