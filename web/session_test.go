package web

import (
	"testing"
	"time"
)

func TestSessionsExpireAndEvict(t *testing.T) {
	now := time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC)
	s := newSessions(time.Hour, 3*time.Hour, 2)
	a := s.create(tokenCredential{"a"}, now)
	if a.id == a.csrf || len(a.id) < 40 {
		t.Fatalf("session id %q, csrf %q: want two distinct random tokens", a.id, a.csrf)
	}
	if s.get(a.id, now.Add(59*time.Minute)) != a {
		t.Fatal("a session used within the idle time ended")
	}
	// Used every 59 minutes it still ends 3h after sign-in.
	for at := 118 * time.Minute; at < 3*time.Hour; at += 59 * time.Minute {
		if s.get(a.id, now.Add(at)) != a {
			t.Fatalf("session ended at %s", at)
		}
	}
	if s.get(a.id, now.Add(3*time.Hour+time.Minute)) != nil {
		t.Error("a session outlived SessionMax")
	}
	b := s.create(tokenCredential{"b"}, now)
	if s.get(b.id, now.Add(61*time.Minute)) != nil {
		t.Error("an idle session did not end")
	}

	// Past the limit, the least recently used session goes.
	c := s.create(tokenCredential{"c"}, now)
	d := s.create(tokenCredential{"d"}, now)
	s.get(c.id, now.Add(time.Minute))
	e := s.create(tokenCredential{"e"}, now.Add(2*time.Minute))
	if s.get(d.id, now.Add(3*time.Minute)) != nil || s.get(c.id, now.Add(3*time.Minute)) != c || s.get(e.id, now.Add(3*time.Minute)) != e {
		t.Error("eviction did not drop the least recently used session")
	}
	s.drop(c.id)
	if s.get(c.id, now.Add(3*time.Minute)) != nil {
		t.Error("a dropped session still works")
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
