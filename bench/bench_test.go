package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestMain lets the test binary serve as the harness's helper processes
// (naive proxy, limits), as the harness binary does.
func TestMain(m *testing.M) {
	if role := os.Getenv(roleEnv); role != "" {
		os.Exit(roleMain(role, os.Args[1:]))
	}
	os.Exit(m.Run())
}

// mcgateBinary is bin/mcgate from `make build`, or a fresh build of it.
func mcgateBinary(t *testing.T) string {
	if p, err := filepath.Abs("../bin/mcgate"); err == nil {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	out := filepath.Join(t.TempDir(), "mcgate")
	// bench is a module of its own, so the build runs in the product's.
	build := exec.Command("go", "build", "-o", out, "./cmd/mcgate")
	build.Dir = ".."
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build mcgate: %v\n%s", err, b)
	}
	return out
}

// testConfig is the quick mode as a test runs it: unpinned (other
// packages' tests share the machine), writing to temporary directories, and
// off the default 127.0.0.x, so a full bench may run meanwhile, on a /24 of
// its own per process and test (n), so concurrent test runs of other
// checkouts do not collide.
func testConfig(t *testing.T, n int) config {
	t.Helper()
	c, err := modeConfig("quick")
	if err != nil {
		t.Fatal(err)
	}
	c.Pin = false
	c.McgateBin = mcgateBinary(t)
	c.Cache = t.TempDir()
	c.Out = t.TempDir()
	c.Log = t.Logf
	id := os.Getpid() + n
	c.Loopback = fmt.Sprintf("127.%d.%d", 100+id%100, id/100%250)
	return c
}

// TestQuickRun runs the harness in a short quick mode against no proxy, the
// naive Go proxy and mcgate, and checks every cell measured something.
func TestQuickRun(t *testing.T) {
	c := testConfig(t, 0)
	c.Systems = []string{"direct", "naive-go", "mcgate"}
	c.Scenarios = []string{"idle", "idle-busy", "handshake", "resume", "bulk1", "rr1", "rate", "t-connect", "t-bulk1"}
	c.Opts = runOpts{Warmup: 150 * time.Millisecond, Duration: 700 * time.Millisecond, IdleConns: 200, Rate: 500}
	c.Limits = 300 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rep, err := run(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if want := len(c.Systems) * len(c.Scenarios); len(rep.Results) != want {
		t.Fatalf("got %d cells, want %d", len(rep.Results), want)
	}
	for _, r := range rep.Results {
		name := r.System + "/" + r.Scenario
		if r.Errors != 0 {
			t.Errorf("%s: %d errors, first: %s", name, r.Errors, r.FirstErr)
		}
		idle := strings.Contains(r.Scenario, "idle")
		if r.System == "direct" && idle {
			continue // no proxy, no memory to measure
		}
		if r.Ops <= 0 {
			t.Errorf("%s: no operation completed", name)
		}
		switch {
		case idle:
			if r.Ops != int64(c.Opts.IdleConns) || r.RSS <= 0 {
				t.Errorf("%s: %d of %d conns held, RSS %d", name, r.Ops, c.Opts.IdleConns, r.RSS)
			}
		case r.Value <= 0 || math.IsNaN(r.Value):
			t.Errorf("%s: value %v %s", name, r.Value, r.Unit)
		}
		if r.Scenario == "resume" && r.Resumed < 0.9 {
			t.Errorf("%s: only %.0f%% of handshakes resumed", name, 100*r.Resumed)
		}
		if (r.Scenario == "rr1" || r.Scenario == "rate" || r.Scenario == "handshake") && r.Hist.TotalCount() == 0 {
			t.Errorf("%s: no latency recorded", name)
		}
	}
	for _, l := range rep.Limits {
		if l.Value <= 0 && !strings.HasPrefix(l.Name, "OpenSSL") && l.Name != "openssl speed" {
			t.Errorf("limit %s: %v", l.Name, l.Value)
		}
	}
	files, err := rep.write(c.Out)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if st, err := os.Stat(f); err != nil || st.Size() == 0 {
			t.Errorf("output %s missing or empty", f)
		}
	}
	md, _ := os.ReadFile(filepath.Join(c.Out, "results.md"))
	for _, want := range []string{"| metric | direct | naive-go | mcgate |", "mcgate / best peer", "Physical limits"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("results.md lacks %q", want)
		}
	}
}

// TestBaselineRun runs mcgate beside mcgate-base, a second build given as
// the baseline (here the same binary), through ingress and the tunnel: both
// start on ports of their own and are measured in the same rounds, and the
// table compares the one with the other.
func TestBaselineRun(t *testing.T) {
	c := testConfig(t, 1)
	c.Systems = []string{"mcgate", "mcgate-base"}
	c.Scenarios = []string{"rr1", "t-bulk1"}
	c.Opts = runOpts{Warmup: 100 * time.Millisecond, Duration: 400 * time.Millisecond, IdleConns: 10, Rate: 500}
	c.Limits = 100 * time.Millisecond
	c.Repeat = 2
	c.BaselineBin = c.McgateBin
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := run(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, r := range rep.Results {
		name := r.System + "/" + r.Scenario
		seen[name] = true
		if r.Errors != 0 || r.Ops <= 0 || !(r.Value > 0) {
			t.Errorf("%s: %d errors (first: %s), %d ops, value %v", name, r.Errors, r.FirstErr, r.Ops, r.Value)
		}
	}
	for _, want := range []string{"mcgate/rr1", "mcgate-base/rr1", "mcgate/t-bulk1", "mcgate-base/t-bulk1"} {
		if !seen[want] {
			t.Errorf("no %s cell", want)
		}
	}
	if _, err := rep.write(c.Out); err != nil {
		t.Fatal(err)
	}
	md, _ := os.ReadFile(filepath.Join(c.Out, "results.md"))
	if !strings.Contains(string(md), "| metric | mcgate | mcgate-base |") || !strings.Contains(string(md), "mcgate-base | ") {
		t.Errorf("results.md does not compare mcgate with mcgate-base:\n%s", md)
	}
}
