# baicommit: make build | test | demo | bench | install | clean
SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(PATH)

GO ?= go
# Build tags of the agent: Podman's Go bindings and containers/image without C libraries
# (gpgme, btrfs, devicemapper), and libmunge for MUNGE credentials without a process per
# request. Exported so scripts/test.sh uses the same list.
AGENT_TAGS ?= remote containers_image_openpgp exclude_graphdriver_btrfs exclude_graphdriver_devicemapper libmunge
export AGENT_TAGS
# The CLI pushes with containers/image and stays a static CGO_ENABLED=0
# binary: signatures through pure-Go OpenPGP instead of gpgme.
CLI_TAGS ?= containers_image_openpgp
export CLI_TAGS

PREFIX ?= /usr/local
DESTDIR ?=
BINDIR := $(DESTDIR)$(PREFIX)/bin
UNITDIR := $(DESTDIR)/etc/systemd/system
TMPFILESDIR := $(DESTDIR)/etc/tmpfiles.d
CONFDIR := $(DESTDIR)/etc/baicommit

.PHONY: all build test demo bench bench-freeze bench-manager bench-web install verify-units clean

all: build

# go build decides what is stale, so both binaries are always handed to it.
build:
	@mkdir -p bin
	CGO_ENABLED=0 $(GO) build -tags '$(CLI_TAGS)' -o bin/baicommit ./cmd/baicommit
	CGO_ENABLED=1 $(GO) build -tags '$(AGENT_TAGS)' -o bin/baicommit-agent ./cmd/baicommit-agent
	CGO_ENABLED=1 $(GO) build -tags libmunge -o bin/baicommit-manager ./cmd/baicommit-manager
	CGO_ENABLED=0 $(GO) build -o bin/baicommit-epilog ./cmd/baicommit-epilog

test:
	bash scripts/test.sh

demo:
	bash scripts/demo.sh

bench: bench-freeze bench-manager bench-web

bench-freeze:
	bash scripts/bench.sh

bench-manager:
	bash scripts/bench-manager.sh

# What authenticating one request costs the manager: the web page's signed cookie against
# a MUNGE credential (needs munged: scripts/setup.sh cluster).
bench-web:
	CGO_ENABLED=1 $(GO) test -tags libmunge -run '^$$' -bench Authentication -benchmem -count 5 ./manager/

install: build
	install -d $(BINDIR) $(UNITDIR) $(TMPFILESDIR) $(CONFDIR)
	install -m 0755 bin/baicommit bin/baicommit-agent bin/baicommit-manager $(BINDIR)/
	install -m 0755 bin/baicommit-epilog contrib/slurm/baicommit-run $(BINDIR)/
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
