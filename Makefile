# Everything a newcomer needs, on a fresh Debian/Ubuntu machine, as root.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
APT_PACKAGES = iproute2 iptables iperf3 curl dnsutils openssl ethtool conntrack \
               libnetfilter-queue-dev build-essential python3-venv python3-dev
# Only the tests need these: promtool (package prometheus) checks the shipped alert rules; valgrind runs
# the instruction-count benchmark (benchmarks/ids_instructions.py) on a tiny ruleset; the OpenSSH client is
# the real client of the SSH lab test (tests/test_netns_ssh.py).
TEST_APT_PACKAGES = prometheus valgrind openssh-client

.PHONY: setup system-packages test-packages venv run demo test bench lint clean

setup: system-packages venv

system-packages:
	@$(MAKE) --no-print-directory apt-install PACKAGES="$(APT_PACKAGES)"

test-packages:
	@$(MAKE) --no-print-directory apt-install PACKAGES="$(TEST_APT_PACKAGES)"

apt-install:
	@if [ "$$(id -u)" != 0 ]; then echo "make setup needs root (apt-get, network namespaces)"; exit 1; fi
	@missing=""; for p in $(PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

venv: $(BIN)/gateway

$(BIN)/gateway: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,bench]'
	touch $@

# The gateway's main job: the network-namespace lab with real traffic through real NFQUEUE.
run demo: setup
	$(BIN)/gateway lab demo

test: setup test-packages
	$(BIN)/python -m pytest -q -rs $(PYTEST_ARGS)
	$(BIN)/ruff check gateway tests benchmarks

bench: setup
	$(BIN)/python -m benchmarks.run

lint: venv
	$(BIN)/ruff check gateway tests benchmarks

clean:
	rm -rf $(VENV) build *.egg-info
