"""A cluster on this machine for development: a local PostgreSQL and replicas (make cluster)."""
