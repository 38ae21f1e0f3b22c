// Package layering holds no code: its test enforces the import rules of the
// Layers section of docs/architecture.md, so that `go test ./...` (and with it
// scripts/test) fails when a lower layer imports a higher one.
package layering
