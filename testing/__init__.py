"""The toolkit shared by tests/ and bench/: fakes, spoken audio, clients and WebRTC harnesses.

Nothing here is a test. It lives outside tests/ so that bench/ (and anything else that drives
the server) can use it without importing the test suite; tests/ imports from here, never the
other way round.
"""
