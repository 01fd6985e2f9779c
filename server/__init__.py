"""The server: gRPC + HTTP entry, config, persistence."""

import os

# The embedded Postgres is started by forking this (multi-threaded) process to run pg_ctl as
# another user. gRPC's fork handlers then restart its event-engine threads in the child, which
# was seen to crash pg_ctl (SIGSEGV). The server never forks to serve gRPC, so turn them off.
# This must happen before grpc is imported.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
