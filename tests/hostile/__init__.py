"""Hostile input: a fuzzer on the REST API, input-check properties, the reference's crash inputs."""
