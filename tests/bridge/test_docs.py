"""GET /docs: Swagger UI of the OpenAPI document, every file of it served by the bridge itself
(a gateway's network may have no internet), the page public, the document behind the API token."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from bridge.bindings import bindings_from_service, service_descriptor
from bridge.docs import (
    BUNDLE_FILES,
    CONTENT_SECURITY_POLICY,
    PAGE_SCRIPT,
    SCHEMA_KEYWORDS_30,
    SwaggerBundle,
    openapi_30,
    schema_30,
)
from bridge.openapi import BEARER_SCHEME, openapi_document
from gateway.config import Config
from tests.bridge.rawhttp import exchange
from tests.bridge.test_routes import EXPECTED
from tests.fakes import AGENTS_DIR
from tests.harness import running_bridge, running_gateway

BUNDLE = SwaggerBundle.installed()
DOCUMENT = openapi_document(service_descriptor())
DOCUMENT_30 = openapi_30(DOCUMENT)


class _Page(HTMLParser):
    """Every URL the page names (src, href, data-*), its scripts and its inline styles."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.scripts: list[dict[str, str | None]] = []
        self.script_text = ""
        self.inline_styles = 0
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        for name, value in attrs:
            if value is not None and (
                name in ("src", "href", "action") or name.startswith("data-")
            ):
                self.urls.append(value)
        if "style" in attributes or tag == "style":
            self.inline_styles += 1
        if tag == "script":
            self.scripts.append(attributes)
            self._in_script = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.script_text += data.strip()


def parse_page(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    page.close()
    return page


def schemas(document: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every JSON schema of the document, nested ones included."""

    def walk(schema: dict[str, Any]) -> Iterator[dict[str, Any]]:
        yield schema
        for key in ("items", "not", "additionalProperties"):
            if isinstance(schema.get(key), dict):
                yield from walk(schema[key])
        for item in schema.get("properties", {}).values():
            yield from walk(item)
        for key in ("allOf", "anyOf", "oneOf"):
            for item in schema.get(key, []):
                yield from walk(item)

    for schema in document["components"]["schemas"].values():
        yield from walk(schema)
    for item in document["paths"].values():
        for operation in item.values():
            for parameter in operation["parameters"]:
                yield from walk(parameter["schema"])
            holders = [operation.get("requestBody", {}), *operation["responses"].values()]
            for holder in holders:
                for media in holder.get("content", {}).values():
                    yield from walk(media["schema"])


# --- the page and its files, over a real socket -------------------------------------------------


async def test_docs_is_an_html_page_that_names_only_local_urls(http: httpx.AsyncClient) -> None:
    response = await http.get("/docs")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "http://" not in response.text
    assert "https://" not in response.text
    assert "//" not in "".join(parse_page(response.text).urls)  # no scheme-relative URL either
    page = parse_page(response.text)
    assert page.urls
    for url in page.urls:
        assert url.startswith("/docs/"), url
        assert not urlsplit(url).scheme and not urlsplit(url).netloc, url


async def test_the_page_has_no_inline_script_or_style(http: httpx.AsyncClient) -> None:
    # The page's policy allows scripts and styles of this origin only ('self').
    page = parse_page((await http.get("/docs")).text)
    assert page.scripts
    assert all(script.get("src") for script in page.scripts)
    assert page.script_text == ""
    assert page.inline_styles == 0
    assert "script-src 'self';" in CONTENT_SECURITY_POLICY


async def test_every_file_the_page_names_is_served_with_its_type(http: httpx.AsyncClient) -> None:
    page = parse_page((await http.get("/docs")).text)
    expected_types = {
        ".js": "text/javascript; charset=utf-8",
        ".css": "text/css; charset=utf-8",
        ".png": "image/png",
        ".json": "application/json",
    }
    fetched = set()
    for url in page.urls:
        response = await http.get(url)
        assert response.status_code == 200, url
        assert response.headers["content-type"] == expected_types[Path(url).suffix], url
        assert response.content, url
        fetched.add(url)
    assert f"/docs/static/{BUNDLE.version}/swagger-ui-bundle.js" in fetched
    assert f"/docs/static/{BUNDLE.version}/swagger-ui.css" in fetched
    assert "/docs/openapi.json" in fetched


async def test_bundle_files_are_the_packages_own_and_cached_for_good(
    http: httpx.AsyncClient,
) -> None:
    for name in BUNDLE_FILES:
        url = f"/docs/static/{BUNDLE.version}/{name}"
        response = await http.get(url)
        assert response.status_code == 200, url
        assert response.content == BUNDLE.files[name].read_bytes(), url
        # The version is in the URL: a file there never changes.
        assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert response.headers["x-content-type-options"] == "nosniff"
        head = await http.head(url)
        assert head.status_code == 200
        assert head.content == b""
        assert head.headers["content-length"] == str(len(response.content))
        assert head.headers["content-type"] == response.headers["content-type"]


async def test_the_page_and_its_script_are_revalidated(http: httpx.AsyncClient) -> None:
    page = parse_page((await http.get("/docs")).text)
    script = next(s["src"] for s in page.scripts if "swagger-ui" not in (s["src"] or ""))
    assert script is not None
    for url in ("/docs", script):
        response = await http.get(url)
        assert response.headers["cache-control"] == "no-cache", url
        head = await http.head(url)
        assert (head.status_code, head.content) == (200, b"")


@pytest.mark.parametrize(
    "path",
    [
        pytest.param(b"/docs/static/{v}/..%2F..%2F..%2Fpyproject.toml", id="encoded-dotdot"),
        pytest.param(b"/docs/static/{v}/%2e%2e", id="encoded-dot-segment"),
        pytest.param(b"/docs/static/{v}/../../bridge/app.py", id="raw-dotdot"),
        pytest.param(b"/docs/static/../../../etc/passwd", id="above-static"),
        pytest.param(b"/docs/static/{v}/%2Fetc%2Fpasswd", id="absolute"),
        pytest.param(b"/docs/static/{v}/index.html", id="bundle-demo-page"),
        pytest.param(b"/docs/static/{v}/swagger-initializer.js", id="demo-initializer"),
        pytest.param(b"/docs/static/{v}/index.j2", id="template"),
        pytest.param(b"/docs/static/{v}/SWAGGER-UI.CSS", id="other-case"),
        pytest.param(b"/docs/static/{v}/swagger-ui%2Ecss", id="encoded-name"),
        pytest.param(b"/docs/static/0.0.0/swagger-ui.css", id="other-version"),
        pytest.param(b"/docs/static/swagger-ui.css", id="no-version"),
        pytest.param(b"/docs/static/{v}/swagger-ui.css/x", id="below-a-file"),
        pytest.param(b"/docs/static/{v}", id="the-directory"),
        pytest.param(b"/docs/static", id="static-itself"),
    ],
)
async def test_nothing_but_the_tables_files_is_served(
    scripted_bridge_url: str, path: bytes
) -> None:
    target = path.replace(b"{v}", BUNDLE.version.encode())
    status, response = await exchange(
        scripted_bridge_url,
        b"GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n" % target,
    )
    assert status == 404, response[:300]
    assert b"root:" not in response and b"[project]" not in response


@pytest.mark.parametrize(
    "path", ["/docs", "/docs/openapi.json", f"/docs/static/{BUNDLE.version}/swagger-ui.css"]
)
async def test_docs_routes_are_read_only(http: httpx.AsyncClient, path: str) -> None:
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        response = await http.request(method, path)
        assert response.status_code == 405, (method, path)
        assert response.headers["allow"] == "GET, HEAD"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        pytest.param(b"Host: evil.example", 421, id="rebinding"),
        pytest.param(b"Host: 127.0.0.1\r\nOrigin: http://evil.example", 403, id="foreign-page"),
    ],
)
@pytest.mark.parametrize(
    "path", [b"/docs", b"/docs/openapi.json", b"/docs/static/{v}/swagger-ui.css"]
)
async def test_the_host_and_origin_guards_apply(
    scripted_bridge_url: str, header: bytes, expected: int, path: bytes
) -> None:
    target = path.replace(b"{v}", BUNDLE.version.encode())
    status, _ = await exchange(
        scripted_bridge_url,
        b"GET %s HTTP/1.1\r\n%s\r\nConnection: close\r\n\r\n" % (target, header),
    )
    assert status == expected


async def test_fastapis_own_cdn_pages_stay_off(http: httpx.AsyncClient) -> None:
    for path in ("/redoc", "/docs/oauth2-redirect", "/docs/"):
        response = await http.get(path)
        if path == "/docs/":  # one trailing slash is tolerated everywhere: our page
            assert "Codex Gateway" in response.text
            continue
        assert response.status_code == 404, path


# --- the document the page shows ----------------------------------------------------------------


async def test_the_page_shows_every_binding(http: httpx.AsyncClient) -> None:
    page = parse_page((await http.get("/docs")).text)
    (document_url,) = [s["data-document"] for s in page.scripts if s.get("data-document")]
    assert document_url is not None
    document = (await http.get(document_url)).json()
    assert document["openapi"].startswith("3.0.")
    operations = {(path, verb.upper()) for path, item in document["paths"].items() for verb in item}
    assert operations == {(path, verb) for _, verb, path, _, _ in EXPECTED}
    by_id = {
        operation["operationId"]: operation
        for item in document["paths"].values()
        for operation in item.values()
    }
    assert set(by_id) == {name for name, *_ in EXPECTED}
    # Parameters and bodies as in the 3.1 document, the error body on every operation.
    for binding in bindings_from_service(service_descriptor()):
        operation = by_id[binding.method.name]
        names = {p["name"] for p in operation["parameters"]}
        assert set(binding.template.variables) | set(binding.query_fields) <= names
        assert ("requestBody" in operation) == bool(binding.body)
        assert operation["responses"]["default"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/Error"
        }
    assert document["components"]["schemas"]["Error"]["required"] == ["error"]


def test_both_documents_declare_the_bearer_token() -> None:
    for document in (DOCUMENT, DOCUMENT_30):
        scheme = document["components"]["securitySchemes"][BEARER_SCHEME]
        assert scheme == {
            "type": "http",
            "scheme": "bearer",
            "description": scheme["description"],
        }
        assert "CODEX_GATEWAY_API_TOKEN" in scheme["description"]
        # Needed when the gateway has a token, so optional in the document.
        assert document["security"] == [{BEARER_SCHEME: []}, {}]
        assert document["paths"]["/health"]["get"]["security"] == []


def test_the_page_script_authorizes_with_the_documents_scheme() -> None:
    assert b'preauthorizeApiKey("%s"' % BEARER_SCHEME.encode() in PAGE_SCRIPT
    assert b"://" not in PAGE_SCRIPT


def test_the_30_rendition_uses_only_30_schema_keywords() -> None:
    assert DOCUMENT_30["openapi"] == "3.0.3"
    count = 0
    for schema in schemas(DOCUMENT_30):
        count += 1
        assert set(schema) <= SCHEMA_KEYWORDS_30, set(schema) - SCHEMA_KEYWORDS_30
        assert isinstance(schema.get("type", ""), str), schema
        assert schema.get("type") != "null", schema
    assert count > 100
    # Same operations, same component names.
    assert DOCUMENT_30["paths"].keys() == DOCUMENT["paths"].keys()
    assert DOCUMENT_30["components"]["schemas"].keys() == DOCUMENT["components"]["schemas"].keys()


REF = {"$ref": "#/components/schemas/X"}


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        pytest.param(
            {"type": ["string", "null"]}, {"type": "string", "nullable": True}, id="nullable"
        ),
        pytest.param(
            {"type": ["string", "null"], "enum": ["A", None]},
            {"type": "string", "nullable": True, "enum": ["A", None]},
            id="nullable-enum",
        ),
        pytest.param(
            {"anyOf": [REF, {"type": "null"}]},
            {"allOf": [REF], "nullable": True},
            id="nullable-ref",
        ),
        pytest.param({"type": "null"}, {"nullable": True}, id="only-null"),
        pytest.param(
            {"type": "object", "propertyNames": {"pattern": "^a$"}, "description": "d"},
            {"type": "object", "description": "d"},
            id="drops-31-keywords",
        ),
        pytest.param(
            {
                "type": "array",
                "contains": {"type": "object"},
                "items": {"type": ["integer", "null"]},
            },
            {"type": "array", "items": {"type": "integer", "nullable": True}},
            id="nested",
        ),
        pytest.param(
            {"properties": {"contains": {"type": "string"}, "type": {"type": "string"}}},
            {"properties": {"contains": {"type": "string"}, "type": {"type": "string"}}},
            id="properties-named-like-keywords",
        ),
        pytest.param({}, {}, id="any-json"),
        pytest.param(
            {"type": "object", "additionalProperties": {"type": ["boolean", "null"]}},
            {"type": "object", "additionalProperties": {"type": "boolean", "nullable": True}},
            id="map-values",
        ),
        pytest.param(
            {"anyOf": [REF, {"type": "array", "items": REF}]},
            {"anyOf": [REF, {"type": "array", "items": REF}]},
            id="real-alternatives",
        ),
    ],
)
def test_schema_30(schema: dict[str, Any], expected: dict[str, Any]) -> None:
    assert schema_30(schema) == expected


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_the_page_script_is_valid_javascript(tmp_path: Path) -> None:
    script = tmp_path / "docs.js"
    script.write_bytes(PAGE_SCRIPT)
    node = shutil.which("node")
    assert node is not None
    checked = subprocess.run(
        [node, "--check", str(script)], capture_output=True, text=True, timeout=60, check=False
    )
    assert checked.returncode == 0, checked.stderr


# --- with the real gateway and its API token ----------------------------------------------------


async def test_the_page_is_public_and_the_document_needs_the_token(
    config_for: Callable[..., Config],
) -> None:
    config = config_for(codex_bin=AGENTS_DIR / "echo_agent.py", api_token="tok")
    async with (
        running_gateway(config) as gateway,
        running_bridge(gateway.target, max_body_bytes=config.max_body_bytes) as url,
        httpx.AsyncClient(base_url=url, timeout=60, trust_env=False) as client,
    ):
        page = await client.get("/docs")
        assert page.status_code == 200
        for asset in parse_page(page.text).urls:
            if asset.endswith("openapi.json"):
                continue
            assert (await client.get(asset)).status_code == 200, asset
        for document_url in ("/docs/openapi.json", "/openapi.json"):
            for headers in ({}, {"Authorization": "Bearer nope"}):
                refused = await client.get(document_url, headers=headers)
                assert refused.status_code == 401, document_url
                assert "API token" in refused.json()["error"]
            served = await client.get(document_url, headers={"Authorization": "Bearer tok"})
            assert served.status_code == 200, document_url
            assert BEARER_SCHEME in served.json()["components"]["securitySchemes"]
        # Try-it-out sends what "Authorize" holds: the bearer token, on the same origin.
        info = await client.get("/", headers={"Authorization": "Bearer tok"})
        assert info.status_code == 200
        assert info.json()["endpoints"]["docs"] == "/docs"
