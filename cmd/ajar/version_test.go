package main

import (
	"bytes"
	"encoding/json"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func TestVersion(t *testing.T) {
	var out, errb bytes.Buffer
	e := &cliEnv{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, getenv: func(string) string { return "" }, now: time.Now}
	if code := e.execute(t.Context(), []string{"version"}); code != exitOK {
		t.Fatalf("ajar version: exit %d", code)
	}
	if line := out.String(); !strings.HasPrefix(line, "ajar ") || !strings.Contains(line, runtime.Version()) {
		t.Errorf("ajar version = %q, want the version and %s", line, runtime.Version())
	}
	out.Reset()
	if code := e.execute(t.Context(), []string{"version", "-o", "json"}); code != exitOK {
		t.Fatalf("ajar version -o json: exit %d", code)
	}
	var b buildInfo
	if err := json.Unmarshal(out.Bytes(), &b); err != nil || b.Version == "" || b.GoVersion != runtime.Version() || b.Platform != runtime.GOOS+"/"+runtime.GOARCH {
		t.Errorf("ajar version -o json = %s (%v)", out.String(), err)
	}

	old := version
	version = "v9.8.7"
	defer func() { version = old }()
	if got := readBuildInfo().Version; got != "v9.8.7" {
		t.Errorf("version set with -ldflags: %q, want v9.8.7", got)
	}
	reg := prometheus.NewRegistry()
	if err := registerBuildInfo(reg, readBuildInfo()); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil || len(mfs) != 1 || mfs[0].GetName() != "ajar_build_info" || len(mfs[0].Metric) != 1 {
		t.Fatalf("gathered %v, %v; want one ajar_build_info", mfs, err)
	}
	m := mfs[0].Metric[0]
	labels := map[string]string{}
	for _, l := range m.Label {
		labels[l.GetName()] = l.GetValue()
	}
	if m.GetGauge().GetValue() != 1 || labels["version"] != "v9.8.7" || labels["go_version"] != runtime.Version() {
		t.Errorf("ajar_build_info = %v %v", labels, m.GetGauge().GetValue())
	}
}
