package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/api"
	"github.com/ajar-dev/ajar/audit"
	"github.com/ajar-dev/ajar/broker"
	"github.com/ajar-dev/ajar/identity"
	"github.com/ajar-dev/ajar/keys"
	"github.com/ajar-dev/ajar/policy"
	"github.com/ajar-dev/ajar/provider"
	"github.com/ajar-dev/ajar/provider/sshcert"
	"github.com/ajar-dev/ajar/readmodel"
	"github.com/ajar-dev/ajar/sshaccess"
	"github.com/ajar-dev/ajar/store/sqlite"
	"github.com/ajar-dev/ajar/store/storetest"
)

// auditEvents is the size of the log the audit benchmarks read (issue 14).
const auditEvents = 1_000_000

// auditServer is an API server, as cmd/ajar serves it, over a SQLite log of
// auditEvents events, and an admin's token.
type auditServer struct {
	url, token string
	events     int64 // the log's size: the fixture and the key events setup added
	sample     storetest.AuditLogSample
	reader     *readmodel.Reader
}

// auditSSH is sshaccess.Service under a name that does not clash with
// broker.Service beside it.
type auditSSH = sshaccess.Service

func setupAudit(b *testing.B) *auditServer {
	b.Helper()
	ctx := context.Background()
	path := filepath.Join(b.TempDir(), "ajar.db")
	st, err := sqlite.Open(ctx, path)
	if err != nil {
		b.Fatal(err)
	}
	st.Close()
	// Straight into the tables: the store's own appends would take minutes.
	db, err := sql.Open("sqlite", path)
	if err != nil {
		b.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	if _, err := db.ExecContext(ctx, "PRAGMA cache_size = -500000; PRAGMA synchronous = OFF"); err != nil {
		b.Fatal(err)
	}
	sample, err := storetest.LoadAuditLog(ctx, db, false, auditEvents)
	db.Close()
	if err != nil {
		b.Fatal(err)
	}
	if st, err = sqlite.Open(ctx, path); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })

	pol, err := policy.DemoPolicy(provider.CheckTarget)
	if err != nil {
		b.Fatal(err)
	}
	var raw [32]byte
	rand.Read(raw[:])
	mk, err := keys.NewMasterKey(raw[:])
	if err != nil {
		b.Fatal(err)
	}
	signer, err := audit.LoadOrCreateSigner(ctx, ajar.StoreKeys(st), mk, "bench")
	if err != nil {
		b.Fatal(err)
	}
	ca, err := sshcert.LoadOrCreateCA(ctx, ajar.StoreKeys(st), mk)
	if err != nil {
		b.Fatal(err)
	}
	provs, err := provider.NewSet(nil, provider.Deps{SSHCA: ca})
	if err != nil {
		b.Fatal(err)
	}
	svc, err := broker.New(broker.Config{Store: st, Policy: pol, Providers: provs})
	if err != nil {
		b.Fatal(err)
	}
	ids, err := identity.New(identity.Config{Store: st, Policy: pol, Sealer: mk})
	if err != nil {
		b.Fatal(err)
	}
	reader := readmodel.New(readmodel.Config{Core: svc, Store: st, Policy: pol, Providers: provs, Signer: signer})
	core := struct { // the broker with the read model beside it, as cmd/ajar serves them
		*broker.Service
		*readmodel.Reader
		*auditSSH
	}{svc, reader, sshaccess.New(svc, st, pol, provs, ca.AuthorizedKey)}
	srv := api.NewServer(core, ids, api.Options{Addr: "127.0.0.1:0"})
	if err := srv.Open(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { srv.Close() })
	tok, _, err := ids.CreateToken(ctx, ajar.User{}, "admin@example.com", "bench", 0)
	if err != nil {
		b.Fatal(err)
	}
	var head int64
	if err := st.View(ctx, func(tx ajar.ReadTx) (err error) {
		head, _, err = tx.AuditHead(ctx)
		return err
	}); err != nil {
		b.Fatal(err)
	}
	return &auditServer{url: srv.URL(), token: tok, events: head, sample: sample, reader: reader}
}

// BenchmarkAudit measures the audit log of 1,000,000 events behind a real
// API server (issue 14), building it once for all of its sub-benchmarks:
//
//   - verify: the real `ajar audit verify` binary against the server (target
//     < 3 s end to end): the signed checkpoint, the whole log over GET
//     /v1/audit/stream, every hash and link recomputed. Reported: s/verify, the
//     wall time of the command.
//   - verify_in_process: the same client code (api.Client.AuditStream and
//     audit.VerifyStream) in this process, for a profile of both sides.
//   - search_request, search_user, search_target, search_hour: an admin's
//     search through the read model (as the web page's), the newest 50
//     events of one request, user, target or hour (target < 50 ms). Reported:
//     ms/search.
//
// Run: go test -run '^$' -bench Audit -benchtime 3x ./bench/
func BenchmarkAudit(b *testing.B) {
	bin := filepath.Join(b.TempDir(), "ajar")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/ajar").CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	s := setupAudit(b)
	want := fmt.Sprintf("ok: %d events\n", s.events)
	b.Run("verify", func(b *testing.B) {
		var total time.Duration
		for b.Loop() {
			cmd := exec.Command(bin, "audit", "verify")
			cmd.Env = append(os.Environ(), "AJAR_SERVER="+s.url, "AJAR_TOKEN="+s.token)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			start := time.Now()
			err := cmd.Run()
			total += time.Since(start)
			if err != nil || stdout.String() != want {
				b.Fatalf("ajar audit verify: %v: %q, want %q; %s", err, stdout.String(), want, strings.TrimSpace(stderr.String()))
			}
		}
		b.ReportMetric(total.Seconds()/float64(b.N), "s/verify")
	})
	b.Run("verify_in_process", func(b *testing.B) {
		c := api.NewClient(s.url, s.token)
		for b.Loop() {
			body, err := c.AuditStream(b.Context(), 0)
			if err != nil {
				b.Fatal(err)
			}
			res, err := audit.VerifyStream(b.Context(), body)
			body.Close()
			if err != nil || res.Events != s.events {
				b.Fatalf("verify: %+v, %v", res, err)
			}
		}
		b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/verify")
	})
	admin := ajar.User{ID: "admin@example.com", Groups: []string{"admins"}}
	for _, c := range []struct {
		name string
		q    readmodel.AuditQuery
	}{
		{"search_request", readmodel.AuditQuery{Request: s.sample.Request}},
		{"search_user", readmodel.AuditQuery{User: s.sample.User}},
		{"search_target", readmodel.AuditQuery{Target: s.sample.Target}},
		{"search_hour", readmodel.AuditQuery{From: s.sample.From, To: s.sample.To}},
	} {
		b.Run(c.name, func(b *testing.B) {
			c.q.Limit = 50
			for b.Loop() {
				res, err := s.reader.SearchAudit(b.Context(), admin, c.q)
				if err != nil || len(res.Records) == 0 || !res.All {
					b.Fatalf("%s: %+v, %v", c.name, res, err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/search")
		})
	}
}
