package main

import (
	"strings"
	"testing"
	"time"
)

func TestParseStart(t *testing.T) {
	loc := time.FixedZone("X", 2*3600)
	now := time.Date(2026, 3, 1, 10, 30, 20, 0, loc)
	tests := []struct {
		in   string
		want time.Time
		err  string
	}{
		{"2026-03-02T08:00:00Z", time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC), ""},
		{"11:15", time.Date(2026, 3, 1, 11, 15, 0, 0, loc), ""}, // later today, local time
		{"10:30", time.Date(2026, 3, 1, 10, 30, 0, 0, loc), ""}, // this minute
		{"09:00", time.Date(2026, 3, 2, 9, 0, 0, 0, loc), ""},   // passed: tomorrow
		{"25:00", time.Time{}, "HH:MM local time"},
		{"tomorrow", time.Time{}, "(field: --start)"},
	}
	for _, tc := range tests {
		got, err := parseStart(tc.in, now)
		if tc.err != "" {
			if err == nil || !strings.Contains(describeError(nil, err), tc.err) {
				t.Errorf("parseStart(%q) = %v, %v; want an error with %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || !got.Equal(tc.want) {
			t.Errorf("parseStart(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

// TestWorkflowUsageErrors: the workflow commands refuse bad flags before
// sending anything.
func TestWorkflowUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"extend", "r1"}, "--by"},
		{[]string{"extend", "r1", "--by", "soon"}, "--by"},
		{[]string{"breakglass", "prod-web", "--for", "30m"}, "--reason"},
		{[]string{"review", "r1"}, "--comment"},
		{[]string{"reviews", "--state", "pending"}, "--state"},
		{[]string{"evidence", "r1", "-o", "table"}, "markdown"},
		{[]string{"explain"}, "TARGET"},
	} {
		r := runRaw(t, tc.args...)
		r.want(t, exitUsage, tc.want)
	}
}
