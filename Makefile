# The verbs people expect. scripts/ holds the real commands.
.PHONY: build test lint bench run

# VERSION is stamped into the binary (ajar version, the start-up line, the
# ajar_build_info metric): the nearest v* tag, else "devel" with the commit
# (which Go records by itself).
VERSION ?= $(shell git describe --tags --match 'v*' --dirty 2>/dev/null || echo devel)
BIN ?= bin/ajar

# A static binary: no cgo (SQLite is pure Go), no build paths, the version stamped.
build:
	CGO_ENABLED=0 go build -trimpath -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/ajar
test:
	scripts/test
lint:
	scripts/lint
# Each figure of BENCHMARKS.md beside its target (a few minutes; needs
# PostgreSQL 15, as the tests do). BENCH_FLAGS: e.g. -bench HTTP/sqlite -d 5s.
bench:
	go run ./bench/cmd/ajarbench $(BENCH_FLAGS)
run:
	go run ./cmd/ajar serve
