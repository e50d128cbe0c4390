// Package gatewaytest holds what tests share that run the real mcgate
// binary as users do: a command runner, the install and identities of a
// multicluster setup, a gateway process that can be killed and started
// again, polling waits and a one-shot echo client.
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

	"github.com/mcgate/mcgate/internal/testenv/testbin"
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
			g.T.Logf("%s log:\n%s", name, g.LogTail(0))
		}
	})
}

// cleanTail is how much of its log StopCleanlyAtCleanup shows: a long
// run's whole log would drown the failure.
const cleanTail = 32 << 10

// StopCleanlyAtCleanup is StopAtCleanup for a process whose clean exit is
// part of the test: when the test ends it sends SIGTERM and fails the test
// if the process exits with an error (a -race build that found a race
// exits 66) or is still running after within (it is then killed). It shows
// the last 32 KiB of the log. A process the test killed must have been
// started again.
func (g *Process) StopCleanlyAtCleanup(name string, within time.Duration) {
	g.T.Cleanup(func() {
		g.cmd.Process.Signal(syscall.SIGTERM)
		timeout := time.NewTimer(within)
		defer timeout.Stop()
		select {
		case <-g.exited:
			if g.err != nil {
				g.T.Errorf("%s exited with %v:\n%s", name, g.err, g.LogTail(cleanTail))
				return
			}
		case <-timeout.C:
			g.Kill()
			g.T.Errorf("%s did not stop within %v of SIGTERM:\n%s", name, within, g.LogTail(cleanTail))
			return
		}
		if g.T.Failed() {
			g.T.Logf("%s log (tail):\n%s", name, g.LogTail(cleanTail))
		}
	})
}

// Exited reports whether the process has exited, and how: a test waiting
// for it to become ready stops waiting for a process that died.
func (g *Process) Exited() (bool, error) {
	select {
	case <-g.exited:
		return true, g.err
	default:
		return false, nil
	}
}

// LogTail returns the last n bytes of the process's log (0: all of it).
func (g *Process) LogTail(n int) string {
	b, _ := os.ReadFile(g.Log)
	if n > 0 && len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// EchoOnce sends msg over a new connection to addr and checks that the
// same bytes come back, within 2 s to connect and 5 s for the exchange.
func EchoOnce(addr, msg string) error { return EchoOnceWithin(addr, msg, 2*time.Second, 5*time.Second) }

// EchoOnceWithin is EchoOnce with the caller's timeouts for connecting
// and for the exchange: a long run on a busy machine through
// race-instrumented gateways needs more than EchoOnce allows.
func EchoOnceWithin(addr, msg string, dialTimeout, ioTimeout time.Duration) error {
	c, err := net.DialTimeout("tcp", addr, dialTimeout)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(ioTimeout))
	if _, err := io.WriteString(c, msg); err != nil {
		return err
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		return fmt.Errorf("read echo: %w", err)
	}
	if string(buf) != msg {
		return fmt.Errorf("echo %q, want %q", buf, msg)
	}
	return nil
}
