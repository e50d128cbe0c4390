// Package gatewaytest holds what tests share that run the real mcgate
// binary as users do: a command runner, the install and identities of a
// multicluster setup, a gateway process that can be killed and started
// again, a polling wait and a one-shot echo client.
// Import it from _test.go files only.
package gatewaytest

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mcgate/mcgate/internal/testbin"
)

// Run runs name with args and stdin, failing t (with its stderr) if it
// fails, and returns its stdout.
func Run(t testing.TB, stdin []byte, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	return out
}

// Install applies `mcgate install` (namespace, CRD, RBAC, the remote-access
// ServiceAccount, the gateway Service) to the cluster of each kubeconfig.
func Install(t testing.TB, kubeconfigs ...string) {
	t.Helper()
	manifests := Run(t, nil, testbin.Mcgate(t), "install")
	for _, kc := range kubeconfigs {
		Run(t, manifests, "kubectl", "--kubeconfig", kc, "apply", "-f", "-")
	}
}

// Identities makes a trust anchor in dir (ca.crt, ca.key) and for each
// cluster name an issuer and a gateway identity in dir/<name>-gw, the
// --identity-dir of its gateway.
func Identities(t testing.TB, dir string, names ...string) {
	t.Helper()
	mc := testbin.Mcgate(t)
	p := func(n string) string { return filepath.Join(dir, n) }
	Run(t, nil, mc, "identity", "anchor", "--out-cert", p("ca.crt"), "--out-key", p("ca.key"))
	for _, c := range names {
		Run(t, nil, mc, "identity", "issuer", "--ca", p("ca.crt"), "--ca-key", p("ca.key"),
			"--out-cert", p(c+"-issuer.crt"), "--out-key", p(c+"-issuer.key"))
		Run(t, nil, mc, "identity", "leaf", "--ca", p(c+"-issuer.crt"), "--ca-key", p(c+"-issuer.key"),
			"--anchor", p("ca.crt"), "--out-dir", p(c+"-gw"))
	}
}

// Process is an mcgate process (usually `mcgate gateway …`) that can be
// killed and started again; its output goes to Log.
type Process struct {
	T    testing.TB
	Args []string
	// Env is added to the test's environment (e.g. POD_NAME=…).
	Env []string
	Log string

	cmd    *exec.Cmd
	exited chan struct{} // closed once the process has exited
	err    error         // its exit error, set before exited is closed
}

// Start starts the process.
func (g *Process) Start() {
	g.T.Helper()
	f, err := os.OpenFile(g.Log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		g.T.Fatal(err)
	}
	g.cmd = exec.Command(testbin.Mcgate(g.T), g.Args...)
	g.cmd.Env = append(os.Environ(), g.Env...)
	g.cmd.Stdout, g.cmd.Stderr = f, f
	if err := g.cmd.Start(); err != nil {
		f.Close()
		g.T.Fatal(err)
	}
	f.Close()
	exited := make(chan struct{})
	g.exited = exited
	cmd := g.cmd
	go func() {
		g.err = cmd.Wait()
		close(exited)
	}()
}

// Kill kills the process with SIGKILL, as a node failure would, and waits
// for it. Killing an exited process does nothing.
func (g *Process) Kill() {
	g.cmd.Process.Signal(syscall.SIGKILL)
	<-g.exited
}

// Stop sends SIGTERM and waits for the process to exit; it returns the
// exit error. Stopping an exited process returns how it exited.
func (g *Process) Stop() error {
	g.cmd.Process.Signal(syscall.SIGTERM)
	<-g.exited
	return g.err
}

// StopAtCleanup stops the process (SIGTERM) when the test ends and logs
// its output as name if the test failed.
func (g *Process) StopAtCleanup(name string) {
	g.T.Cleanup(func() {
		g.Stop()
		if g.T.Failed() {
			b, _ := os.ReadFile(g.Log)
			g.T.Logf("%s log:\n%s", name, b)
		}
	})
}

// Poll waits for cond, checking every 100 ms, failing t after timeout.
func Poll(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		case <-tick.C:
		}
	}
}

// EchoOnce sends msg over a new connection to addr and checks that the
// same bytes come back.
func EchoOnce(addr, msg string) error {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		return err
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	if string(buf) != msg {
		return fmt.Errorf("echo %q, want %q", buf, msg)
	}
	return nil
}
