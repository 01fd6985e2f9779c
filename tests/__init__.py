import server  # noqa: F401  (sets GRPC_ENABLE_FORK_SUPPORT before any test imports grpc)
