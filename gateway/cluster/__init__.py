"""Cluster mode: several replicas coordinated through PostgreSQL (docs/design/cluster-mode.md)."""
