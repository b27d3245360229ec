# baicommit: make build | test | demo | bench | install | clean
SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(PATH)

GO ?= go
# Build tags of the agent: Podman's Go bindings and containers/image without C libraries
# (gpgme, btrfs, devicemapper). Exported so scripts/test.sh uses the same list.
AGENT_TAGS ?= remote containers_image_openpgp exclude_graphdriver_btrfs exclude_graphdriver_devicemapper
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

.PHONY: all build test demo bench install verify-units clean

all: build

# go build decides what is stale, so both binaries are always handed to it.
build:
	@mkdir -p bin
	CGO_ENABLED=0 $(GO) build -tags '$(CLI_TAGS)' -o bin/baicommit ./cmd/baicommit
	CGO_ENABLED=1 $(GO) build -tags '$(AGENT_TAGS)' -o bin/baicommit-agent ./cmd/baicommit-agent

test:
	bash scripts/test.sh

demo:
	bash scripts/demo.sh

bench:
	bash scripts/bench.sh

install: build
	install -d $(BINDIR) $(UNITDIR) $(TMPFILESDIR) $(CONFDIR)
	install -m 0755 bin/baicommit bin/baicommit-agent $(BINDIR)/
	install -m 0644 systemd/baicommit-agent.socket systemd/baicommit-agent.service $(UNITDIR)/
	install -m 0644 systemd/tmpfiles.d/baicommit.conf $(TMPFILESDIR)/baicommit.conf
	@if [ -e $(CONFDIR)/agent.toml ]; then \
		echo "$(CONFDIR)/agent.toml exists, left alone"; \
	else \
		install -m 0644 agent.toml.example $(CONFDIR)/agent.toml && echo "installed $(CONFDIR)/agent.toml"; \
	fi
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
	@echo "next: edit $(CONFDIR)/agent.toml, then: systemctl enable --now baicommit-agent.socket"

# Check the unit files (ExecStart pointed at /bin/true when the agent is not installed).
verify-units:
	@d=$$(mktemp -d) && trap 'rm -rf "$$d"' EXIT && \
	cp systemd/baicommit-agent.socket systemd/baicommit-agent.service "$$d"/ && \
	{ [ -x $(PREFIX)/bin/baicommit-agent ] || sed -i 's|^ExecStart=[^ ]*|ExecStart=/bin/true|' "$$d"/baicommit-agent.service; } && \
	systemd-analyze verify "$$d"/baicommit-agent.socket "$$d"/baicommit-agent.service && echo "units: ok"

clean:
	rm -rf bin
