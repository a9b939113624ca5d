from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.middleware.faults import app_with_faults, client_for


@pytest.fixture(scope="module")
def faulty_app(settings: Any, services: Any) -> Any:
    return app_with_faults(settings, services)


@pytest.fixture
async def faulty(faulty_app: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(faulty_app) as c:
        yield c


@pytest.fixture
async def faulty_tls(faulty_app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The same app as seen behind TLS (ASGI scope scheme ``https``)."""
    async with client_for(faulty_app, "https://testserver") as c:
        yield c
