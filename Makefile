# The README's two commands are the contract: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: all install sysdeps demo lab-demo test test-fast lint typecheck fuzz bench clean

all: test

# Install the package and its test extra into .venv; re-run when pyproject changes.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,dev]'
	touch $(STAMP)

install: $(STAMP)

# Debian packages listed in tools/sysdeps/*.txt (hostapd, FreeRADIUS, ...), when missing.
sysdeps:
	tools/install-sysdeps

# Generate the dev PKI if absent, start MASA and registrar, onboard 3 pledges, stop.
demo: $(STAMP) sysdeps
	$(PY) -m brski_cli demo --pledges 3

# The network lab (root): pledges in network namespaces discover the join proxy by
# mDNS, onboard through it, join the network with their LDevIDs (802.1X EAP-TLS), and
# LAB_REVOKE of them are revoked and cut off; per-pledge results in var/lab-demo.json
# (docs/network-lab.md, docs/network-access.md).
LAB_PLEDGES ?= 3
LAB_REVOKE ?= 1
lab-demo: $(STAMP) sysdeps
	mkdir -p var
	$(PY) -m brski_cli lab demo --pledges $(LAB_PLEDGES) --revoke $(LAB_REVOKE) --json var/lab-demo.json

test: $(STAMP) sysdeps
	$(PY) -m pytest -q -p no:cacheprovider tests

test-fast: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider tests/unit

lint: $(STAMP)
	$(VENV)/bin/ruff check brski brski_storage brski_hsm brski_tls brski_config brski_web brski_net brski_netaccess brski_cli masa registrar pledge_sim join_proxy tools tests

typecheck: $(STAMP)
	$(VENV)/bin/mypy

# Bounded fuzz run over every parser of untrusted bytes (tools/fuzz.py): per parser the
# inputs tried and unhandled (non-BrskiError) exceptions; fails if there is any.
FUZZ_SECONDS ?= 60
fuzz: $(STAMP)
	$(PY) tools/fuzz.py --seconds $(FUZZ_SECONDS) $(FUZZ_ARGS)

# Vouchers signed/verified per second per format beside bare ECDSA P-256 (tools/bench_vouchers.py).
.PHONY: bench-vouchers
bench-vouchers: $(STAMP)
	$(PY) tools/bench_vouchers.py $(BENCH_ARGS)

# Onboarding rate, latency, CPU and RSS per server, the openssl ceilings and the
# 1M-device store, in one run; BENCH_SECONDS=10 for a quick one (README "Benchmark").
bench: $(STAMP)
	$(PY) tools/bench.py --seconds $${BENCH_SECONDS:-60} $(BENCH_ARGS)

# Only the EST comparison: the registrar's /simpleenroll (new mutual-TLS connection per
# request, durable) against openssl s_server handshakes, server pinned to one core, load
# on the other, 3 alternating rounds over BENCH_EST_SECONDS (default 30).
.PHONY: bench-est
bench-est: $(STAMP)
	$(PY) tools/bench.py --est-only --out bench-est-results.json $(BENCH_ARGS)

clean:
	rm -rf var/ .pytest_cache build *.egg-info

# Where each role's CPU goes during a fleet run: py-spy samples of the registrar, the
# MASA and one fleet worker attributed to parts, beside per-thread CPU per onboarding
# (tools/profile_roles.py; PROFILE_SECONDS, default 15). Needs root or ptrace rights.
.PHONY: profile
profile: $(STAMP)
	$(PY) tools/profile_roles.py --seconds $${PROFILE_SECONDS:-15} $(BENCH_ARGS)
