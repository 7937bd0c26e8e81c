"""API docs: Swagger UI over the OpenAPI document, served whole by the bridge (no CDN).

Gateways run on networks without internet, so the page's scripts and styles are the files of the
pinned `swagger-ui-bundle` package, served from its directory under a path that names the Swagger
UI version (so they can be cached for good). Only the files the page needs are served, looked up
by exact name in a table built at startup: no request path ever reaches the file system.

The page and its assets are public: they are the same for every gateway and tell nothing about
this one. The document they show needs the API token like every endpoint (the page asks for it
when the document answers 401, and hands it to Swagger UI's "Authorize" for try-it-out).

The bundle's Swagger UI (4.15) renders OpenAPI 3.0 only; `openapi_30` rewrites the bridge's 3.1
document into the 3.0 dialect for it (nullable types), served beside the page.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import swagger_ui_bundle  # type: ignore[import-untyped]  # the package ships no type information
from starlette.responses import FileResponse, Response
from starlette.types import Receive, Scope, Send

from .errors import ErrorResponse, RouteNotFound, send_error
from .openapi import BEARER_SCHEME
from .routes import PATH_PARAMS_SCOPE_KEY

DOCS_PATH: Final = "/docs"
DOCS_OPENAPI_PATH: Final = "/docs/openapi.json"
STATIC_PATH: Final = "/docs/static"
# The bundle's files the page uses (the source maps for a browser's developer tools). Not its
# index.html or swagger-initializer.js: they load a demo document from the internet.
BUNDLE_FILES: Final = (
    "swagger-ui-bundle.js",
    "swagger-ui-bundle.js.map",
    "swagger-ui.css",
    "swagger-ui.css.map",
    "favicon-16x16.png",
    "favicon-32x32.png",
)
CONTENT_TYPES: Final = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".map": "application/json",
    ".png": "image/png",
}
# A versioned URL's content never changes; the page and our script are revalidated.
IMMUTABLE: Final = "public, max-age=31536000, immutable"
REVALIDATE: Final = "no-cache"
# The page loads only its own origin's files; Swagger UI sets style attributes and draws icons
# from data: URIs. No framing (the page may hold the API token).
CONTENT_SECURITY_POLICY: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; form-action 'none'; frame-ancestors 'none'; "
    "base-uri 'none'"
)
SCRIPT_NAME: Final = "codex-gateway-docs.js"

Endpoint = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class SwaggerBundle:
    """The pinned bundle's files by name, resolved inside its directory, and its version."""

    version: str
    files: Mapping[str, Path]

    @classmethod
    def installed(cls) -> SwaggerBundle:
        root = Path(swagger_ui_bundle.swagger_ui_path).resolve()
        version = root.name.removeprefix("swagger-ui-")
        files = {}
        for name in BUNDLE_FILES:
            path = (root / name).resolve()
            if path.parent != root or not path.is_file():
                raise RuntimeError(f"swagger-ui-bundle has no {name} in {root}")
            files[name] = path
        return cls(version, files)

    def url(self, name: str) -> str:
        return f"{STATIC_PATH}/{self.version}/{name}"


def docs_page(bundle: SwaggerBundle) -> bytes:
    """The HTML page: no inline script or style, and no URL outside this origin."""
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Codex Gateway API</title>
<link rel="stylesheet" href="{bundle.url("swagger-ui.css")}">
<link rel="icon" type="image/png" sizes="32x32" href="{bundle.url("favicon-32x32.png")}">
<link rel="icon" type="image/png" sizes="16x16" href="{bundle.url("favicon-16x16.png")}">
</head>
<body>
<form id="token-form" hidden>
<p id="token-note"></p>
<label>API token <input id="token" type="password" autocomplete="off" required></label>
<button type="submit">Load</button>
</form>
<div id="swagger-ui"></div>
<script src="{bundle.url("swagger-ui-bundle.js")}"></script>
<script src="{STATIC_PATH}/{SCRIPT_NAME}" data-document="{DOCS_OPENAPI_PATH}"></script>
</body>
</html>
""".encode()


# Loads the document (asking for the API token on 401), then Swagger UI with the token
# pre-authorized, so try-it-out calls this origin with it.
PAGE_SCRIPT: Final = b"""\
"use strict";
(function () {
  var documentUrl = document.currentScript.getAttribute("data-document");
  var form = document.getElementById("token-form");
  var note = document.getElementById("token-note");
  var input = document.getElementById("token");

  function ask(message) {
    note.textContent = message;
    form.hidden = false;
    input.focus();
  }

  function show(spec, token) {
    form.hidden = true;
    spec.servers = [{ url: window.location.origin }];
    var ui = SwaggerUIBundle({
      spec: spec,
      dom_id: "#swagger-ui",
      deepLinking: true,
      presets: [SwaggerUIBundle.presets.apis],
      layout: "BaseLayout",
      validatorUrl: null, // its default is a badge from the internet
      onComplete: function () {
        if (token) {
          ui.preauthorizeApiKey("@BEARER_SCHEME@", token);
        }
      },
    });
  }

  function load(token) {
    var headers = { Accept: "application/json" };
    if (token) {
      headers.Authorization = "Bearer " + token;
    }
    fetch(documentUrl, { headers: headers, credentials: "omit" })
      .then(function (response) {
        if (response.status === 401) {
          ask(token ? "The gateway refused that token." :
            "This gateway needs its API token (CODEX_GATEWAY_API_TOKEN).");
          return null;
        }
        if (!response.ok) {
          ask("The API document could not be loaded: HTTP " + response.status + ".");
          return null;
        }
        return response.json().then(function (spec) { show(spec, token); });
      })
      .catch(function (error) {
        ask("The API document could not be loaded: " + error + ".");
      });
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    load(input.value.trim());
  });
  load("");
})();
""".replace(b"@BEARER_SCHEME@", BEARER_SCHEME.encode())


def page_endpoint(bundle: SwaggerBundle) -> Endpoint:
    """GET/HEAD /docs."""
    page = docs_page(bundle)

    async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:
        response = Response(
            page,
            media_type="text/html; charset=utf-8",
            headers={
                "Cache-Control": REVALIDATE,
                "Content-Security-Policy": CONTENT_SECURITY_POLICY,
                "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "no-referrer",
            },
        )
        await response(scope, receive, send)

    return endpoint


def script_endpoint() -> Endpoint:
    """GET/HEAD /docs/static/{SCRIPT_NAME}: the page's own script."""

    async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:
        response = Response(
            PAGE_SCRIPT,
            media_type=CONTENT_TYPES[".js"],
            headers={"Cache-Control": REVALIDATE, "X-Content-Type-Options": "nosniff"},
        )
        await response(scope, receive, send)

    return endpoint


def static_endpoint(bundle: SwaggerBundle) -> Endpoint:
    """GET/HEAD /docs/static/{version}/{name}: a file of the table, else 404.

    The raw (still percent-encoded) segments are compared with the table's names, so no
    spelling of `..` or `/` names anything but a 404."""
    by_raw_name = {name.encode("ascii"): path for name, path in bundle.files.items()}
    version = bundle.version.encode("ascii")

    async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:
        params: dict[str, bytes] = scope.get(PATH_PARAMS_SCOPE_KEY, {})
        path = by_raw_name.get(params.get("name", b""))
        if params.get("version") != version or path is None:
            await send_error(ErrorResponse.from_bridge_error(RouteNotFound()), scope, receive, send)
            return
        response = FileResponse(
            path,
            media_type=CONTENT_TYPES[path.suffix],
            headers={"Cache-Control": IMMUTABLE, "X-Content-Type-Options": "nosniff"},
        )
        await response(scope, receive, send)

    return endpoint


# --- the OpenAPI 3.0 rendition ------------------------------------------------------------------

# Schema keywords of OpenAPI 3.0; a 3.1 keyword beyond them is dropped (it only documents).
SCHEMA_KEYWORDS_30: Final = frozenset(
    {
        "title",
        "multipleOf",
        "maximum",
        "exclusiveMaximum",
        "minimum",
        "exclusiveMinimum",
        "maxLength",
        "minLength",
        "pattern",
        "maxItems",
        "minItems",
        "uniqueItems",
        "maxProperties",
        "minProperties",
        "required",
        "enum",
        "type",
        "allOf",
        "oneOf",
        "anyOf",
        "not",
        "items",
        "properties",
        "additionalProperties",
        "description",
        "format",
        "default",
        "nullable",
        "readOnly",
        "writeOnly",
        "example",
        "deprecated",
        "$ref",
    }
)
_NULL: Final = {"type": "null"}


def openapi_30(document: Mapping[str, Any]) -> dict[str, Any]:
    """The 3.1 `document` in OpenAPI 3.0's dialect: `type: [T, "null"]` becomes `nullable`,
    `anyOf: [X, {type: null}]` becomes `allOf: [X], nullable`; keywords 3.0 lacks are dropped."""
    paths = {
        path: {verb: _operation_30(operation) for verb, operation in item.items()}
        for path, item in document["paths"].items()
    }
    components = dict(document["components"])
    components["schemas"] = {
        name: schema_30(schema) for name, schema in components["schemas"].items()
    }
    return {**document, "openapi": "3.0.3", "paths": paths, "components": components}


def _operation_30(operation: Mapping[str, Any]) -> dict[str, Any]:
    converted = dict(operation)
    converted["parameters"] = [
        {**parameter, "schema": schema_30(parameter["schema"])}
        for parameter in operation.get("parameters", [])
    ]
    if "requestBody" in operation:
        converted["requestBody"] = _with_content_30(operation["requestBody"])
    converted["responses"] = {
        status: _with_content_30(response) for status, response in operation["responses"].items()
    }
    return converted


def _with_content_30(holder: Mapping[str, Any]) -> dict[str, Any]:
    if "content" not in holder:
        return dict(holder)
    content = {
        media_type: {**media, "schema": schema_30(media["schema"])}
        for media_type, media in holder["content"].items()
    }
    return {**holder, "content": content}


def schema_30(schema: Mapping[str, Any]) -> dict[str, Any]:
    """One JSON schema (3.1) in OpenAPI 3.0's dialect."""
    converted: dict[str, Any] = {}
    for key, value in schema.items():
        if key not in SCHEMA_KEYWORDS_30:
            continue
        if key == "properties":
            converted[key] = {name: schema_30(item) for name, item in value.items()}
        elif key in ("items", "not") or (key == "additionalProperties" and isinstance(value, dict)):
            converted[key] = schema_30(value)
        elif key in ("allOf", "oneOf", "anyOf"):
            options = [item for item in value if item != _NULL]
            if len(options) < len(value):
                converted["nullable"] = True
            if len(options) == 1 and key == "anyOf":
                key = "allOf"  # one option: `nullable` beside a `$ref` needs the allOf wrapper
            converted[key] = [schema_30(item) for item in options]
        elif key == "type" and value == "null":
            converted["nullable"] = True
        elif key == "type" and isinstance(value, list):
            kinds = [kind for kind in value if kind != "null"]
            if len(kinds) < len(value):
                converted["nullable"] = True
            if len(kinds) == 1:
                converted["type"] = kinds[0]
            elif kinds:  # several types: 3.0 says it with oneOf
                converted.setdefault("anyOf", []).extend({"type": kind} for kind in kinds)
        else:
            converted[key] = value
    return converted
