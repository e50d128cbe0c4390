// Package wait polls a condition with a deadline, for tests that wait on
// state they cannot be told about (a Kubernetes object, a metric, a port
// that starts answering). It is the one poller of the tests: it imports
// only the standard library, so product packages may use it from their
// _test.go files.
package wait

import (
	"testing"
	"time"
)

// Timeout is how long For waits: long enough for a controller on a busy
// machine, short enough that a test which will not pass fails on its own.
const Timeout = 30 * time.Second

// The pause between two checks starts short, so that a condition which
// holds almost at once costs the test almost nothing, and grows to
// maxInterval, so that a long wait does not hammer what it polls (an API
// server, a gateway's admin port).
const (
	firstInterval = 5 * time.Millisecond
	maxInterval   = 100 * time.Millisecond
)

// Poll calls cond until it reports true or timeout passes, and reports
// whether it held: for callers that judge a timeout themselves (a test
// that reports more than the condition, a loop that must not stop a test).
// cond is always called at least once, and once more at the deadline.
func Poll(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	pause := firstInterval
	for {
		if cond() {
			return true
		}
		left := time.Until(deadline)
		if left <= 0 {
			return false
		}
		time.Sleep(min(pause, left)) // polling with a deadline, not synchronising
		pause = min(2*pause, maxInterval)
	}
}

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
	var why string
	if !Poll(timeout, func() (ok bool) { ok, why = cond(); return ok }) {
		t.Fatalf("%s: not reached within %v (last: %s)", what, timeout, why)
	}
}

// Until is Within for a condition with nothing to say about itself.
func Until(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if !Poll(timeout, cond) {
		t.Fatalf("%s: not reached within %v", what, timeout)
	}
}

// ForErr is Within for a condition that returns what is still wrong as an
// error, nil once it holds.
func ForErr(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	var err error
	if !Poll(timeout, func() bool { err = cond(); return err == nil }) {
		t.Fatalf("%s: not reached within %v (last: %v)", what, timeout, err)
	}
}
