"""Reading a JSON request body: JSON only (no form posts from other sites), size-capped."""

from __future__ import annotations

from typing import TypeVar

import orjson
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.requests import Request

from console.params import BadInput, parse

__all__ = ["MAX_BODY_BYTES", "json_body"]

MAX_BODY_BYTES = 16 * 1024
# Bodies a cross-site HTML form can send without a CORS preflight; the API speaks JSON only.
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data", "text/plain")

_M = TypeVar("_M", bound=BaseModel)


async def json_body(request: Request, model: type[_M]) -> _M:
    """The body validated as ``model``; an empty body is ``{}``."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type in _FORM_TYPES:
        raise HTTPException(415, "send a JSON body (Content-Type: application/json)")
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY_BYTES:
            raise HTTPException(413, f"body larger than {MAX_BODY_BYTES} bytes")
    if not raw.strip():
        return parse(model, {})
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as err:
        raise BadInput(f"body: not valid JSON ({err})") from err
    return parse(model, data)
