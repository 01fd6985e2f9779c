"""The control plane: server processes sharing one Postgres act as one server (docs/cluster.md)."""
