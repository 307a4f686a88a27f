"""One GraphQL request over HTTP (httpx), and its answer as data or a typed error."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import httpx

from .errors import SluiceConnectionError, SluiceError, SluiceTimeout, error_for, error_from_graphql
from .models import Json

#: The header Sluice records as the actor of a command sent on someone else's behalf.
ON_BEHALF_OF_HEADER = "x-sluice-actor"


def default_url() -> str:
    """$SLUICE_URL, else the local server on $PORT (default 4000), as the `sluice` CLI does."""
    url = os.environ.get("SLUICE_URL")
    if url:
        return url
    return f"http://127.0.0.1:{os.environ.get('PORT') or '4000'}/graphql"


def headers_for(token: str | None, actor: str | None) -> dict[str, str]:
    headers = {"content-type": "application/json", "accept": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    if actor:
        headers[ON_BEHALF_OF_HEADER] = actor
    return headers


def body_for(document: str, variables: Mapping[str, Any] | None) -> dict[str, Any]:
    return {"query": document, "variables": dict(variables or {})}


def answer_of(response: httpx.Response) -> Json:
    """The ``data`` of a GraphQL answer, or the error it carries (GraphQL errors or HTTP status)."""
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    if isinstance(body, Mapping):
        errors: Any = body.get("errors")  # type: ignore[union-attr]
        if isinstance(errors, list) and errors:
            raise error_from_graphql(errors, http_status=response.status_code)  # type: ignore[arg-type]
        data: Any = body.get("data")  # type: ignore[union-attr]
        if response.status_code < 400 and isinstance(data, Mapping):
            return data  # type: ignore[return-value]
    text = response.text[:500]
    status = response.status_code
    code = "UNAUTHENTICATED" if status == 401 else "FORBIDDEN" if status == 403 else f"HTTP_{status}"
    raise error_for(code, f"HTTP {status} from {response.request.url}: {text}")


def transport_error(error: httpx.HTTPError, url: str) -> SluiceError:
    if isinstance(error, httpx.TimeoutException):
        return SluiceTimeout(f"no answer from {url} in time: {error!r}")
    return SluiceConnectionError(f"cannot reach Sluice at {url}: {error!r}")
