"""The REST bridge: the documented JSON API, transcoded onto the gateway's gRPC service."""

from .app import create_app, serve_bridge

__all__ = ["create_app", "serve_bridge"]
