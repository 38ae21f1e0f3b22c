package web_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestPagesEscapeFreeText checks the web medium: a reason holding HTML is
// shown as text on the request page and in the approver's inbox (the
// templates are html/template), a multi-line reason typed in the form (the
// browser sends CR LF) is accepted, and one holding a terminal escape is
// refused next to the field.
func TestPagesEscapeFreeText(t *testing.T) {
	s := startServer(t)
	evil := `<script>alert(1)</script><img src=x onerror=alert(2)> "quoted" 'single' & more`
	r := s.createRequest(t, "alice", "30m", evil)
	bob := newClient(t, s.URL)
	bob.signIn(s.tokens["bob"])
	for _, path := range []string{"/requests/" + r.ID, "/inbox"} {
		page := bob.get(path)
		if page.Status != http.StatusOK {
			t.Fatalf("%s: %d", path, page.Status)
		}
		if strings.Contains(page.Body, "<script>alert") || strings.Contains(page.Body, "<img src=x") {
			t.Errorf("%s carries the reason's HTML raw:\n%s", path, page.Body)
		}
		if !strings.Contains(page.Body, "&lt;script&gt;alert(1)&lt;/script&gt;") {
			t.Errorf("%s does not show the reason as text:\n%s", path, page.Body)
		}
	}

	c := newClient(t, s.URL)
	token := c.signIn(s.tokens["alice"])
	form := url.Values{"csrf": {token}, "duration": {"30m"}, "param.source_ip": {"127.0.0.1"}}
	form.Set("reason", "line one\r\nline two")
	if resp := c.post("/request/demo-ssh", form); resp.Status != http.StatusSeeOther {
		t.Errorf("a multi-line reason from the form: %d\n%s", resp.Status, resp.Body)
	}
	form.Set("reason", "fix \x1b[2J now")
	resp := c.post("/request/demo-ssh", form)
	if resp.Status != http.StatusBadRequest || !strings.Contains(resp.Body, `id="f-reason-error"`) || !strings.Contains(resp.Body, "control character") {
		t.Errorf("a reason with a terminal escape from the form: %d\n%s", resp.Status, resp.Body)
	}
}
