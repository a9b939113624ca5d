"""``/api/v1/roles`` (filled in by the roles work)."""

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1/roles", tags=["roles"])
