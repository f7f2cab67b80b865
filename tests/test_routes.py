"""The routing of one request (`routes.Call`): its path read once, unquoted, for both the
subresource check and the route."""

from __future__ import annotations

import json

import pytest

from kubelite.apiserver import routes
from kubelite.apiserver.auth import Access


@pytest.mark.parametrize("path, parts", [
    ("/", []),
    ("/api/v1/pods", ["api", "v1", "pods"]),
    ("/api/v1/namespaces/default/pods/a%2Fb/", ["api", "v1", "namespaces", "default", "pods", "a/b"]),
    ("//api//v1", ["api", "v1"]),
])
def test_path_parts(path, parts):
    assert routes.path_parts(path) == parts


@pytest.mark.parametrize("path, code, message", [
    ("/api/v1/namespaces/default/pods/w%65b", 404, 'pods "web" not found'),
    ("/api/v1/namespaces/default/pods/web/ex%65c", 403, 'cannot create resource "pods/exec"'),
    ("/api/v1/namespaces/default/pods/web/proxy", 403, 'cannot create resource "pods/proxy"'),
    ("/api/v1/namespaces/default/widgets", 404, "the server could not find the requested resource"),
])
def test_a_call_splits_its_path_once(tmp_path, monkeypatch, path, code, message):
    from tests.apinode import bare_api

    calls = []
    real = routes.path_parts

    def counted(text: str) -> list[str]:
        calls.append(text)
        return real(text)
    monkeypatch.setattr(routes, "path_parts", counted)
    with bare_api(tmp_path) as api:
        reply = routes.Call(api, "GET", path, {}, {}, b"", Access.READ).answer()
    assert calls == [path]
    body = json.loads(reply.body)
    assert (reply.code, body["code"]) == (code, code) and message in body["message"], body
