package dbx

import "testing"

func TestLoginName(t *testing.T) {
	if n, err := LoginNameFor(DefaultTemplate, "req_ABC123", "a@b", 63); err != nil || n != "ajar_req_abc123" {
		t.Fatalf("LoginName = %q, %v", n, err)
	}
	for _, bad := range []string{"", "req-1", "req_1'; DROP ROLE x; --", "req 1", "req_0123456789012345678901234567890123456789"} {
		if _, err := LoginNameFor(DefaultTemplate, bad, "a@b", 63); err == nil {
			t.Errorf("LoginName(%q) is accepted", bad)
		}
	}
	if p, q := Password(), Password(); len(p) != 43 || p == q {
		t.Fatalf("passwords %q, %q", p, q)
	}
}

func TestTemplates(t *testing.T) {
	for tmpl, want := range map[string]string{
		"ajar_{request}": "", "ajar_{local}_{request}": "", "x_{request}": "must start with ajar_",
		"ajar_{local}": "must contain {request}", "ajar_{user}_{request}": "may hold only a-z, 0-9, _, {request} and {local}",
		"ajar_A{request}": "may hold only a-z, 0-9, _, {request} and {local}",
	} {
		if got := CheckTemplate(tmpl); got != want {
			t.Errorf("CheckTemplate(%q) = %q, want %q", tmpl, got, want)
		}
	}
	n, err := LoginNameFor("ajar_{local}_{request}", "req_abc", "Jean-Luc.Picard+ops@example.com", 63)
	if err != nil || n != "ajar_jean_luc_picard_req_abc" {
		t.Fatalf("LoginNameFor = %q, %v", n, err)
	}
	if _, err := LoginNameFor("ajar_{local}_{request}", "req_abc", "a@b", 10); err == nil {
		t.Fatal("a name over the limit is accepted")
	}
}
