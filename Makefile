# ClawOps — run `make help` for the targets.
SHELL := /bin/bash
export CGO_ENABLED := 0
GO ?= go
BIN := $(CURDIR)/bin
PKGS := ./...

.DEFAULT_GOAL := help

.PHONY: help
help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-10s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## Build clawops and gf-clawnode into ./bin (static, CGO_ENABLED=0)
	@mkdir -p $(BIN)
	$(GO) build -trimpath -o $(BIN)/clawops ./cmd/clawops
	$(GO) build -trimpath -o $(BIN)/gf-clawnode ./cmd/gf-clawnode

.PHONY: deps
STATICCHECK_VERSION := v0.8.2

deps: ## Install what the tests and linters drive: Chromium (console test), OpenSSH sshd (SSH fallback test), staticcheck
	@command -v staticcheck >/dev/null 2>&1 || [ -x "$$($(GO) env GOPATH)/bin/staticcheck" ] || \
	  $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	@{ command -v chromium >/dev/null 2>&1 && [ -x /usr/sbin/sshd ]; } || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium openssh-server >/dev/null; \
	  else echo "deps: chromium or sshd missing and cannot apt-get install them; those tests will skip"; fi; }

.PHONY: demo
demo: build ## Start the gateway with a 6-instance local fleet on the embedded default (no config needed)
	$(BIN)/clawops demo --data $(CURDIR)/.data/demo

.PHONY: test
test: ## Run every test (unit, integration, end-to-end with real gf-clawnode processes)
	$(GO) test -count=1 -timeout 30m $(PKGS)

.PHONY: bench
bench: ## Run the Go benchmarks (gate decision + audit append, node round trip, ...)
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 2s $(PKGS)

.PHONY: bench-nodes
bench-nodes: ## Node-plane load: 10,000 simulated gf-clawnode nodes on one gateway process (docs/bench.md)
	@mkdir -p $(CURDIR)/.data
	$(GO) run ./bench/nodes -n 10000 -json $(CURDIR)/.data/bench-nodes.json

.PHONY: interop
interop: ## ClawOps against the stock OpenClaw, both directions, in a loopback-only namespace (root)
	./interop/run.sh

.PHONY: lint
lint: ## gofmt, go vet, and staticcheck when installed
	@out=$$(gofmt -l $$(git ls-files -co --exclude-standard '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	@sc=$$(command -v staticcheck || echo "$$($(GO) env GOPATH)/bin/staticcheck"); \
	if [ -x "$$sc" ]; then "$$sc" $(PKGS); else echo "staticcheck not installed (make deps); skipped"; fi

.PHONY: tidy
tidy: ## go mod tidy
	$(GO) mod tidy
