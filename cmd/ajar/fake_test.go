package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/api"
	"github.com/ajar-dev/ajar/readmodel"
)

// fakeCore is a hand-written api.Core for the CLI tests, which run the real API
// server and client around it. It records what it was given.
type fakeCore struct {
	mu sync.Mutex

	err      error                    // if set, every method after Authenticate returns it
	requests map[string]*ajar.Request // by id
	script   map[string][]ajar.State  // states GetRequest moves a request through, one per call
	events   []ajar.AuditEvent
	calls    []string
	create   ajar.CreateInput
	list     readmodel.ListInput
	paged    bool // ListRequests answers in two pages
	filters  []ajar.AuditFilter
	searches []readmodel.AuditQuery
	comment  string
	reason   string
	pubKey   string
}

var _ api.Core = (*fakeCore)(nil)

var testTime = time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC)

func newFakeCore() *fakeCore {
	exp := testTime.Add(30 * time.Minute)
	return &fakeCore{
		requests: map[string]*ajar.Request{
			"r1": {
				ID: "r1", Target: "prod-web", Requester: "alice@example.com", Reason: "deploy hotfix",
				Ticket: "OPS-42", Duration: 30 * time.Minute, Policy: "engineers-prod", State: ajar.StateActive,
				CreatedAt: testTime, UpdatedAt: testTime, ExpiresAt: &exp,
				Approvals: []ajar.Approval{{Approver: "bob@example.com", Decision: ajar.DecisionApprove, Comment: "lgtm", At: testTime}},
			},
		},
		script: map[string][]ajar.State{},
	}
}

func (f *fakeCore) called(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, name)
	return f.err
}

func (f *fakeCore) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

func (f *fakeCore) get(id string) (*ajar.Request, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.requests[id]
	if !ok {
		return nil, ajar.Errorf(ajar.ENOTFOUND, "request %s not found", id)
	}
	if s := f.script[id]; len(s) > 0 {
		r.State, f.script[id] = s[0], s[1:]
	}
	c := *r
	return &c, nil
}

func (f *fakeCore) Authenticate(ctx context.Context, token string) (ajar.User, error) {
	if token != "alice-token" {
		return ajar.User{}, ajar.Errorf(ajar.EUNAUTH, "unknown token")
	}
	return ajar.User{ID: "alice@example.com", Groups: []string{"engineers"}}, nil
}

func (f *fakeCore) Targets(ctx context.Context, u ajar.User) ([]readmodel.TargetInfo, error) {
	if err := f.called("Targets"); err != nil {
		return nil, err
	}
	return []readmodel.TargetInfo{{
		Name: "prod-web", Provider: "ssh-cert", Policy: "engineers-prod",
		DefaultDuration: "30m", MaxDuration: "2h", ApprovalTimeout: "30m",
		Steps: []readmodel.StepInfo{{Approvers: []string{"group:sre"}, Count: 1}},
	}}, nil
}

func (f *fakeCore) CreateRequest(ctx context.Context, u ajar.User, in ajar.CreateInput) (*ajar.Request, error) {
	if err := f.called("CreateRequest"); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.create = in
	r := &ajar.Request{
		ID: fmt.Sprintf("r%d", len(f.requests)+1), Target: in.Target, Requester: u.ID,
		Reason: in.Reason, Ticket: in.Ticket, Params: in.Params, StartAt: in.Start,
		Duration: 30 * time.Minute, State: ajar.StatePending, CreatedAt: testTime, UpdatedAt: testTime,
	}
	f.requests[r.ID] = r
	c := *r
	return &c, nil
}

func (f *fakeCore) GetRequest(ctx context.Context, u ajar.User, id string) (*ajar.Request, error) {
	if err := f.called("GetRequest"); err != nil {
		return nil, err
	}
	return f.get(id)
}

// ListRequests returns r1; when paged is set, on a first page followed by a
// second one (cursor "page2") holding a copy of r1 named r0.
func (f *fakeCore) ListRequests(ctx context.Context, u ajar.User, in readmodel.ListInput) (*readmodel.RequestList, error) {
	if err := f.called("ListRequests"); err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.list = in
	paged := f.paged
	f.mu.Unlock()
	r, _ := f.get("r1")
	switch {
	case !paged:
		return &readmodel.RequestList{Requests: []*ajar.Request{r}}, nil
	case in.Cursor == "":
		return &readmodel.RequestList{Requests: []*ajar.Request{r}, NextCursor: "page2"}, nil
	case in.Cursor == "page2":
		r0 := *r
		r0.ID = "r0"
		return &readmodel.RequestList{Requests: []*ajar.Request{&r0}}, nil
	}
	return nil, ajar.FieldErrorf("cursor", "is not a cursor this server returned")
}

func (f *fakeCore) decide(name, id string, state ajar.State) (*ajar.Request, error) {
	if err := f.called(name); err != nil {
		return nil, err
	}
	r, err := f.get(id)
	if err != nil {
		return nil, err
	}
	r.State = state
	return r, nil
}

func (f *fakeCore) Approve(ctx context.Context, u ajar.User, id, comment string) (*ajar.Request, error) {
	f.mu.Lock()
	f.comment = comment
	f.mu.Unlock()
	return f.decide("Approve", id, ajar.StateApproved)
}

func (f *fakeCore) Deny(ctx context.Context, u ajar.User, id, reason string) (*ajar.Request, error) {
	f.mu.Lock()
	f.reason = reason
	f.mu.Unlock()
	return f.decide("Deny", id, ajar.StateDenied)
}

func (f *fakeCore) Revoke(ctx context.Context, u ajar.User, id string) (*ajar.Request, error) {
	return f.decide("Revoke", id, ajar.StateRevoking)
}

func (f *fakeCore) Cancel(ctx context.Context, u ajar.User, id string) (*ajar.Request, error) {
	return f.decide("Cancel", id, ajar.StateCancelled)
}

func (f *fakeCore) IssueSSHCert(ctx context.Context, u ajar.User, id string, publicKey []byte) (*ajar.SSHCertOutput, error) {
	if err := f.called("IssueSSHCert"); err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.pubKey = string(publicKey)
	f.mu.Unlock()
	return &ajar.SSHCertOutput{
		Certificate: "ssh-ed25519-cert-v01@openssh.com AAAAFakeCert alice",
		Info: ajar.SSHCert{Serial: 7, RequestID: id, KeyID: "alice@example.com/" + id,
			Principals: []string{"ubuntu"}, ValidBefore: testTime.Add(30 * time.Minute)},
	}, nil
}

func (f *fakeCore) SSHCA(ctx context.Context) (string, error) {
	if err := f.called("SSHCA"); err != nil {
		return "", err
	}
	return "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeCA ajar-ca", nil
}

func (f *fakeCore) Audit(ctx context.Context, u ajar.User, flt ajar.AuditFilter) ([]ajar.AuditEvent, error) {
	if err := f.called("Audit"); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.filters = append(f.filters, flt)
	limit := flt.Limit
	if limit == 0 || limit > 1000 {
		limit = 1000
	}
	out := []ajar.AuditEvent{}
	for _, e := range f.events {
		if e.Seq > flt.AfterSeq && (flt.Subject == "" || e.Subject == flt.Subject) && len(out) < limit {
			out = append(out, e)
		}
	}
	return out, nil
}

// SearchAudit answers newest first from the events before q.Before, of
// q.Request and q.Action when set (an action prefix ends in a dot); it records q.
func (f *fakeCore) SearchAudit(ctx context.Context, u ajar.User, q readmodel.AuditQuery) (*readmodel.AuditSearch, error) {
	if err := f.called("SearchAudit"); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.searches = append(f.searches, q)
	limit := q.Limit
	if limit == 0 {
		limit = readmodel.DefaultAuditSearchLimit
	}
	res := &readmodel.AuditSearch{Records: []readmodel.AuditRecord{}}
	for i := len(f.events) - 1; i >= 0; i-- {
		e := f.events[i]
		if q.Before > 0 && e.Seq >= q.Before || q.Request != "" && e.Subject != q.Request ||
			q.Action != "" && e.Action != q.Action && !(strings.HasSuffix(q.Action, ".") && strings.HasPrefix(e.Action, q.Action)) {
			continue
		}
		if len(res.Records) == limit {
			res.More, res.Before = true, res.Records[limit-1].Seq
			break
		}
		res.Records = append(res.Records, readmodel.AuditRecord{AuditEvent: e})
	}
	return res, nil
}

func (f *fakeCore) Checkpoint(ctx context.Context, u ajar.User) ([]byte, error) {
	return nil, ajar.Errorf(ajar.EFORBIDDEN, "admins only")
}

func (f *fakeCore) AuditKey() string { return "ajar+1234abcd+AFakeKey" }

func (f *fakeCore) WhoAmI(ctx context.Context, u ajar.User) (ajar.Caller, error) {
	if err := f.called("WhoAmI"); err != nil {
		return ajar.Caller{}, err
	}
	return ajar.Caller{User: u}, nil
}

// fakeIDs is the fake's api.Identity: the fake core's tokens authenticate;
// the rest is tested against a real server (e2e/sessions_test.go).
type fakeIDs struct {
	auth interface {
		Authenticate(ctx context.Context, token string) (ajar.User, error)
	}
}

func idsOf(core api.Core) fakeIDs {
	return fakeIDs{core.(interface {
		Authenticate(ctx context.Context, token string) (ajar.User, error)
	})}
}

func (f fakeIDs) Authenticate(ctx context.Context, token string) (ajar.User, error) {
	return f.auth.Authenticate(ctx, token)
}

func (f fakeIDs) CreateToken(ctx context.Context, actor ajar.User, userID, name string, ttl time.Duration) (string, *ajar.Session, error) {
	return "", nil, ajar.Errorf(ajar.EFORBIDDEN, "fake")
}

func (f fakeIDs) List(ctx context.Context, actor ajar.User, sf ajar.SessionFilter) ([]*ajar.Session, error) {
	return nil, ajar.Errorf(ajar.EFORBIDDEN, "fake")
}

func (f fakeIDs) Revoke(ctx context.Context, actor ajar.User, id string) error {
	return ajar.Errorf(ajar.EFORBIDDEN, "fake")
}

func (f fakeIDs) Logout(ctx context.Context, u ajar.User) error {
	return ajar.Errorf(ajar.EINVALID, "fake")
}

func (f fakeIDs) Current(ctx context.Context, u ajar.User) (*ajar.Session, error) {
	return nil, ajar.Errorf(ajar.ENOTFOUND, "fake")
}
