# The verbs people expect. scripts/ holds the real commands.
.PHONY: build test lint bench run
build:
	go build -o bin/ajar ./cmd/ajar
test:
	scripts/test
lint:
	scripts/lint
bench:
	go test -run '^$$' -bench . -benchmem ./...
run:
	go run ./cmd/ajar serve
