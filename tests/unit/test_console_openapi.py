"""The OpenAPI description matches the routes the console really serves."""

from __future__ import annotations

import re

import orjson
import pytest
from starlette.routing import Route

from console.api import API_ROUTES
from console.audit import AUDIT_ROUTES
from console.drills import DRILL_API_ROUTES
from console.login import LOGIN_ROUTES
from console.openapi import OPENAPI


def _served() -> set[tuple[str, str]]:
    served = set()
    for route in [*API_ROUTES, *LOGIN_ROUTES, *DRILL_API_ROUTES, *AUDIT_ROUTES]:
        assert isinstance(route, Route)
        path = re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)
        for method in route.methods or ():
            if method != "HEAD":
                served.add((path, method.lower()))
    served.add(("/api/openapi.json", "get"))
    return served


def test_every_route_is_described_and_nothing_else() -> None:
    described = {(path, method) for path, item in OPENAPI["paths"].items() for method in item}
    assert described == _served()


def test_it_is_json_with_resolvable_references() -> None:
    text = orjson.dumps(OPENAPI).decode()
    assert OPENAPI["openapi"].startswith("3.1")
    for ref in set(re.findall(r'"\$ref":"#/components/(\w+)/(\w+)"', text)):
        assert ref[1] in OPENAPI["components"][ref[0]], ref


@pytest.mark.parametrize(("path", "method"), sorted(_served()))
def test_each_operation_says_what_it_returns(path: str, method: str) -> None:
    operation = OPENAPI["paths"][path][method]
    assert operation["summary"]
    assert "200" in operation["responses"]
    public = operation.get("security") == []
    assert public == (path in ("/api/login", "/api/openapi.json")), path
    if not public:
        assert "401" in operation["responses"], path
    if method == "post" and not public:
        assert {"session": [], "csrf": []} in operation["security"], path
        assert "403" in operation["responses"], path
