"""Tool calls: declarations (spec), one lifecycle per call (lifecycle), running them (runner)."""
