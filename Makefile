# Aldis build and test entry points. `make test` is what CI runs.
GO       ?= go
FUZZTIME ?= 8s
UNIT     := $(shell $(GO) list ./... | grep -v /integration)

.PHONY: all build run test vet unit integration fuzz bench clean

all: build

build:
	$(GO) build -o bin/aldis ./cmd/aldis

# Runs the server on the embedded defaults (localhost, ./aldis-data).
run:
	$(GO) run ./cmd/aldis serve

test: vet unit integration fuzz

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))" || (echo "gofmt needed:"; gofmt -l .; exit 1)

unit:
	$(GO) test -race -count=1 $(UNIT)

integration:
	$(GO) test -count=1 -timeout 15m ./integration/...

# Short runs of every fuzz target: each parser of hostile input has one.
fuzz:
	@set -e; for pkg in $(UNIT); do \
	  dir=$$($(GO) list -f '{{.Dir}}' $$pkg); \
	  for f in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$dir/*_test.go 2>/dev/null | sed 's/func //'); do \
	    echo "fuzz $$pkg $$f"; \
	    $(GO) test -run='^$$' -fuzz="^$$f$$" -fuzztime=$(FUZZTIME) -fuzzminimizetime=2s $$pkg >/tmp/aldis-fuzz.log 2>&1 || { cat /tmp/aldis-fuzz.log; exit 1; }; \
	  done; \
	done

bench:
	$(GO) test -run='^$$' -bench=. -benchmem ./xmppcore/... ./core/...

clean:
	rm -rf bin
