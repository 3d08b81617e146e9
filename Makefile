# hakube: `make up` deploys the dev stack; `make test` runs every test tier.
SHELL := /bin/bash
.ONESHELL:
.SHELLFLAGS := -euo pipefail -c

STACK ?= dev
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STATE_DIR := $(CURDIR)/.pulumi-state
PASSPHRASE_FILE := $(CURDIR)/.pulumi-passphrase
PULUMI_ENV := PULUMI_BACKEND_URL=file://$(STATE_DIR) PULUMI_CONFIG_PASSPHRASE_FILE=$(PASSPHRASE_FILE)

.PHONY: up preview destroy outputs test test-fast lab lab-down deps state check-pulumi check-config clean

$(VENV)/.deps: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $@

deps: $(VENV)/.deps

check-pulumi:
	@command -v pulumi >/dev/null || { \
	  echo "The Pulumi CLI is not installed. Install it, then run 'make up' again:"; \
	  echo "  curl -fsSL https://get.pulumi.com | sh    # or: brew install pulumi"; \
	  echo "  export PATH=\$$HOME/.pulumi/bin:\$$PATH"; \
	  echo "See https://www.pulumi.com/docs/install/"; exit 1; }

# A local file backend, its passphrase generated once and kept out of git.
$(PASSPHRASE_FILE):
	umask 077; head -c 32 /dev/urandom | base64 > $@

state: $(PASSPHRASE_FILE)
	mkdir -p $(STATE_DIR)

check-config: deps
	$(PY) -c "from config import load_stack_file; s = load_stack_file('.', '$(STACK)'); \
	  print(f'{s.stack}: ' + ', '.join(f'{n.name} {n.ip}' for n in s.topology.nodes))"

define select_stack
	$(PULUMI_ENV) pulumi stack select $(STACK) 2>/dev/null || $(PULUMI_ENV) pulumi stack init $(STACK)
endef

up: check-pulumi deps state check-config
	$(select_stack)
	$(PULUMI_ENV) pulumi up --stack $(STACK)

preview: check-pulumi deps state check-config
	$(select_stack)
	$(PULUMI_ENV) pulumi preview --diff --stack $(STACK)

destroy: check-pulumi deps state
	$(PULUMI_ENV) pulumi destroy --stack $(STACK)

# Writes the SSH key and pinned host keys next to the Makefile, for the sshCommands output.
outputs: check-pulumi state
	umask 077
	$(PULUMI_ENV) pulumi stack output --stack $(STACK) --show-secrets sshPrivateKey > hakube-$(STACK).key
	$(PULUMI_ENV) pulumi stack output --stack $(STACK) knownHosts > hakube-$(STACK).known_hosts
	$(PULUMI_ENV) pulumi stack output --stack $(STACK) sshCommands

.lab/etcd-release: tests/tools/etcd_release.py | deps
	$(PY) -m tests.tools.etcd_release .lab

# Every tier: pure render/config tests, the resource graph, and the lab (real
# hosts; needs root, systemd-nspawn and debootstrap, see README).
test: deps .lab/etcd-release
	$(PY) -m pytest -q -p no:cacheprovider tests/unit tests/graph tests/lab

# Without the lab: seconds, no root needed.
test-fast: deps .lab/etcd-release
	$(PY) -m pytest -q -p no:cacheprovider tests/unit tests/graph

# The lab stack, up and left running to explore (prints how to reach each host).
lab: deps .lab/etcd-release
	$(PY) -m tests.lab.lab up

lab-down: deps
	$(PY) -m tests.lab.lab down

clean:
	rm -rf $(VENV) .lab .pytest_cache
