"""Benchmark harness: `python -m bench` (or `make bench`) prints a table and writes JSON.

Each figure comes from a scenario registered in `bench.registry`; scenarios live in
`bench.scenarios`, one module each, so new figures land in the same table and JSON file.
"""
