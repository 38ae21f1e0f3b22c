package web

import (
	"testing"
	"time"
)

// TestCSRFForSecret checks that the CSRF token is derived from the session's
// secret: stable for one session, different for another, and not the secret.
func TestCSRFForSecret(t *testing.T) {
	a, b := randomToken(), randomToken()
	again := string([]byte(a)) // the same secret, another string
	if csrfFor(a) != csrfFor(again) || csrfFor(a) == csrfFor(b) || csrfFor(a) == a || len(csrfFor(a)) < 40 {
		t.Fatalf("csrfFor(%q) = %q, csrfFor(%q) = %q", a, csrfFor(a), b, csrfFor(b))
	}
}

func TestLocalPath(t *testing.T) {
	for in, want := range map[string]string{
		"/inbox":                 "/inbox",
		"/requests/req_1?x=1":    "/requests/req_1?x=1",
		"":                       "/def",
		"inbox":                  "/def",
		"//evil.example/":        "/def",
		"/\\evil.example":        "/def",
		"https://evil.example/":  "/def",
		"/ok\r\nSet-Cookie: x=1": "/def",
	} {
		if got := localPath(in, "/def"); got != want {
			t.Errorf("localPath(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestHuman(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "0s", 12 * time.Second: "12s", 250 * time.Second: "4m 10s",
		65 * time.Minute: "1h 05m", 50 * time.Hour: "2d 2h", -90 * time.Second: "-1m 30s",
	} {
		if got := human(d); got != want {
			t.Errorf("human(%s) = %q, want %q", d, got, want)
		}
	}
	for in, want := range map[string]string{"1h0m0s": "1h", "15m0s": "15m", "1h30m0s": "1h30m", "5s": "5s", "x": "x"} {
		if got := shortDuration(in); got != want {
			t.Errorf("shortDuration(%q) = %q, want %q", in, got, want)
		}
	}
}
