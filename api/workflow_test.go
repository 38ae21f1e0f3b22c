package api

import (
	"context"
	"net/http"
	"slices"
	"testing"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/policy"
	"github.com/ajar-dev/ajar/readmodel"
)

// workflowFake adds WorkflowCore to the fake core.
type workflowFake struct {
	*fakeCore
	explained readmodel.ExplainInput
}

func (f *workflowFake) Extend(ctx context.Context, u ajar.User, id string, in ajar.ExtendInput) (*ajar.ExtendOutput, error) {
	return nil, ajar.FieldErrorf("by", "too long")
}

func (f *workflowFake) Breakglass(ctx context.Context, u ajar.User, in ajar.CreateInput) (*ajar.Request, error) {
	return &ajar.Request{ID: "req_bg", State: ajar.StateActive}, nil
}

// ListReviews has none, but with a cursor to a second page (also empty) when
// the limit is 1.
func (f *workflowFake) ListReviews(ctx context.Context, u ajar.User, in readmodel.ReviewsInput) (*readmodel.ReviewList, error) {
	if in.Limit == 1 && in.Cursor == "" {
		return &readmodel.ReviewList{NextCursor: "v1.next"}, nil
	}
	return &readmodel.ReviewList{}, nil
}

func (f *workflowFake) CloseReview(ctx context.Context, u ajar.User, id, comment string) (*ajar.ReviewTask, error) {
	return &ajar.ReviewTask{RequestID: id, Comment: comment}, nil
}

func (f *workflowFake) Explain(ctx context.Context, u ajar.User, in readmodel.ExplainInput) (*policy.Explanation, error) {
	f.explained = in
	return &policy.Explanation{Target: in.Target, User: u.ID, Outcome: policy.OutcomeNeedsApproval}, nil
}

func (f *workflowFake) EvidenceReport(ctx context.Context, u ajar.User, id string) (*readmodel.Evidence, error) {
	return &readmodel.Evidence{Request: &ajar.Request{ID: id}}, nil
}

func TestWorkflowRoutes(t *testing.T) {
	f := &workflowFake{fakeCore: newFakeCore()}
	srv, _ := newTestServer(t, f)
	h := srv.Handler()

	w := call(t, h, "POST", "/v1/requests?dry_run=true&as=bob@example.com", "alice-token", `{"target":"web","duration":"1h"}`)
	if w.Code != http.StatusOK || f.explained.Target != "web" || f.explained.As != "bob@example.com" || f.explained.Duration != "1h" {
		t.Fatalf("dry run: %d %s, explained %+v", w.Code, w.Body, f.explained)
	}
	f.mu.Lock()
	if slices.Contains(f.calls, "CreateRequest") {
		t.Errorf("the dry run created a request: %v", f.calls)
	}
	f.mu.Unlock()
	wantError(t, call(t, h, "POST", "/v1/requests?dry_run=false", "alice-token", `{}`), 400, ajar.EINVALID, "dry_run")
	wantError(t, call(t, h, "POST", "/v1/requests?dryrun=true", "alice-token", `{}`), 400, ajar.EINVALID, "dryrun")
	wantError(t, call(t, h, "POST", "/v1/requests?dry_run=true", "alice-token", `{"as":"x"}`), 400, ajar.EINVALID, "as")
	wantError(t, call(t, h, "POST", "/v1/requests/r1/extend", "alice-token", `{"by":"9h"}`), 400, ajar.EINVALID, "by")
	wantError(t, call(t, h, "GET", "/v1/requests/r1/evidence?format=pdf", "alice-token", ""), 400, ajar.EINVALID, "format")
	if w := call(t, h, "POST", "/v1/breakglass", "bob-token", `{"target":"web","reason":"x"}`); w.Code != http.StatusCreated || w.Header().Get("Location") != "/v1/requests/req_bg" {
		t.Errorf("breakglass: %d %v", w.Code, w.Header())
	}
	if w := call(t, h, "GET", "/v1/reviews", "bob-token", ""); w.Code != 200 || w.Body.String() != "{\"reviews\":[]}\n" {
		t.Errorf("reviews: %d %s", w.Code, w.Body)
	}
	if w := call(t, h, "GET", "/v1/reviews?limit=1", "bob-token", ""); w.Code != 200 || w.Body.String() != "{\"reviews\":[],\"next_cursor\":\"v1.next\"}\n" {
		t.Errorf("reviews page: %d %s", w.Code, w.Body)
	}
	for _, q := range []string{"limit=1001", "cursor=%01", "page=2"} {
		if w := call(t, h, "GET", "/v1/reviews?"+q, "bob-token", ""); w.Code != 400 {
			t.Errorf("reviews?%s: %d %s", q, w.Code, w.Body)
		}
	}
	if w := call(t, h, "GET", "/v1/requests/r1/evidence?format=markdown", "bob-token", ""); w.Code != 200 || w.Header().Get("Content-Type") != "text/markdown; charset=utf-8" {
		t.Errorf("markdown evidence: %d %v", w.Code, w.Header())
	}

	// A core without the workflows has no such routes.
	plain, _ := newTestServer(t, newFakeCore())
	wantError(t, call(t, plain.Handler(), "POST", "/v1/requests?dry_run=true", "alice-token", `{}`), 404, ajar.ENOTFOUND, "")
	wantError(t, call(t, plain.Handler(), "GET", "/v1/reviews", "alice-token", ""), 404, ajar.ENOTFOUND, "")
}
