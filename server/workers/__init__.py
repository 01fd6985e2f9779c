"""Several server processes on one box: `WORKERS=N` (docs/deploy.md#workers).

One Python process serves one event loop on one core; `WORKERS` > 1 runs N `python -m server`
worker processes that share the gRPC and HTTP ports (SO_REUSEPORT: the kernel spreads new
connections over them), under one parent (`parent.py`) that starts the embedded Postgres
once, restarts a worker that dies and drains them all on SIGTERM. `WORKERS=1` is the plain
single process, unchanged.
"""
