package web_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// rowsOf returns the ids of the rows of the inbox table, top to bottom.
func rowsOf(tb *tab) []string {
	tb.t.Helper()
	return eval[[]string](tb, `Array.from(document.querySelectorAll("#inbox table tbody tr")).map(r => r.id.replace(/^req-/, ""))`)
}

// count is the count on "Inbox" in the navigation, as a screen reader reads it.
func count(tb *tab) string {
	tb.t.Helper()
	return eval[string](tb, `(document.getElementById("nav-waiting") || {textContent: ""}).textContent.trim()`)
}

// TestBrowserListsDesktopAndPhone: an approver who signs in with something
// waiting lands on the inbox, the navigation counts what waits, the inbox is
// a table with approve and deny in each row on a desktop and one card per
// request on a phone, and its columns sort on the server (without script).
func TestBrowserListsDesktopAndPhone(t *testing.T) {
	s := startServer(t)
	short := s.createRequest(t, "alice", "30m", "b: rotate the keys")
	long := s.createRequest(t, "alice", "45m", "a: debug the queue")

	// alice approves nothing: she lands on "My access", with no count.
	alice := s.newTab(t, true)
	alice.signIn(s.tokens["alice"])
	if p := alice.path(); p != "/access" {
		t.Errorf("alice (no approver) landed on %s, want /access", p)
	}
	if got := count(alice); got != "" {
		t.Errorf("alice's inbox count: %q, want none", got)
	}
	// Her request's page names who can approve it.
	alice.open("/requests/" + short.ID)
	if got := alice.text("dl.facts"); !strings.Contains(got, "Can approve\nbob@example.com") {
		t.Errorf("alice's request page does not name its approvers: %q", got)
	}

	// bob approves alice's requests: he lands on the inbox, counted 2.
	bob := s.newTab(t, false)
	bob.signIn(s.tokens["bob"])
	if p := bob.path(); p != "/inbox" {
		t.Errorf("bob (2 waiting) landed on %s, want /inbox", p)
		bob.open("/inbox")
	}
	if got := count(bob); got != "2 waiting for you" {
		t.Errorf("bob's inbox count: %q, want 2", got)
	}

	// Desktop: one table, a row per request, approve and deny in the row.
	bob.do(chromedp.EmulateViewport(1280, 800))
	for _, id := range []string{short.ID, long.ID} {
		row := fmt.Sprintf("document.getElementById(%q)", "req-"+id)
		if got := eval[string](bob, row+".tagName + ' ' + getComputedStyle("+row+").display"); got != "TR table-row" {
			t.Errorf("desktop: request %s is a %q, want a table row", id, got)
		}
		for _, action := range []string{"approve", "deny"} {
			in := eval[bool](bob, fmt.Sprintf(`!!document.querySelector('tr#req-%s td form[action="/requests/%s/%s"] button')`, id, id, action))
			if !in {
				t.Errorf("desktop: no %s button in the row of %s", action, id)
			}
		}
	}
	if n := eval[int](bob, `document.querySelectorAll("#inbox table").length`); n != 1 {
		t.Errorf("desktop: %d tables in the inbox, want 1", n)
	}
	if top := eval[float64](bob, fmt.Sprintf(`document.getElementById("req-%s").getBoundingClientRect().top - document.getElementById("req-%s").getBoundingClientRect().top`, long.ID, short.ID)); top <= 0 || top > 200 {
		t.Errorf("desktop: rows %vpx apart, want dense rows one under the other", top)
	}

	// Phone: each request is a card as wide as the screen, its approve
	// button on screen, the column headings hidden.
	bob.do(chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile))
	for _, id := range []string{short.ID, long.ID} {
		row := fmt.Sprintf("document.getElementById(%q)", "req-"+id)
		if got := eval[string](bob, "getComputedStyle("+row+").display"); got != "block" {
			t.Errorf("phone: request %s displays as %q, want a block (a card)", id, got)
		}
		if w := eval[float64](bob, row+".getBoundingClientRect().width"); w < 300 || w > 390 {
			t.Errorf("phone: card of %s is %vpx wide", id, w)
		}
		right := eval[float64](bob, fmt.Sprintf(`document.querySelector('form[action="/requests/%s/approve"] button').getBoundingClientRect().right`, id))
		if right > 390 {
			t.Errorf("phone: the approve button of %s ends at %vpx, off the screen", id, right)
		}
	}
	if left := eval[float64](bob, `document.querySelector("#inbox thead").getBoundingClientRect().right`); left > 0 {
		t.Errorf("phone: the column headings are on screen")
	}
	bob.do(chromedp.EmulateViewport(1280, 800))

	// Sorting: longest waiting first by default; by reason when its heading
	// is followed (a link: no script runs in this tab), and back.
	if got, want := rowsOf(bob), []string{short.ID, long.ID}; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("default order %v, want %v (longest waiting first)", got, want)
	}
	click := func(label string) {
		t.Helper()
		bob.do(chromedp.Click(chromedp.CSS(fmt.Sprintf(`#inbox th a[href="/inbox?sort=%s"]`, label)), chromedp.NodeVisible))
		bob.waitUntil(fmt.Sprintf(`location.search === "?sort=%s" && document.readyState === "complete"`, label))
	}
	click("reason")
	if got, want := rowsOf(bob), []string{long.ID, short.ID}; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("by reason %v, want %v", got, want)
	}
	if got := eval[string](bob, `document.querySelector('#inbox th[aria-sort]').innerText`); !strings.HasPrefix(got, "Reason") {
		t.Errorf("the sorted column is %q, want Reason", got)
	}
	click("-reason")
	if got, want := rowsOf(bob), []string{short.ID, long.ID}; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("by reason, descending %v, want %v", got, want)
	}
	click("duration")
	if got, want := rowsOf(bob), []string{short.ID, long.ID}; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("by duration %v, want %v", got, want)
	}
	click("-duration")
	if got, want := rowsOf(bob), []string{long.ID, short.ID}; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("by duration, descending %v, want %v", got, want)
	}

	// With script, a heading sorts the list in place: no page load.
	carol := s.newTab(t, true)
	carol.signIn(s.tokens["bob"])
	carol.open("/inbox")
	eval[int](carol, `window.stayed = 1`)
	carol.do(chromedp.Click(chromedp.CSS(`#inbox th a[href="/inbox?sort=-waiting"]`), chromedp.NodeVisible))
	carol.waitUntil(`location.search === "?sort=-waiting"`)
	if got, want := rowsOf(carol), []string{long.ID, short.ID}; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("sorted in place, newest first: %v, want %v", got, want)
	}
	if !eval[bool](carol, `window.stayed === 1`) {
		t.Error("sorting with script loaded a new page")
	}
	if got := eval[string](carol, `document.activeElement.getAttribute("data-key")`); got != "waiting" {
		t.Errorf("after sorting the focus is on %q, want the Waiting heading", got)
	}
	// The list goes on refreshing itself, the focus kept on the heading.
	was := eval[string](carol, `document.getElementById("inbox").getAttribute("data-refreshed") || ""`)
	carol.waitUntil(fmt.Sprintf(`(document.getElementById("inbox").getAttribute("data-refreshed") || "") !== %q`, was))
	if got := eval[string](carol, `document.activeElement.getAttribute("data-key")`); got != "waiting" {
		t.Errorf("after a refresh the focus is on %q, want the Waiting heading", got)
	}
	if got, want := rowsOf(carol), []string{long.ID, short.ID}; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("refreshed: %v, want %v (still newest first)", got, want)
	}

	// Approving in the row: the count goes down to 1 and the sort stays.
	if status := bob.submit(fmt.Sprintf(`form[action="/requests/%s/approve"] button`, long.ID)); status != 200 {
		t.Fatalf("approve: status %d", status)
	}
	if got := count(bob); got != "1 waiting for you" {
		t.Errorf("after approving one, bob's count: %q, want 1", got)
	}
	if got := rowsOf(bob); len(got) != 1 || got[0] != short.ID {
		t.Errorf("after approving %s the inbox has %v", long.ID, got)
	}
	if got := eval[string](bob, `location.pathname + location.search`); got != "/inbox?sort=-duration" {
		t.Errorf("after approving bob is on %s, want the inbox sorted as before", got)
	}
}
