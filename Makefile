# smta build and test entry points. `make help` lists the targets.
GO       ?= go
BIN      := bin
CONFIG   ?=

.PHONY: help build run test lint bench bench-modes perf-check package clean

help: ## list targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build: ## build smta and smta-loadgen into bin/
	$(GO) build -o $(BIN)/ ./cmd/...

run: build ## build and run smta on the embedded default config (or CONFIG=FILE)
	$(BIN)/smta run $(if $(CONFIG),--config $(CONFIG))

test: build ## run every test, as CI does, then the lock-free and concurrent packages under the race detector
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 30m ./...
	$(GO) test -race -count=1 -timeout 30m ./ring/ ./engine/ ./acct/ ./spool/ ./queue/

lint: ## go vet and gofmt check
	$(GO) vet ./...
	@test -z "$$(gofmt -l .)" || (gofmt -l . && exit 1)

bench: build ## microbenchmarks and the smta-versus-Postfix scenarios
	bash bench/run.sh

bench-modes: build ## the goroutine, epoll and io_uring inbound modes compared (BENCH_SYSCALLS=1, BENCH_MAX_IDLE=N)
	bash bench/modes.sh

perf-check: build ## short relay scenarios; fails below the committed smta/Postfix ratio floor
	bash bench/perf-check.sh

package: build ## build the .deb into dist/ (SMTA_VERSION=x.y.z)
	mkdir -p dist
	SMTA_VERSION=$${SMTA_VERSION:-0.0.0} GOARCH=$$($(GO) env GOARCH) \
		$(GO) run github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.45.2 package \
		--config appliance/nfpm.yaml --packager deb --target dist/

clean: ## remove build output and the local spool
	rm -rf $(BIN) var dist
