"""HTTP sessions of the remote providers with certPinning (security/pinning.py).

hvac and the Azure SDK take a ``requests.Session``: its adapter hands urllib3 a
:class:`PinnedContext`, so a peer whose key is not pinned is refused during connect. boto3
takes none, so the KMS client's connection pool is rebuilt with the pinned context (botocore's
``URLLib3Session`` builds its pool manager from ``_get_pool_manager_kwargs``).
"""

from __future__ import annotations

from typing import Any

from kanvaro.security.pinning import pinned_context


def pinned_requests_session(pins: dict[str, frozenset[str]], ca_file: str | None = None) -> Any:
    import requests
    from requests.adapters import HTTPAdapter

    context = pinned_context(pins, ca_file=ca_file)

    class _Pinned(HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            kwargs["ssl_context"] = context
            super().init_poolmanager(*args, **kwargs)

    session = requests.Session()
    session.mount("https://", _Pinned())
    return session


def pin_boto_client(client: Any, pins: dict[str, frozenset[str]], ca_file: str | None) -> None:
    from urllib3 import PoolManager

    http = client._endpoint.http_session  # botocore offers no public hook for the context
    context = pinned_context(pins, ca_file=ca_file)
    http._manager.clear()
    http._manager = PoolManager(**http._get_pool_manager_kwargs(ssl_context=context))
