# mcgate: see README.md. `make demo` and `make test` are the quick start.
SHELL := /bin/bash
GO ?= go
BIN := bin/mcgate
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)

# Other makefiles (mk/*.mk) add prerequisites of `make test` here.
TEST_DEPS :=

.PHONY: all build test lint demo demo-static demo-kube fuzz
all: build

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/mcgate

include $(wildcard mk/*.mk)

# lint first: an unformatted file once reached main through a green CI run.
# bench is a nested module (bench/go.mod): ./... does not reach it, so it is
# tested and vetted on its own.
test: build lint $(TEST_DEPS)
	$(GO) test -race -count=1 -timeout 40m ./...
	$(GO) test -C bench -race -count=1 -timeout 20m ./...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -C bench ./...

# The static two-gateway demo (no Kubernetes): see demo/.
demo-static: build
	$(GO) run ./demo --bin $(BIN)

# `make demo` is the demo on two real local clusters (demo-kube below).
demo: demo-kube

# The demo on two real clusters (make kube-up), run inside their network
# namespace; the clusters are stopped afterwards unless KEEP=1.
DEMO_BIN := .cache/demo
demo-kube: build kube-up
	@$(GO) build -o $(DEMO_BIN) ./demo
	@status=0; ip netns exec mcgate-kube $(DEMO_BIN) kube --bin $(BIN) --kube-dir $(KUBE_DIR) $(if $(KEEP),--keep) || status=$$?; \
	  if [ -z "$(KEEP)" ]; then $(MAKE) --no-print-directory kube-down; fi; exit $$status

# Every fuzz target of the repository, each for FUZZTIME (CI's `make test`
# runs their seed corpora; this explores).
FUZZTIME ?= 60s
fuzz:
	@set -e; grep -rl --include='*_test.go' '^func Fuzz' . | grep -v '^./internal/testenv/kube/bins' | while read -r f; do \
	  dir=$$(dirname "$$f"); \
	  for fn in $$(grep -o '^func Fuzz[A-Za-z0-9_]*' "$$f" | cut -d' ' -f2); do \
	    echo "== $$dir $$fn ($(FUZZTIME))"; \
	    $(GO) test -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) "$$dir"; \
	  done; \
	done
