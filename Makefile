# authz: `make run` starts the local demo stack, `make test` runs the whole suite.
# Both install what is missing first: through apt, python3-venv (Debian's python3 ships without it),
# the redis-server binary and curl (the tests run the token requests authz prints); then a virtualenv with
# the pip packages.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
SUDO   := $(shell [ "$$(id -u)" = "0" ] || echo sudo)

.PHONY: deps run test bench fuzz lint clean protos

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c "import ensurepip, venv" 2>/dev/null || \
	  ( $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq python3-venv )
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m authz.admin._build
	touch $@

# The admin API's gRPC code (authz/admin/v1/*_pb2*.py) from protos/authz/admin/v1/*.proto.
protos: $(VENV)/.installed
	$(PY) -m authz.admin._build

deps: $(VENV)/.installed
	@command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ] || \
	  ( $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq redis-server )
	@command -v curl >/dev/null 2>&1 || \
	  ( $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq curl )

# Envoy's ext_authz mode of the demo stack: http (the default) or grpc (make run AUTHZ_MODE=grpc).
AUTHZ_MODE ?= http

run: deps
	$(PY) -m authz dev stack --config config/authz.yaml --authz-mode $(AUTHZ_MODE)

test: deps
	$(PY) -m pytest -q

# The benchmark of docs/performance.md (wrk and h2load through apt when missing); about 6 minutes.
bench: deps
	@command -v wrk >/dev/null 2>&1 && command -v h2load >/dev/null 2>&1 || \
	  ( $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq wrk nghttp2-client )
	$(PY) bench/run.py --duration 8 --repeat 3

# Coverage-guided fuzzing with atheris (tests/fuzz/harness.py), FUZZ_SECONDS per target (default 60); not in CI
# (the test suite runs the hypothesis properties of tests/test_fuzz.py and replays the seed corpus). New inputs go
# to .run/fuzz/<target>/, a failing input to .run/fuzz/crash-*.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= bearer path jws check
fuzz: deps
	$(PY) -m pip install --quiet -e '.[dev,fuzz]'
	@for t in $(FUZZ_TARGETS); do \
	  mkdir -p .run/fuzz/$$t && \
	  echo "fuzz $$t for $(FUZZ_SECONDS)s" && \
	  $(PY) -m tests.fuzz.harness $$t .run/fuzz/$$t tests/fuzz/corpus/$$t -max_total_time=$(FUZZ_SECONDS) \
	    -artifact_prefix=.run/fuzz/ > .run/fuzz/$$t.log 2>&1 || { tail -40 .run/fuzz/$$t.log; exit 1; }; \
	  grep -E "DONE|^Done" .run/fuzz/$$t.log; \
	done

lint: deps
	$(VENV)/bin/ruff check authz tests

clean:
	rm -rf $(VENV) .run
