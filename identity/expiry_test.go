package identity_test

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mcgate/mcgate/identity"
	"github.com/mcgate/mcgate/internal/testenv/testpki"
)

func TestLeafExpiry(t *testing.T) {
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	const day = 24 * time.Hour
	for _, c := range []struct {
		name     string
		notAfter time.Time
		window   time.Duration
		want     identity.LeafState
	}{
		{"far", now.Add(40 * day), 30 * day, identity.LeafValid},
		{"just outside the window", now.Add(30*day + time.Second), 30 * day, identity.LeafValid},
		{"at the window's start", now.Add(30 * day), 30 * day, identity.LeafExpiring},
		{"inside", now.Add(time.Hour), 30 * day, identity.LeafExpiring},
		{"ends now", now, 30 * day, identity.LeafExpired},
		{"ended", now.Add(-time.Hour), 30 * day, identity.LeafExpired},
		{"no window", now.Add(time.Hour), 0, identity.LeafValid},
		{"negative window", now.Add(time.Hour), -1, identity.LeafValid},
		{"ended, no window", now.Add(-time.Hour), -1, identity.LeafExpired},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, left := identity.LeafExpiry(c.notAfter, now, c.window)
			if got != c.want || left != c.notAfter.Sub(now) {
				t.Errorf("LeafExpiry = %v, %v; want %v, %v", got, left, c.want, c.notAfter.Sub(now))
			}
		})
	}
}

// logLines collects a zerolog logger's lines and hands each to lines.
type logLines struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	lines chan string
}

func (l *logLines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	l.lines <- string(p)
	return len(p), nil
}

// next returns the next line that contains want, and the lines skipped.
func (l *logLines) next(t *testing.T, want string) (string, []string) {
	t.Helper()
	var skipped []string
	deadline := time.After(10 * time.Second)
	for {
		select {
		case line := <-l.lines:
			if strings.Contains(line, want) {
				return line, skipped
			}
			skipped = append(skipped, line)
		case <-deadline:
			t.Fatalf("no log line with %q within 10s; skipped %q", want, skipped)
		}
	}
}

// TestFileSourceWarnsOfExpiry: a leaf that ends within the window is
// warned of at every load, and a running source warns once when its leaf
// enters the window and says so again once it has ended.
func TestFileSourceWarnsOfExpiry(t *testing.T) {
	const day = 24 * time.Hour
	ca := testpki.New(t)
	clk := &clock{now: time.Now()}
	leafEnding := func(in time.Duration) *identity.KeyPair {
		return ca.Leaf(t, gatewaySA, gatewayNS, identity.CertOptions{NotAfter: clk.Now().Add(in)})
	}
	dir := identityDir(t, ca, leafEnding(40*day))
	logs := &logLines{lines: make(chan string, 10000)}
	src, err := identity.NewFileSource(identity.FileSourceConfig{
		Dir: dir, Log: zerolog.New(logs), Clock: clk.Now, PollInterval: time.Millisecond,
		ExpiryWarning: 30 * day,
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, skipped := logs.next(t, "identity loaded"); len(skipped) != 0 {
		t.Errorf("lines before the load: %q", skipped)
	}
	select {
	case line := <-logs.lines:
		t.Fatalf("a leaf 40 days from its end, window 30 days: %s", line)
	default:
	}

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- src.Run(ctx) }()
	stopRun := sync.OnceFunc(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	defer stopRun()

	clk.Advance(11 * day)
	line, skipped := logs.next(t, "expires soon")
	if len(skipped) != 0 || !strings.Contains(line, `"level":"warn"`) || !strings.Contains(line, `"left":"696h0m0s"`) ||
		!strings.Contains(line, "mcgate identity leaf") {
		t.Errorf("entering the window: %s (after %q)", line, skipped)
	}
	clk.Advance(30 * day)
	line, skipped = logs.next(t, "has expired")
	if len(skipped) != 0 || !strings.Contains(line, `"level":"error"`) {
		t.Errorf("expiry: %s (after %q, each state is said once)", line, skipped)
	}

	// Stopped, so that only Reload loads what follows.
	stopRun()

	// A renewed leaf that still ends within the window is warned of at its
	// load; one beyond it loads quietly.
	writeDir(t, dir, ca, leafEnding(5*day))
	if err := src.Reload(); err != nil {
		t.Fatal(err)
	}
	logs.next(t, "identity loaded")
	if line, _ := logs.next(t, "expires soon"); !strings.Contains(line, `"left":"120h0m0s"`) {
		t.Errorf("reload within the window: %s", line)
	}
	writeDir(t, dir, ca, leafEnding(300*day))
	if err := src.Reload(); err != nil {
		t.Fatal(err)
	}
	logs.next(t, "identity loaded")
	select {
	case line := <-logs.lines:
		t.Errorf("a leaf 300 days from its end: %s", line)
	default:
	}
}
