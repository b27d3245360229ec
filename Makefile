# baicommit: make build | vet | unit | e2e | test | demo | bench | install | clean
#
# This file is the one place that says how baicommit is built: the build tags
# and the version below are read by scripts/*.sh (`make -s print-VAR`) and by
# the end-to-end tests (which run `make build` when given no binaries).
SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(PATH)

GO ?= go
# Podman's Go bindings and containers/image without C libraries (gpgme,
# btrfs, devicemapper): what the agent needs to reach Podman and read a
# user's image store.
PODMAN_TAGS := remote containers_image_openpgp exclude_graphdriver_btrfs exclude_graphdriver_devicemapper
# The agent also calls libmunge for MUNGE credentials instead of a munge
# process per request.
AGENT_TAGS ?= $(PODMAN_TAGS) libmunge
MANAGER_TAGS ?= libmunge
# The CLI pushes with containers/image and stays a static CGO_ENABLED=0
# binary: signatures through pure-Go OpenPGP instead of gpgme.
CLI_TAGS ?= containers_image_openpgp
# Every package (vet, unit and end-to-end tests) builds with the agent's.
TEST_TAGS ?= $(AGENT_TAGS)

# The version all four binaries print (--version) and the daemons report
# in /v1/version.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/baicommit/baicommit/internal/version.Version=$(VERSION)

# Where `make build` puts the binaries.
BIN ?= bin

PREFIX ?= /usr/local
DESTDIR ?=
BINDIR := $(DESTDIR)$(PREFIX)/bin
UNITDIR := $(DESTDIR)/etc/systemd/system
TMPFILESDIR := $(DESTDIR)/etc/tmpfiles.d
CONFDIR := $(DESTDIR)/etc/baicommit

.PHONY: all build build-sim vet unit e2e test demo bench bench-freeze bench-store bench-manager bench-web bench-scale install verify-units clean

all: build

# go build decides what is stale, so every binary is always handed to it.
build:
	@mkdir -p $(BIN)
	CGO_ENABLED=0 $(GO) build -tags '$(CLI_TAGS)' -ldflags '$(LDFLAGS)' -o $(BIN)/baicommit ./cmd/baicommit
	CGO_ENABLED=1 $(GO) build -tags '$(AGENT_TAGS)' -ldflags '$(LDFLAGS)' -o $(BIN)/baicommit-agent ./cmd/baicommit-agent
	CGO_ENABLED=1 $(GO) build -tags '$(MANAGER_TAGS)' -ldflags '$(LDFLAGS)' -o $(BIN)/baicommit-manager ./cmd/baicommit-manager
	CGO_ENABLED=0 $(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/baicommit-epilog ./cmd/baicommit-epilog

# The scale simulation (test/scale): test code, never installed; the end-to-end tests
# and bench-scale run it.
build-sim:
	@mkdir -p $(BIN)
	CGO_ENABLED=1 $(GO) build -tags '$(AGENT_TAGS)' -ldflags '$(LDFLAGS)' -o $(BIN)/baicommit-sim ./test/scale/baicommit-sim

vet:
	$(GO) vet -tags '$(TEST_TAGS)' ./...

# Unit tests: every package but the end-to-end tests (no root, no Podman needed,
# except where a test says so).
unit:
	$(GO) test -count=1 -tags '$(TEST_TAGS)' $$($(GO) list -tags '$(TEST_TAGS)' ./... | grep -v '/test/e2e')

# End-to-end tests against the real components (root; scripts/setup.sh).
e2e: build build-sim
	BAICOMMIT_BIN_DIR=$(abspath $(BIN)) $(GO) test -count=1 -tags '$(TEST_TAGS)' -v -timeout 25m ./test/e2e/

test:
	bash scripts/test.sh

demo:
	bash scripts/demo.sh

bench: bench-freeze bench-store bench-manager bench-web bench-scale

bench-freeze:
	bash scripts/bench.sh

# A 2 GB base, sessions changing 10 MB: an archive against the layer store, first time
# and again.
bench-store:
	bash scripts/bench-store.sh

bench-manager:
	bash scripts/bench-manager.sh

# What authenticating one request costs the manager: the web page's signed cookie against
# a MUNGE credential (needs munged: scripts/setup.sh cluster).
bench-web:
	CGO_ENABLED=1 $(GO) test -tags '$(MANAGER_TAGS)' -run '^$$' -bench Authentication -benchmem -count 5 ./manager/

# The manager at 100, 500 and 2,000 simulated nodes: per route, agent requests and MUNGE
# operations per request, p50/p99, the manager's peak RSS (as root; scripts/bench-scale.sh).
bench-scale:
	bash scripts/bench-scale.sh

# `make -s print-AGENT_TAGS` prints a variable, for scripts.
print-%:
	@echo '$($*)'

install: build
	install -d $(BINDIR) $(UNITDIR) $(TMPFILESDIR) $(CONFDIR)
	install -m 0755 $(BIN)/baicommit $(BIN)/baicommit-agent $(BIN)/baicommit-manager $(BINDIR)/
	install -m 0755 $(BIN)/baicommit-epilog contrib/slurm/baicommit-run $(BINDIR)/
	install -d $(DESTDIR)$(PREFIX)/share/baicommit
	install -m 0644 contrib/slurm/baicommit-on-signal.sh $(DESTDIR)$(PREFIX)/share/baicommit/
	install -m 0644 systemd/baicommit-agent.socket systemd/baicommit-agent-tcp.socket \
		systemd/baicommit-agent.service systemd/baicommit-manager.service $(UNITDIR)/
	install -m 0644 systemd/tmpfiles.d/baicommit.conf $(TMPFILESDIR)/baicommit.conf
	@if [ -e $(CONFDIR)/agent.toml ]; then \
		echo "$(CONFDIR)/agent.toml exists, left alone"; \
	else \
		install -m 0644 agent.toml.example $(CONFDIR)/agent.toml && echo "installed $(CONFDIR)/agent.toml"; \
	fi
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
	@echo "next: edit $(CONFDIR)/agent.toml, then: systemctl enable --now baicommit-agent.socket"
	@echo "  with a manager: also baicommit-agent-tcp.socket on compute nodes; on the manager host,"
	@echo "  $(CONFDIR)/manager.toml from manager.toml.example and systemctl enable --now baicommit-manager"

# Check the unit files (ExecStart pointed at /bin/true when the agent is not installed).
verify-units:
	@d=$$(mktemp -d) && trap 'rm -rf "$$d"' EXIT && \
	cp systemd/*.socket systemd/*.service "$$d"/ && \
	{ [ -x $(PREFIX)/bin/baicommit-agent ] || sed -i 's|^ExecStart=[^ ]*|ExecStart=/bin/true|' "$$d"/baicommit-agent.service; } && \
	{ [ -x $(PREFIX)/bin/baicommit-manager ] || sed -i 's|^ExecStart=[^ ]*|ExecStart=/bin/true|' "$$d"/baicommit-manager.service; } && \
	systemd-analyze verify "$$d"/*.socket "$$d"/*.service && echo "units: ok"

clean:
	rm -rf bin
