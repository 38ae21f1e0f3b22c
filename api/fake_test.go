package api

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/readmodel"
)

// fakeCore is a hand-written Core for handler tests: it records the inputs it was
// given and answers from a map. The real broker is tested end to end elsewhere.
type fakeCore struct {
	mu sync.Mutex

	tokens   map[string]ajar.User // token -> user
	authErr  error                // if set, Authenticate returns it for every token
	err      error                // if set, every method after Authenticate returns it
	requests map[string]*ajar.Request
	events   []ajar.AuditEvent
	ca       string
	auditKey string

	// What the last call received.
	user      ajar.User
	create    ajar.CreateInput
	list      readmodel.ListInput
	filter    ajar.AuditFilter
	search    readmodel.AuditQuery
	comment   string
	reason    string
	publicKey string
	calls     []string
}

var testTime = time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC)

func newFakeCore() *fakeCore {
	exp := testTime.Add(30 * time.Minute)
	return &fakeCore{
		tokens: map[string]ajar.User{
			"alice-token": {ID: "alice@example.com", Groups: []string{"engineers"}},
			"bob-token":   {ID: "bob@example.com", Groups: []string{"sre"}},
		},
		requests: map[string]*ajar.Request{
			"r1": {
				ID: "r1", Target: "prod-web", Requester: "alice@example.com", Reason: "deploy",
				Duration: 30 * time.Minute, Policy: "engineers-prod", State: ajar.StateActive,
				CreatedAt: testTime, UpdatedAt: testTime, ExpiresAt: &exp,
			},
		},
		ca:       "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeFakeFake ajar-ca",
		auditKey: "ajar+1234abcd+AFakeKey",
	}
}

func (f *fakeCore) called(name string, u ajar.User) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, name)
	f.user = u
	return f.err
}

func (f *fakeCore) lookup(id string) (*ajar.Request, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.requests[id]
	if !ok {
		return nil, ajar.Errorf(ajar.ENOTFOUND, "request %s not found", id)
	}
	c := *r
	return &c, nil
}

func (f *fakeCore) Authenticate(ctx context.Context, token string) (ajar.User, error) {
	if f.authErr != nil {
		return ajar.User{}, f.authErr
	}
	u, ok := f.tokens[token]
	if !ok {
		return ajar.User{}, ajar.Errorf(ajar.EUNAUTH, "unknown token")
	}
	return u, nil
}

func (f *fakeCore) Targets(ctx context.Context, u ajar.User) ([]readmodel.TargetInfo, error) {
	if err := f.called("Targets", u); err != nil {
		return nil, err
	}
	return []readmodel.TargetInfo{{
		Name: "prod-web", Provider: "ssh-cert", Policy: "engineers-prod",
		DefaultDuration: "30m", MaxDuration: "2h", ApprovalTimeout: "30m",
		Steps: []readmodel.StepInfo{{Approvers: []string{"group:sre"}, Count: 1}},
	}}, nil
}

func (f *fakeCore) CreateRequest(ctx context.Context, u ajar.User, in ajar.CreateInput) (*ajar.Request, error) {
	if err := f.called("CreateRequest", u); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.create = in
	r := &ajar.Request{
		ID: fmt.Sprintf("r%d", len(f.requests)+1), Target: in.Target, Requester: u.ID,
		Reason: in.Reason, Ticket: in.Ticket, Params: in.Params, StartAt: in.Start,
		State: ajar.StatePending, CreatedAt: testTime, UpdatedAt: testTime,
	}
	f.requests[r.ID] = r
	c := *r
	return &c, nil
}

func (f *fakeCore) GetRequest(ctx context.Context, u ajar.User, id string) (*ajar.Request, error) {
	if err := f.called("GetRequest", u); err != nil {
		return nil, err
	}
	return f.lookup(id)
}

// ListRequests returns r1; with limit 1 and no cursor, a next page after it.
func (f *fakeCore) ListRequests(ctx context.Context, u ajar.User, in readmodel.ListInput) (*readmodel.RequestList, error) {
	if err := f.called("ListRequests", u); err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.list = in
	f.mu.Unlock()
	r, _ := f.lookup("r1")
	out := &readmodel.RequestList{Requests: []*ajar.Request{r}}
	if in.Limit == 1 && in.Cursor == "" {
		out.NextCursor = "r1.next"
	}
	return out, nil
}

func (f *fakeCore) decide(name string, u ajar.User, id string, state ajar.State) (*ajar.Request, error) {
	if err := f.called(name, u); err != nil {
		return nil, err
	}
	r, err := f.lookup(id)
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
	return f.decide("Approve", u, id, ajar.StateApproved)
}

func (f *fakeCore) Deny(ctx context.Context, u ajar.User, id, reason string) (*ajar.Request, error) {
	f.mu.Lock()
	f.reason = reason
	f.mu.Unlock()
	return f.decide("Deny", u, id, ajar.StateDenied)
}

func (f *fakeCore) Revoke(ctx context.Context, u ajar.User, id string) (*ajar.Request, error) {
	return f.decide("Revoke", u, id, ajar.StateRevoking)
}

func (f *fakeCore) Cancel(ctx context.Context, u ajar.User, id string) (*ajar.Request, error) {
	return f.decide("Cancel", u, id, ajar.StateCancelled)
}

func (f *fakeCore) IssueSSHCert(ctx context.Context, u ajar.User, id string, publicKey []byte) (*ajar.SSHCertOutput, error) {
	if err := f.called("IssueSSHCert", u); err != nil {
		return nil, err
	}
	if _, err := f.lookup(id); err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.publicKey = string(publicKey)
	f.mu.Unlock()
	return &ajar.SSHCertOutput{
		Certificate: "ssh-ed25519-cert-v01@openssh.com AAAAFakeCert",
		Info:        ajar.SSHCert{Serial: 7, RequestID: id, KeyID: "alice@example.com/" + id, Principals: []string{"ubuntu"}},
	}, nil
}

func (f *fakeCore) SSHCA(ctx context.Context) (string, error) {
	if err := f.called("SSHCA", ajar.User{}); err != nil {
		return "", err
	}
	return f.ca, nil
}

func (f *fakeCore) Audit(ctx context.Context, u ajar.User, flt ajar.AuditFilter) ([]ajar.AuditEvent, error) {
	if err := f.called("Audit", u); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.filter = flt
	limit := flt.Limit
	if limit == 0 {
		limit = 1000
	}
	var out []ajar.AuditEvent
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
	if err := f.called("SearchAudit", u); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.search = q
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
	if err := f.called("Checkpoint", u); err != nil {
		return nil, err
	}
	return []byte("ajar.example/audit\n3\nAAAA\n\n— ajar+1234abcd SIGSIG\n"), nil
}

func (f *fakeCore) AuditKey() string { return f.auditKey }

func (f *fakeCore) WhoAmI(ctx context.Context, u ajar.User) (ajar.Caller, error) {
	if err := f.called("WhoAmI", u); err != nil {
		return ajar.Caller{}, err
	}
	return ajar.Caller{User: u}, nil
}

// fakeIDs is the fake's Identity: fakeCore's tokens authenticate; handler
// tests of tokens and sessions use a real identity.Service (sessions_test.go).
type fakeIDs struct{ auth authenticator }

type authenticator interface {
	Authenticate(ctx context.Context, token string) (ajar.User, error)
}

// idsOf returns the fake Identity of a fake core.
func idsOf(core Core) fakeIDs { return fakeIDs{core.(authenticator)} }

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
