package hostile

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Some figures are the gateway's alone: its CPU time, its open
// descriptors. The gateway runs in the test process, so the clients of
// those measurements run in a child process: the test binary itself,
// started again with childEnv naming what to do and childFileEnv the JSON
// file of a childJob.
const (
	childEnv     = "MCGATE_HOSTILE_CHILD"
	childFileEnv = "MCGATE_HOSTILE_CHILD_JOB"
)

// childJob is the work of one child process.
type childJob struct {
	Addrs []string
	N     int // handshakes, or connections per address
	SNI   string
	Chain [][]byte // DER, leaf first
	Key   []byte   // PKCS #8, the leaf's
}

// runChild is TestMain's branch for a child process; it returns the exit
// code.
func runChild(mode string) int {
	b, err := os.ReadFile(os.Getenv(childFileEnv))
	if err == nil {
		var job childJob
		if err = json.Unmarshal(b, &job); err == nil {
			switch mode {
			case "handshakes":
				err = childHandshakes(job)
			case "idle-http":
				err = childIdleHTTP(job)
			default:
				err = fmt.Errorf("unknown child mode %q", mode)
			}
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// childHandshakes makes job.N full handshakes one after the other with
// job.Chain, each time waiting for the gateway's verdict (a refusal, or
// the end of the connection) before the next.
func childHandshakes(job childJob) error {
	key, err := x509.ParsePKCS8PrivateKey(job.Key)
	if err != nil {
		return err
	}
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS13, InsecureSkipVerify: true, ServerName: job.SNI,
		Certificates: []tls.Certificate{{Certificate: job.Chain, PrivateKey: key}},
	}
	for range job.N {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", job.Addrs[0], cfg)
		if err != nil {
			continue // refused in the handshake: what the hostile kinds expect
		}
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		io.Copy(io.Discard, c)
		c.Close()
	}
	return nil
}

// childIdleHTTP opens job.N connections to each address and sends one
// keep-alive request on each, prints "ready", then reads each connection
// until the server closes it (or 20 s pass) and prints how many it closed.
// It exits once its standard input closes.
func childIdleHTTP(job childJob) error {
	var conns []net.Conn
	for _, addr := range job.Addrs {
		for range job.N {
			c, err := net.DialTimeout("tcp", addr, 10*time.Second)
			if err != nil {
				return err
			}
			conns = append(conns, c)
			if _, err := io.WriteString(c, "GET /live HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
				return err
			}
		}
	}
	fmt.Println("ready")
	var closed atomic.Int64
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Go(func() {
			c.SetReadDeadline(time.Now().Add(20 * time.Second))
			if _, err := io.Copy(io.Discard, c); err == nil {
				closed.Add(1) // EOF: the server closed it
			}
		})
	}
	wg.Wait()
	fmt.Printf("closed %d of %d\n", closed.Load(), len(conns))
	io.Copy(io.Discard, os.Stdin)
	for _, c := range conns {
		c.Close()
	}
	return nil
}

// child is a running child process.
type child struct {
	cmd   *exec.Cmd
	stdin io.Closer
	out   *bufio.Reader
}

// startChild starts the test binary as a child doing job in mode.
func startChild(t *testing.T, mode string, job childJob) *child {
	t.Helper()
	b, err := json.Marshal(job)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "job.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(context.Background(), os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+mode, childFileEnv+"="+path)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, stdin: stdin, out: bufio.NewReader(stdout)}
	t.Cleanup(func() { c.wait(t) })
	return c
}

// waitFor reads the child's output up to a line starting with prefix and
// returns that line.
func (c *child) waitFor(t *testing.T, prefix string) string {
	t.Helper()
	for {
		l, err := c.out.ReadString('\n')
		if err != nil {
			t.Fatalf("child ended before printing %q: %v", prefix, err)
		}
		if strings.HasPrefix(l, prefix) {
			return strings.TrimSpace(l)
		}
	}
}

// wait closes the child's input and waits for it to exit; idempotent.
func (c *child) wait(t *testing.T) {
	t.Helper()
	if c.cmd.ProcessState != nil {
		return
	}
	c.stdin.Close()
	io.Copy(io.Discard, c.out)
	if err := c.cmd.Wait(); err != nil {
		t.Errorf("child %v: %v", c.cmd.Args, err)
	}
}
