"""Who is calling: the API key of a request (``Authorization: Bearer`` or ``X-Api-Key``)."""

from __future__ import annotations

from flask import g, request

from api.context import ctx
from api.limits import count_failed_authentication
from common.api_keys import ANONYMOUS
from common.errors import Unauthorized

# Paths that need no key: health checks, the demo page, the API description, signed file links.
PUBLIC_PREFIXES = ("/healthz", "/readyz", "/demo/", "/openapi", "/docs", "/v1/files/")
PUBLIC_PATHS = frozenset({"/", "/favicon.ico"})


def _token() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.headers.get("X-Api-Key") or None


def authenticate_request() -> None:
    """Set ``g.owner`` to the caller's key id (or the anonymous user when authentication is off)."""
    g.owner = None
    if request.method == "OPTIONS":  # a CORS preflight carries no credentials
        return
    if request.path in PUBLIC_PATHS or request.path.startswith(PUBLIC_PREFIXES):
        return
    api = ctx()
    if api.settings.auth == "disabled":
        g.owner = ANONYMOUS
        return
    try:
        token = _token()
        if token is None:
            raise Unauthorized("send an API key: 'Authorization: Bearer <key>' or 'X-Api-Key: <key>'")
        g.owner = api.api_keys.authenticate(token).id
    except Unauthorized:
        count_failed_authentication(api.settings)  # a 429 instead, past the address's budget
        raise


def current_owner() -> str:
    return g.owner
