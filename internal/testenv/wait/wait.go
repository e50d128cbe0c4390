// Package wait polls a condition with a deadline, for tests that wait on
// state they cannot be told about (a Kubernetes object, a metric).
package wait

import (
	"testing"
	"time"
)

// Timeout is how long For waits: long enough for a controller on a busy
// machine, short enough that a test which will not pass fails on its own.
const Timeout = 30 * time.Second

// interval is the pause between two checks.
const interval = 50 * time.Millisecond

// For calls cond until it reports true, and fails t when Timeout passes
// first. cond's second result says why it does not hold yet; the last one
// is in the failure message.
func For(t testing.TB, what string, cond func() (bool, string)) {
	t.Helper()
	Within(t, Timeout, what, cond)
}

// Within is For with a deadline of its own.
func Within(t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached within %v (last: %s)", what, timeout, why)
		}
		<-tick.C
	}
}
