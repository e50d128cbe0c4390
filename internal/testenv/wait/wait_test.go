package wait

import (
	"testing"
	"time"
)

func TestPollHoldsOnceCondHolds(t *testing.T) {
	n := 0
	if !Poll(5*time.Second, func() bool { n++; return n == 3 }) {
		t.Fatal("Poll gave up on a condition that held on the third call")
	}
	if n != 3 {
		t.Fatalf("cond called %d times after it held on the third, want 3", n)
	}
}

func TestPollGivesUpAtTheDeadline(t *testing.T) {
	start := time.Now()
	calls := 0
	if Poll(200*time.Millisecond, func() bool { calls++; return false }) {
		t.Fatal("Poll reported a condition that never held")
	}
	if waited := time.Since(start); waited < 200*time.Millisecond {
		t.Fatalf("Poll gave up after %v, before its 200ms deadline", waited)
	}
	if calls < 2 {
		t.Fatalf("cond called %d times, want at least the first call and one at the deadline", calls)
	}
}
