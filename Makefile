# One command per task, the same for people and CI.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP_PY := $(VENV)/.installed
STAMP_NPM := node_modules/.installed
PROTOS := $(wildcard proto/codex_gateway/v1/*.proto)

.PHONY: install serve cluster test check gen bench soak hostile fmt clean constraints baseline

# The editable install must name this checkout. A venv another checkout installed into last (a
# shared or copied .venv) names that one, and every test would import its code, or fail to import
# at all once it is gone: installed again here, without touching the dependencies.
install: $(STAMP_PY) $(STAMP_NPM)
	@(cd / && $(CURDIR)/$(PY) -c 'import os, sys, codex_gateway as g; here = os.path.realpath(sys.argv[1]); sys.exit(not os.path.realpath(g.__file__).startswith(here + "/"))' '$(CURDIR)') 2>/dev/null \
	  || { echo "the editable install names another checkout: installing this one"; $(PY) -m pip install --quiet --no-deps -e .; }

$(STAMP_PY): pyproject.toml constraints.txt
	test -x $(PY) || python3.11 -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

# After changing pyproject.toml's dependencies: pin what the venv now holds.
constraints: $(STAMP_PY)
	{ grep '^#' constraints.txt; $(PY) -m pip freeze --exclude-editable | grep -iv '^codex.gateway'; } \
	  > constraints.txt.new && mv constraints.txt.new constraints.txt

$(STAMP_NPM): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

serve: install
	$(VENV)/bin/codex-gateway serve

# A local PostgreSQL and two replicas on loopback (REST 4001-4002, gRPC 50061-50062); Ctrl-C stops
# them all. ARGS="--replicas 3 --rest-port 0 --grpc-port 0" for more, on any free ports.
cluster: install
	$(PY) -m devcluster $(ARGS)

# Unbuffered: a run stopped from outside (a CI time limit) still shows how far it got.
test: install
	PYTHONUNBUFFERED=1 $(PY) -m pytest -q -n 2 -m "not slow" --failure-log build/test-failures.txt tests \
	  || { echo "== failed tests (build/test-failures.txt) =="; cat build/test-failures.txt; exit 1; }

soak: install
	$(PY) -m pytest -q -m slow tests --timeout=1200

bench: install
	$(PY) -m bench $(ARGS)

# Hostile inputs by class over REST and gRPC against a real gateway: one table (bench/hostile/).
hostile: install
	$(PY) -m bench.hostile $(ARGS)

gen: $(STAMP_PY)
	rm -rf gen/codex_gateway
	mkdir -p gen/codex_gateway/v1
	$(PY) -m grpc_tools.protoc -Iproto \
	  --python_out=gen --pyi_out=gen --grpc_python_out=gen $(PROTOS)
	touch gen/codex_gateway/__init__.py gen/codex_gateway/v1/__init__.py

fmt: $(STAMP_PY)
	$(VENV)/bin/ruff format gateway bridge repl tests bench devcluster
	$(VENV)/bin/ruff check --fix gateway bridge repl tests bench devcluster
	$(VENV)/bin/buf format -w

check: install
	$(VENV)/bin/ruff format --check gateway bridge repl tests bench devcluster
	$(VENV)/bin/ruff check gateway bridge repl tests bench devcluster
	$(VENV)/bin/mypy
	$(VENV)/bin/buf lint
	$(VENV)/bin/buf format -d --exit-code
	# A new field or RPC never breaks an existing client: the proto against the last one landed
	# (proto/baseline.binpb, rebuilt by `make baseline` after a release)
	$(VENV)/bin/buf breaking --against proto/baseline.binpb
	$(MAKE) --no-print-directory gen
	git add -N gen && git diff --exit-code -- gen

baseline: $(STAMP_PY)
	$(VENV)/bin/buf build -o proto/baseline.binpb

clean:
	rm -rf $(VENV) node_modules gen/codex_gateway/**/__pycache__
