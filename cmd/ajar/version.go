package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3"; without
// it, the module version the binary was built from (go install ...@v1.2.3), or
// "devel".
var version = ""

// buildInfo is what "ajar version" reports and the ajar_build_info metric's
// labels carry.
type buildInfo struct {
	Version   string `json:"version"`
	Revision  string `json:"revision,omitempty"` // the VCS commit, "+dirty" when the tree had changes
	BuildTime string `json:"build_time,omitempty"`
	GoVersion string `json:"go_version"`
	Platform  string `json:"platform"`
}

// readBuildInfo collects buildInfo from the binary itself.
func readBuildInfo() buildInfo {
	bi := buildInfo{Version: version, GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	info, ok := debug.ReadBuildInfo()
	if ok {
		if bi.Version == "" && info.Main.Version != "" && info.Main.Version != "(devel)" {
			bi.Version = info.Main.Version
		}
		dirty := false
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				bi.Revision = s.Value
			case "vcs.time":
				bi.BuildTime = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if dirty && bi.Revision != "" {
			bi.Revision += "+dirty"
		}
	}
	if bi.Version == "" {
		bi.Version = "devel"
	}
	return bi
}

// String is the one-line form: "ajar v1.2.3 (abc1234, go1.26.8, linux/amd64)".
func (b buildInfo) String() string {
	rev := b.Revision
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev == "" {
		rev = "unknown revision"
	}
	return fmt.Sprintf("ajar %s (%s, %s, %s)", b.Version, rev, b.GoVersion, b.Platform)
}

// registerBuildInfo exposes ajar_build_info{version,revision,go_version} 1.
func registerBuildInfo(reg prometheus.Registerer, b buildInfo) error {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "ajar_build_info",
		Help: "Always 1; the labels say which ajar build is running.",
	}, []string{"version", "revision", "go_version"})
	g.WithLabelValues(b.Version, b.Revision, b.GoVersion).Set(1)
	return reg.Register(g)
}

func newVersionCmd(e *cliEnv) *cobra.Command {
	var out outputFormat
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Show which ajar build this is",
		Args:  argNames(),
		RunE: func(cmd *cobra.Command, args []string) error {
			b := readBuildInfo()
			if out == outputJSON {
				return writeJSON(e.stdout, b)
			}
			_, err := fmt.Fprintln(e.stdout, b.String())
			return err
		},
	}
	addOutputFlag(cmd, &out)
	return cmd
}
