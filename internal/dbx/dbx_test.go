package dbx

import "testing"

func TestLoginName(t *testing.T) {
	if n, err := LoginName("req_ABC123"); err != nil || n != "ajar_req_abc123" {
		t.Fatalf("LoginName = %q, %v", n, err)
	}
	for _, bad := range []string{"", "req-1", "req_1'; DROP ROLE x; --", "req 1", "req_0123456789012345678901234567890123456789"} {
		if _, err := LoginName(bad); err == nil {
			t.Errorf("LoginName(%q) is accepted", bad)
		}
	}
	if p, q := Password(), Password(); len(p) != 43 || p == q {
		t.Fatalf("passwords %q, %q", p, q)
	}
}
