package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestSysmonGODEBUG(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		godebug string
		want    string
		reexec  bool
	}{
		{"gateway, no GODEBUG", []string{"gateway", "--listen-addr", ":4143"}, "", sysmonSchedtrace, true},
		{"gateway, blank GODEBUG", []string{"gateway"}, "  ", sysmonSchedtrace, true},
		{"gateway, other settings kept", []string{"gateway"}, "madvdontneed=1,x509sha1=1", "madvdontneed=1,x509sha1=1," + sysmonSchedtrace, true},
		{"operator's schedtrace wins", []string{"gateway"}, "schedtrace=1000", "schedtrace=1000", false},
		{"operator turned it off", []string{"gateway"}, "madvdontneed=1, schedtrace=0", "madvdontneed=1, schedtrace=0", false},
		{"a look-alike key is not schedtrace", []string{"gateway"}, "schedtracex=1", "schedtracex=1," + sysmonSchedtrace, true},
		{"CLI command", []string{"check", "--context", "east"}, "", "", false},
		{"gateway named later is an argument", []string{"help", "gateway"}, "", "", false},
		{"no arguments", nil, "", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, reexec := sysmonGODEBUG(tc.args, tc.godebug)
			if got != tc.want || reexec != tc.reexec {
				t.Errorf("sysmonGODEBUG(%q, %q) = %q, %v; want %q, %v", tc.args, tc.godebug, got, reexec, tc.want, tc.reexec)
			}
		})
	}
}

// TestGatewayRunsWithSchedtrace: the gateway process that serves (same PID
// as the one started, so a supervisor's signals reach it) carries the
// setting in its environment, keeps the operator's other settings, and
// leaves an operator's own schedtrace alone.
func TestGatewayRunsWithSchedtrace(t *testing.T) {
	p := newPKI(t)
	p.issuer(t, "east")
	id := p.leaf(t, "east", "linkerd-gateway", "linkerd-multicluster")
	cfg := writeFile(t, filepath.Join(t.TempDir(), "empty.yaml"), "services: []\n")
	var base []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GODEBUG=") {
			base = append(base, kv)
		}
	}
	for _, tc := range []struct{ godebug, want string }{
		{"", sysmonSchedtrace},
		{"madvdontneed=1", "madvdontneed=1," + sysmonSchedtrace},
		{"schedtrace=0", "schedtrace=0"},
	} {
		t.Run("GODEBUG="+tc.godebug, func(t *testing.T) {
			env := append(base[:len(base):len(base)], "GODEBUG="+tc.godebug)
			g := startProcEnv(t, env, freePort(t, "127.0.0.2"), "--identity-dir", id,
				"--listen-addr", freePort(t, "127.0.0.2"), "--static-config", cfg)
			g.waitReady(t, 200)
			b, err := os.ReadFile("/proc/" + strconv.Itoa(g.cmd.Process.Pid) + "/environ")
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, kv := range strings.Split(string(b), "\x00") {
				if v, ok := strings.CutPrefix(kv, "GODEBUG="); ok {
					got = append(got, v)
				}
			}
			if len(got) != 1 || got[0] != tc.want {
				t.Errorf("serving process has GODEBUG %q, want exactly %q", got, tc.want)
			}
		})
	}
}
