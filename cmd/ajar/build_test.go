package main

import (
	"debug/buildinfo"
	"debug/elf"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestMakeBuildIsStatic builds ajar the way the README says (make build) and
// checks the binary is what it promises: statically linked (no ELF
// interpreter, no shared libraries), built without cgo and with -trimpath, and
// stamped with the version given. The first run builds every dependency
// without cgo; later runs come from the build cache.
func TestMakeBuildIsStatic(t *testing.T) {
	makeBin, err := exec.LookPath("make")
	if err != nil {
		t.Fatalf("make is needed to check the release build: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "ajar")
	build := exec.Command(makeBin, "-C", "../..", "build", "BIN="+bin, "VERSION=v0.0.0-buildtest")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("make build: %v\n%s", err, out)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("the binary has an ELF interpreter: it is dynamically linked")
		}
	}
	if libs, err := f.ImportedLibraries(); err != nil || len(libs) > 0 {
		t.Errorf("the binary needs shared libraries %v (%v)", libs, err)
	}
	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	// (Go does not record -ldflags with -trimpath; ajar version shows the stamp.)
	if settings["CGO_ENABLED"] != "0" || settings["-trimpath"] != "true" {
		t.Errorf("build settings: CGO_ENABLED=%q -trimpath=%q", settings["CGO_ENABLED"], settings["-trimpath"])
	}
	out, err := exec.Command(bin, "version", "-o", "json").Output()
	if err != nil {
		t.Fatal(err)
	}
	var v buildInfo
	if err := json.Unmarshal(out, &v); err != nil || v.Version != "v0.0.0-buildtest" {
		t.Errorf("ajar version -o json = %s (%v)", out, err)
	}
	if wd, _ := os.Getwd(); strings.Contains(string(mustRead(t, bin)), wd) {
		t.Errorf("the binary holds the build directory %s (-trimpath missing)", wd)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
