"""The REST bridge: the documented JSON API, transcoded onto the gateway's gRPC service.

Nothing is imported here, so the gateway can use `bridge.listener` without loading FastAPI.
"""
