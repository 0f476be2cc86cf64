"""The CRD upgrade command of docs/operations.md, run with the real kubectl.

What is faked: the API server. A small HTTP endpoint answers discovery and OpenAPI (declaring
that PATCH on CRDs accepts fieldValidation, as a real 1.33 server does) and records every PATCH.
What is real: kubectl 1.37 and the exact command from the docs. The test checks that it sends
one server-side apply per CRD, forced, with the documented field manager, strict field
validation, and the chart's CRD as the body."""

from __future__ import annotations

import json
import re
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from .helmlib import CHART, ROOT, find_tool

GVK = {"group": "apiextensions.k8s.io", "kind": "CustomResourceDefinition", "version": "v1"}
CRD_SCHEMA = "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinition"
CRD_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}"
DISCOVERY: dict[str, Any] = {
    "/api": {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []},
    "/api/v1": {"kind": "APIResourceList", "groupVersion": "v1", "resources": []},
    "/apis": {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [
            {
                "name": "apiextensions.k8s.io",
                "versions": [{"groupVersion": "apiextensions.k8s.io/v1", "version": "v1"}],
                "preferredVersion": {"groupVersion": "apiextensions.k8s.io/v1", "version": "v1"},
            }
        ],
    },
    "/apis/apiextensions.k8s.io/v1": {
        "kind": "APIResourceList",
        "groupVersion": "apiextensions.k8s.io/v1",
        "resources": [
            {
                "name": "customresourcedefinitions",
                "singularName": "customresourcedefinition",
                "namespaced": False,
                "kind": "CustomResourceDefinition",
                "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
            }
        ],
    },
    "/openapi/v3": {
        "paths": {
            "apis/apiextensions.k8s.io/v1": {
                "serverRelativeURL": "/openapi/v3/apis/apiextensions.k8s.io/v1?hash=0"
            }
        }
    },
    "/openapi/v3/apis/apiextensions.k8s.io/v1": {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0"},
        "paths": {
            CRD_PATH: {
                "patch": {
                    "x-kubernetes-group-version-kind": GVK,
                    "parameters": [
                        {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}},
                        {"name": "fieldManager", "in": "query", "schema": {"type": "string"}},
                        {"name": "force", "in": "query", "schema": {"type": "boolean"}},
                    ],
                    "responses": {},
                }
            }
        },
        "components": {
            "schemas": {
                CRD_SCHEMA: {
                    "type": "object",
                    "x-kubernetes-preserve-unknown-fields": True,
                    "x-kubernetes-group-version-kind": [GVK],
                }
            }
        },
    },
}


class _Recorder(BaseHTTPRequestHandler):
    patches: list[dict[str, Any]]

    def _send(self, code: int, obj: Any) -> None:
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path in DISCOVERY:
            self._send(200, DISCOVERY[path])
        else:
            self._send(404, {"kind": "Status", "apiVersion": "v1", "code": 404})

    def do_PATCH(self) -> None:
        url = urlsplit(self.path)
        body = yaml.safe_load(self.rfile.read(int(self.headers["Content-Length"])))
        self.patches.append(
            {
                "path": url.path,
                "query": {k: v[0] for k, v in parse_qs(url.query).items()},
                "content_type": self.headers["Content-Type"],
                "body": body,
            }
        )
        self._send(200, {**body, "metadata": {**body["metadata"], "resourceVersion": "2"}})

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def api_server(tmp_path: Path) -> Iterator[tuple[Path, list[dict[str, Any]]]]:
    patches: list[dict[str, Any]] = []
    handler = type("Recorder", (_Recorder,), {"patches": patches})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {"name": "t", "cluster": {"server": f"http://127.0.0.1:{server.server_port}"}}
                ],
                "users": [{"name": "t", "user": {}}],
                "contexts": [{"name": "t", "context": {"cluster": "t", "user": "t"}}],
                "current-context": "t",
            }
        )
    )
    yield kubeconfig, patches
    server.shutdown()


def documented_command() -> list[str]:
    text = (ROOT / "docs" / "operations.md").read_text()
    match = re.search(r"^(kubectl apply --server-side .*)$", text, re.MULTILINE)
    assert match, "docs/operations.md lost its CRD upgrade command"
    return match.group(1).split()


def test_crd_upgrade_command_is_a_forced_server_side_apply(
    api_server: tuple[Path, list[dict[str, Any]]],
) -> None:
    kubeconfig, patches = api_server
    command = documented_command()
    kubectl = find_tool("kubectl")
    proc = subprocess.run(
        [kubectl, "--kubeconfig", str(kubeconfig), *command[1:]],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    crds = {
        doc["metadata"]["name"]: doc
        for path in sorted((CHART / "crds").glob("*.yaml"))
        for doc in [yaml.safe_load(path.read_text())]
    }
    assert len(crds) == 3
    assert {p["path"] for p in patches} == {CRD_PATH.format(name=n) for n in crds}
    for patch in patches:
        assert patch["content_type"] == "application/apply-patch+yaml"
        assert patch["query"] == {
            "fieldManager": "kubeloop-crds",
            "force": "true",
            "fieldValidation": "Strict",
        }
        assert patch["body"] == crds[patch["body"]["metadata"]["name"]]
    assert proc.stdout.count("serverside-applied") == 3


def test_notes_print_the_same_command() -> None:
    notes = (CHART / "templates" / "NOTES.txt").read_text()
    command = " ".join(documented_command())
    assert command.replace("charts/kubeloop/crds/", "<chart>/crds/") in notes
