"""docs/openapi.yaml against the real relay: every route the router declares is described,
every described route exists, and schemathesis fuzzes every operation with no 5xx and every
response matching the document."""

from __future__ import annotations

import json
import re
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tally_client import staff_token as mint

from .conftest import ROOT, SECRET, Relay

SPEC = ROOT / "docs" / "openapi.yaml"
METHODS = ("get", "put", "post", "delete", "patch")
# Filters that name a route's method in the router's source.
METHOD_FILTERS = {
    "warp::get()": "get",
    "get_or_head()": "get",
    "warp::post()": "post",
    "warp::put()": "put",
    "warp::delete()": "delete",
    "warp::patch()": "patch",
}


def spec() -> dict[str, Any]:
    with open(SPEC) as f:
        loaded: dict[str, Any] = yaml.safe_load(f)
    return loaded


def described() -> set[tuple[str, str]]:
    """(method, path with `{}` for each parameter) of every operation in the document."""
    out = set()
    for path, item in spec()["paths"].items():
        for method in item:
            if method in METHODS:
                out.add((method, re.sub(r"\{[^}]+\}", "{}", path)))
    return out


def declared() -> set[tuple[str, str]]:
    """(method, path) of every route the relay's router declares: each `warp::path!` of
    `relay/src/http.rs` and `relay/src/service.rs` (under `base()`, `/api/v1/service`) with the
    method filter that follows it."""
    out = set()
    for source, prefix in (("http.rs", ""), ("service.rs", "/api/v1/service")):
        text = (ROOT / "relay" / "src" / source).read_text()
        for m in re.finditer(r"warp::path!\(([^)]*)\)", text):
            parts = [p.strip() for p in m.group(1).split("/")]
            if ".." in parts:
                continue  # the service API's base, not a route
            path = prefix + "".join("/" + (p.strip('"') if p.startswith('"') else "{}") for p in parts)
            # The method is the first method filter after the path (within the route).
            rest = text[m.end() : m.end() + 300]
            found = sorted((rest.find(f), method) for f, method in METHOD_FILTERS.items() if f in rest)
            assert found, f"no method after {path} in {source}"
            out.add((found[0][1], path))
    return out


def test_every_route_the_router_declares_is_described_and_nothing_else() -> None:
    routes = declared()
    assert len(routes) >= 17, routes  # the parse found the router
    assert routes - described() == set(), "routes missing from docs/openapi.yaml"
    assert described() - routes == set(), "described routes the router does not declare"


@pytest.fixture(scope="module")
def fuzzed() -> Iterator[Relay]:
    """A relay with the demo routes and roomy rate limits (so the fuzzer reaches the handlers
    rather than the 429s, which are checked elsewhere), a group and a message to find."""
    roomy = []
    for budget in ("reads", "writes", "history", "searches", "service", "uploads", "connects"):
        per_sec = "--service-per-sec" if budget == "service" else f"--{budget}-per-sec"
        burst = {"reads": "--read-burst", "writes": "--write-burst", "searches": "--search-burst",
                 "uploads": "--upload-burst", "connects": "--connect-burst"}.get(budget, f"--{budget}-burst")
        roomy += [per_sec, "100000", burst, "100000"]
    r = Relay(args=("--demo", *roomy)).start()
    try:
        call(r, "POST", "/api/v1/service/conversations", r.key,
             {"title": "Ward 3", "participants": ["alice", "bob"], "client_id": "ward-3"})
        call(r, "POST", "/api/v1/service/messages", r.key,
             {"conversation": 1, "sender": "alice", "body": "handover at seven", "client_id": "m-1"})
        yield r
    finally:
        r.close()


def staff_token(staff: str) -> str:
    return mint(staff, SECRET, ttl=3600)


def call(relay: Relay, method: str, path: str, bearer: str | None, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(relay.url + path, data=data, method=method)
    if bearer:
        req.add_header("Authorization", f"Bearer {bearer}")
    if body is not None and not isinstance(body, bytes):
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            raw = r.read()
            status = r.status
    except urllib.error.HTTPError as e:
        raw, status = e.read(), e.code
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw


def test_every_described_route_exists_and_other_methods_are_refused(fuzzed: Relay) -> None:
    token = staff_token("alice")
    values = {"conversation": "1", "staff": "alice", "attachment": "0" * 64, "message": "1"}
    for path, item in spec()["paths"].items():
        concrete = re.sub(r"\{([^}]+)\}", lambda m: values[m.group(1)], path)
        for method in METHODS:
            op = item.get(method)
            if op is None:
                if method != "get":  # an unknown GET may be one of the widget's static files
                    status, body = call(fuzzed, method.upper(), concrete, fuzzed.key, {})
                    assert status in (404, 405), f"{method} {path}: {status} {body}"
                continue
            schemes = {k for s in op.get("security", []) for k in s}
            bearer = fuzzed.key if "serviceKey" in schemes else token if "staffToken" in schemes else None
            status, body = call(fuzzed, method.upper(), concrete, bearer, {} if method in ("post", "put") else None)
            refused_route = status == 405 or (status == 404 and isinstance(body, dict) and body.get("message") == "no such route")
            assert not refused_route, f"{method} {path} is described but the relay has no such route: {status} {body}"
            assert str(status) in op["responses"] or "default" in op["responses"], f"{method} {path}: {status}"


def schemathesis(relay: Relay, *args: str) -> subprocess.CompletedProcess[str]:
    st = Path(__file__).resolve().parents[3] / "tools" / "venv" / "bin" / "st"
    return subprocess.run(
        [
            str(st), "run", str(SPEC), "--url", relay.url,
            "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,"
            "response_headers_conformance,response_schema_conformance,negative_data_rejection",
            "--max-examples", "40", "--seed", "27", "--workers", "1",
            "--generation-database", "none", "--no-color", *args,
        ],
        capture_output=True, text=True, timeout=900,
    )


@pytest.mark.parametrize(
    "operations",
    [
        ("--include-tag", "service", "KEY"),
        ("--include-tag", "widget", "TOKEN"),
        ("--include-tag", "operations", ""),
        ("--include-tag", "demo", ""),
    ],
    ids=["service", "widget", "operations", "demo"],
)
def test_schemathesis_finds_no_5xx_and_every_response_matches_the_document(
    fuzzed: Relay, operations: tuple[str, str, str]
) -> None:
    flag, tag, auth = operations
    args = [flag, tag, "--exclude-path", "/ws"]
    if auth == "KEY":
        args += ["-H", f"Authorization: Bearer {fuzzed.key}"]
    elif auth == "TOKEN":
        args += ["-H", f"Authorization: Bearer {staff_token('alice')}"]
    done = schemathesis(fuzzed, *args)
    report = done.stdout[-6000:] + done.stderr[-2000:]
    assert done.returncode == 0, report
    assert fuzzed.process is not None and fuzzed.process.poll() is None, "the relay is still up"
