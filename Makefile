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
# SSH_AUTH_SOCK unset: the command provider uses any agent it names, and a
# stale one fails every step; hakube's steps authenticate with the stack's key.
# `make tools` links the CLI it built from Go modules here; it comes first on
# PATH. Pulumi never checks for its own updates; once every plugin is built
# here too it is told not to fetch any (until then a release CLI fetches them).
TOOLS_BIN := $(CURDIR)/.tools/bin
export PATH := $(TOOLS_BIN):$(PATH)
PULUMI_ENV := env -u SSH_AUTH_SOCK PULUMI_BACKEND_URL=file://$(STATE_DIR) PULUMI_CONFIG_PASSPHRASE_FILE=$(PASSPHRASE_FILE) \
  PULUMI_SKIP_UPDATE_CHECK=1 $(if $(wildcard $(TOOLS_BIN)/pulumi-resource-command),PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=1)

.PHONY: tools lab-releases versions docs up preview review converge rebuild destroy outputs kubeconfig status backups lab-status lab-backups test test-fast lab lab-down deps state check-pulumi check-config check-libvirt clean

$(VENV)/.deps: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $@

deps: $(VENV)/.deps

# The Pulumi CLI and etcd releases, built from their Go modules (tools/),
# cached by version in $(HAKUBE_TOOLS_CACHE) (default /var/cache/hakube-tools).
tools:
	$(PYTHON) tools/build.py

check-pulumi:
	@command -v pulumi >/dev/null || { \
	  echo "The Pulumi CLI is not on PATH. Install a release (it brings the Python language host):"; \
	  echo "  https://www.pulumi.com/docs/install/"; \
	  echo "or build the CLI from its Go module with 'make tools' (needs Go 1.26)."; exit 1; }
	@dir=$$(dirname "$$(readlink -f "$$(command -v pulumi)")"); \
	command -v pulumi-language-python >/dev/null || [ -x "$$dir/pulumi-language-python" ] || { \
	  echo "pulumi ($$(pulumi version)) has no Python language host (pulumi-language-python) beside it or on PATH."; \
	  echo "A Pulumi release ships one; 'make tools' cannot build it while the Go module proxy refuses"; \
	  echo "github.com/pulumi/pulumi/sdk/python/cmd/pulumi-language-python/v3 (tools/build.py). Install a release."; exit 1; }

# A local file backend, its passphrase generated once and kept out of git.
$(PASSPHRASE_FILE):
	umask 077; head -c 32 /dev/urandom | base64 > $@

state: $(PASSPHRASE_FILE)
	mkdir -p $(STATE_DIR)

# The releases hakube knows (config/versions.py): pinned etcd checksums,
# Kubernetes minors with their kubeadm API, CNI defaults, each with its source.
versions: deps
	$(PY) -c 'import sys; from config.versions import main; sys.exit(main(sys.argv[1:]))'

# The generated pages (ops/docs.py): the config reference, docs/config.md
# and Pulumi.yaml's comments, from config/docs.py and the parser's own
# defaults and limits; docs/alerts.md from the alert rules.
docs: deps
	$(PY) -m ops.docs

check-config: deps
	@$(PY) -m config.check $(STACK)

define select_stack
	$(PULUMI_ENV) pulumi stack select $(STACK) 2>/dev/null || $(PULUMI_ENV) pulumi stack init $(STACK)
endef

# before Pulumi starts: the stack's libvirt host answers (ops/hostcheck.py)
check-libvirt: deps
	@$(PY) -m ops.hostcheck $(STACK)

up: check-pulumi deps state check-config check-libvirt
	$(select_stack)
	$(PULUMI_ENV) pulumi up --stack $(STACK)

preview: check-pulumi deps state check-config
	$(select_stack)
	$(PULUMI_ENV) pulumi preview --diff --stack $(STACK)

# What `pulumi up` of STACK would do for the change between BASE (default:
# the merge base with main) and the working tree, per node, from this
# checkout alone (no state, passphrase, libvirt or Pulumi CLI): the engine
# model the lab runs on. FORMAT=markdown|json, SCRIPTS=1 for script diffs,
# PREVIEW=<file of `pulumi preview --json`> to review the real plan instead.
review: deps
	$(PY) -m review --stack $(STACK) $(if $(BASE),--base $(BASE)) $(if $(FORMAT),--format $(FORMAT)) \
	  $(if $(SCRIPTS),--scripts) $(if $(PREVIEW),--preview-json $(PREVIEW))

# Drift repair: `pulumi up` replacing the stack's convergeTargets (the steps
# that check and repair: etcd members started or re-joined, firewalls, timers,
# the cluster gate, HAProxy/keepalived, the VIP, the etcd preflights, the
# post-bootstrap checks). A plain `pulumi up` with no change runs nothing.
converge: check-pulumi deps state
	$(select_stack)
	targets=$$($(PULUMI_ENV) pulumi stack output --stack $(STACK) --json convergeTargets | \
	  $(PY) -c 'import json, sys; print(" ".join("--replace=" + u for u in json.load(sys.stdin)))')
	$(PULUMI_ENV) pulumi up --stack $(STACK) $$targets

# One node onto a new VM with the stack's disk, image, vCPU and memory keys
# (which no plain `pulumi up` applies to an existing node; `pendingRebuilds`
# lists the nodes that differ). An etcd member's new machine joins as a
# learner, replacing its old entry, and is promoted; then rebuild the next.
rebuild: check-pulumi deps state
	@[ -n "$(NODE)" ] || { echo "usage: make rebuild STACK=$(STACK) NODE=<node>, one node per run"; exit 2; }
	$(select_stack)
	urn=$$($(PULUMI_ENV) pulumi stack output --stack $(STACK) --json rebuildTargets | \
	  $(PY) -c 'import json, sys; t = json.load(sys.stdin); n = sys.argv[1]; \
	    print(t[n]) if n in t else sys.exit(f"{n} is not a node of this stack: " + ", ".join(sorted(t)))' "$(NODE)")
	HAKUBE_REBUILD=$(NODE) $(PULUMI_ENV) pulumi up --stack $(STACK) --replace="$$urn"

# `pulumi destroy`, then the stack's image volumes, which Pulumi keeps
# (retainOnDelete: a node's disk is an overlay on its image's volume).
destroy: check-pulumi deps state
	images=$$($(PULUMI_ENV) pulumi stack output --stack $(STACK) --json imageVolumes 2>/dev/null || echo '{}')
	$(PULUMI_ENV) pulumi destroy --stack $(STACK)
	read -r uri pool prefix < <($(PY) -c 'import json, sys; d = json.loads(sys.argv[1] or "{}"); \
	  print(d.get("uri", "-"), d.get("pool", "-"), d.get("prefix", "-"))' "$$images")
	[ "$$prefix" != "-" ] || exit 0
	for vol in $$(virsh -c "$$uri" vol-list --pool "$$pool" --name | grep "^$$prefix" || true); do
	  virsh -c "$$uri" vol-delete --pool "$$pool" "$$vol"
	done

# Writes the SSH key and pinned host keys next to the Makefile, for the sshCommands output.
outputs: check-pulumi state
	umask 077
	$(PULUMI_ENV) pulumi stack output --stack $(STACK) --show-secrets sshPrivateKey > hakube-$(STACK).key
	$(PULUMI_ENV) pulumi stack output --stack $(STACK) knownHosts > hakube-$(STACK).known_hosts
	$(PULUMI_ENV) pulumi stack output --stack $(STACK) sshCommands

# The running stack on one screen, read live over SSH with the stack's
# outputs (etcd members, backups, certificates, HAProxy, the VIP): problems
# first; exit 1 when there is one. JSON=1 prints it as data.
status: check-pulumi state
	$(PULUMI_ENV) pulumi stack output --stack $(STACK) --json --show-secrets | \
	  $(PY) -m ops.status --outputs - --stack $(STACK) $(if $(JSON),--json)

# The off-host snapshots (etcd.backup.offsite), newest first, each with the
# sha256 checked when it was copied, and the config that restores the newest.
backups: check-pulumi state
	$(PULUMI_ENV) pulumi stack output --stack $(STACK) --json --show-secrets | \
	  $(PY) -m ops.backups --outputs - $(if $(JSON),--json)

# The admin kubeconfig read fresh from the first control plane. The
# `kubeconfig` output is admin.conf as it was at kubeadm init: its client
# certificate lasts a year, and the renewal timer renews the file on the
# node, not the output.
kubeconfig: outputs
	umask 077
	cmd=$$($(PULUMI_ENV) pulumi stack output --stack $(STACK) --json | $(PY) -c 'import json, sys; \
	  o = json.load(sys.stdin); print(o["sshCommands"][o["summary"]["kubernetes"]["controlPlanes"][0]])')
	$$cmd sudo cat /etc/kubernetes/admin.conf > hakube-$(STACK).kubeconfig
	echo "export KUBECONFIG=$(CURDIR)/hakube-$(STACK).kubeconfig"

# The lab's release server tree: the etcd releases `make tools` built, in
# upstream's layout, and 3.5.1 from PyPI for the tests that need an old start.
lab-releases: tools deps
	$(PY) -m tests.tools.etcd_release .lab

# Every tier, as CI runs it: unit (pure, render and real validators, the
# releases `make tools` builds), graph (the program under mocks and the
# engine model), real (the Pulumi CLI) and the lab (real hosts; needs root,
# systemd-nspawn and debootstrap, see README); then the profile (tests/conftest.py).
# Native tracebacks: pytest's own (it parses test sources again) can crash on
# Python 3.11.7 ("AST constructor recursion depth mismatch") and hide the failure.
# The unit, graph and real tiers run on both cores (pytest-xdist, a module
# per process, the longest first: tests/conftest.py); then the lab's modules,
# each on a lab of its own (a slot: tests/lab/hosts.py) and all at once, as
# they spend most of their time waiting on their hosts.
PYTEST := $(PY) -m pytest -q -p no:cacheprovider --tb=native --durations=10
PARALLEL := -n 2 --dist loadfile
IN_ORDER := --no-loadscope-reorder
test: deps lab-releases
	$(PYTEST) $(PARALLEL) $(IN_ORDER) tests/unit tests/graph tests/real
	$(PYTEST) -n 3 --dist loadfile $(IN_ORDER) tests/lab

# The unit and graph tiers with no Go build, no root and no lab: tests that
# need `make tools` builds are skipped and listed (-rs), and so are the real
# and lab tiers.
test-fast: deps
	HAKUBE_TIER=fast $(PYTEST) $(PARALLEL) -rs tests/unit tests/graph

# The lab stack, up and left running to explore (prints how to reach each host).
lab: deps lab-releases
	$(PY) -m tests.lab.lab up

# `make status` of the running lab (its outputs, written by `make lab`).
lab-status: deps
	$(PY) -m ops.status --outputs .lab/access/outputs.json --stack lab $(if $(JSON),--json)

# `make backups` of the running lab.
lab-backups: deps
	$(PY) -m ops.backups --outputs .lab/access/outputs.json $(if $(JSON),--json)

lab-down: deps
	$(PY) -m tests.lab.lab down

clean:
	rm -rf $(VENV) .lab .pytest_cache
