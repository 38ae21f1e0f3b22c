package throttle

import (
	"fmt"
	"testing"
	"time"
)

func TestFirst(t *testing.T) {
	var l Throttle
	now := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	if !l.First("a", now) || l.First("a", now.Add(59*time.Second)) || !l.First("b", now) {
		t.Fatal("within the window")
	}
	if !l.First("a", now.Add(time.Minute)) {
		t.Fatal("after the window")
	}
	for i := range maxKeys {
		l.First(fmt.Sprint(i), now)
	}
	l.First("late", now.Add(2*time.Minute))
	if n := len(l.last); n != 1 { // only "late": every other key is a window old
		t.Fatalf("%d keys kept, want 1", n)
	}
}
