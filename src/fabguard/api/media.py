"""What /openapi.json says about answers and bodies that are not JSON (EST, CRLs, reports, metrics, packages).

A route that answers in another media type passes ``**answers(...)`` to its decorator, so the document
names the media types it really sends (schemathesis checks every answer against them).
"""

from __future__ import annotations

from typing import Any

from fastapi import Response

_BINARY: dict[str, Any] = {"type": "string", "format": "binary"}
_TEXT: dict[str, Any] = {"type": "string"}
JSON = "application/json"


def answers(description: str, *media_types: str, status: int = 200) -> dict[str, Any]:
    """Decorator arguments for a route whose ``status`` answer comes in ``media_types``.

    ``text/*`` is documented as text, anything else as bytes. With ``application/json`` among them the
    route also returns plain values, which FastAPI serializes and documents itself.
    """
    content = {m: {"schema": _TEXT if m.startswith("text/") else _BINARY} for m in media_types if m != JSON}
    documented: dict[str, Any] = {"responses": {status: {"description": description, "content": content}}}
    if JSON not in media_types:
        documented["response_class"] = Response  # no JSON body to describe
    return documented


def body(description: str, *media_types: str) -> dict[str, Any]:
    """Decorator arguments documenting a raw request body (read from the request, not parsed by FastAPI)."""
    content = {m: {"schema": _TEXT} for m in media_types}
    return {"openapi_extra": {"requestBody": {"description": description, "required": True, "content": content}}}


__all__ = ["answers", "body"]
