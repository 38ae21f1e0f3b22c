package ajar

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestDBLoginHidesPassword(t *testing.T) {
	l := DBLogin{User: "ajar_req_x", Password: "s3cret-pw", Host: "db", Port: 5432, Database: "app",
		DSN: "postgres://ajar_req_x@db:5432/app", ExpiresAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	var logged bytes.Buffer
	slog.New(slog.NewTextHandler(&logged, nil)).Info("issued", "login", l)
	for _, s := range []string{l.String(), fmt.Sprint(l), fmt.Sprintf("%v", l), logged.String()} {
		if strings.Contains(s, l.Password) {
			t.Errorf("the password shows: %s", s)
		}
		if !strings.Contains(s, "ajar_req_x") {
			t.Errorf("the user does not show: %s", s)
		}
	}
}
