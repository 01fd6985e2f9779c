"""Postgres persistence: connection (embedded by default), migrations, write-behind writer."""
