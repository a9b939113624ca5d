"""``/api/v1/users`` (filled in by the users work)."""

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1/users", tags=["users"])
