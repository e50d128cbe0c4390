package main

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mcgate/mcgate/internal/testenv/testbin"
	"github.com/mcgate/mcgate/internal/testenv/testproxy"
	"github.com/mcgate/mcgate/internal/testenv/wait"
)

// These tests run the real binary: certificates from `mcgate identity`,
// gateways as processes on their own loopback addresses, signals, and
// openssl as a foreign client.

func mcgateBin(t *testing.T) string { return testbin.Mcgate(t) }

func mcgate(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(mcgateBin(t), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("mcgate %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// pki makes an anchor and, per cluster, an issuer and identity dirs, all
// with the CLI.
type pki struct{ dir string }

func newPKI(t *testing.T) *pki {
	p := &pki{dir: t.TempDir()}
	mcgate(t, "identity", "anchor", "--out-cert", p.path("ca.crt"), "--out-key", p.path("ca.key"))
	return p
}

func (p *pki) path(name string) string { return filepath.Join(p.dir, name) }

func (p *pki) issuer(t *testing.T, cluster string) {
	mcgate(t, "identity", "issuer", "--ca", p.path("ca.crt"), "--ca-key", p.path("ca.key"),
		"--out-cert", p.path(cluster+"-issuer.crt"), "--out-key", p.path(cluster+"-issuer.key"))
}

// leaf writes an identity dir for sa.ns issued by cluster's issuer.
func (p *pki) leaf(t *testing.T, cluster, sa, ns string) string {
	out := p.path(cluster + "-" + sa + "-" + ns)
	mcgate(t, "identity", "leaf", "--ca", p.path(cluster+"-issuer.crt"), "--ca-key", p.path(cluster+"-issuer.key"),
		"--anchor", p.path("ca.crt"), "--service-account", sa, "--namespace", ns, "--out-dir", out)
	return out
}

// freePort returns an address on ip whose port is free now, for a gateway
// process to bind a moment later. The port is taken below the kernel's
// ephemeral range (32768 and up): a port 0 listener would get one from that
// range, where any test's outgoing connection may take it as its source
// port before the gateway binds it (seen in CI: "address already in use").
func freePort(t *testing.T, ip string) string {
	t.Helper()
	for range 100 {
		addr := net.JoinHostPort(ip, strconv.Itoa(20000+rand.IntN(12000)))
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			continue // taken: try another
		}
		ln.Close()
		return addr
	}
	t.Fatalf("no free port on %s below the ephemeral range", ip)
	return ""
}

// proc is a running gateway process.
type proc struct {
	cmd    *exec.Cmd
	stderr *testproxy.SyncBuffer
	admin  string
	done   chan error
}

func startProc(t *testing.T, admin string, args ...string) *proc {
	t.Helper()
	return startProcEnv(t, nil, admin, args...)
}

// startProcEnv is startProc with env as the process environment (nil: ours).
func startProcEnv(t *testing.T, env []string, admin string, args ...string) *proc {
	t.Helper()
	p := &proc{stderr: &testproxy.SyncBuffer{}, admin: admin, done: make(chan error, 1)}
	p.cmd = exec.Command(mcgateBin(t), append([]string{"gateway", "--admin-addr", admin, "--log-level", "debug"}, args...)...)
	p.cmd.Env = env
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("gateway %s log:\n%s", admin, p.stderr.String())
		}
	})
	return p
}

// waitReady polls /ready until it answers want, or fails the test; a
// gateway that exits fails it at once.
func (p *proc) waitReady(t *testing.T, want int) {
	t.Helper()
	got := "no answer"
	answered := wait.Poll(30*time.Second, func() bool {
		select {
		case err := <-p.done:
			p.done <- err
			t.Fatalf("gateway exited (%v):\n%s", err, p.stderr.String())
		default:
		}
		resp, err := http.Get("http://" + p.admin + "/ready")
		if err != nil {
			got = err.Error()
			return false
		}
		resp.Body.Close()
		got = resp.Status
		return resp.StatusCode == want
	})
	if !answered {
		t.Fatalf("/ready never answered %d (last: %s):\n%s", want, got, p.stderr.String())
	}
}

func echoBackend(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

func writeFile(t *testing.T, path, content string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// twoGateways starts east (exporting api.production → backend) and west
// (an egress listener to east's api) and returns them with the egress address.
func twoGateways(t *testing.T, p *pki, extraEast ...string) (east, west *proc, eastAddr, egressAddr string) {
	p.issuer(t, "east")
	p.issuer(t, "west")
	be := echoBackend(t)
	eastAddr = freePort(t, "127.0.0.2")
	egressAddr = freePort(t, "127.0.0.3")
	eastCfg := writeFile(t, filepath.Join(t.TempDir(), "east.yaml"), fmt.Sprintf(`services:
- name: api
  namespace: production
  ports:
  - port: 8080
    endpoints: [%q]
`, be))
	westCfg := writeFile(t, filepath.Join(t.TempDir(), "west.yaml"), fmt.Sprintf(`egress:
- listen: %s
  cluster: east
  gatewayAddress: %s
  gatewayIdentity: linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local
  target: api.production.svc.cluster.local:8080
`, egressAddr, eastAddr))
	east = startProc(t, freePort(t, "127.0.0.2"), append([]string{"--identity-dir", p.leaf(t, "east", "linkerd-gateway", "linkerd-multicluster"),
		"--listen-addr", eastAddr, "--static-config", eastCfg, "--cluster-name", "east"}, extraEast...)...)
	west = startProc(t, freePort(t, "127.0.0.3"), "--identity-dir", p.leaf(t, "west", "linkerd-gateway", "linkerd-multicluster"),
		"--listen-addr", freePort(t, "127.0.0.3"), "--static-config", westCfg, "--cluster-name", "west")
	east.waitReady(t, 200)
	west.waitReady(t, 200)
	return east, west, eastAddr, egressAddr
}

func roundTrip(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != msg {
		t.Fatalf("echo = %q, %v; want %q", buf, err, msg)
	}
}

func TestGatewaysStaticTunnel(t *testing.T) {
	p := newPKI(t)
	east, west, _, egress := twoGateways(t, p)
	c, err := net.Dial("tcp", egress)
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, c, "west app → west gateway → east gateway → api")
	c.Close()
	metrics := func(pr *proc) string {
		resp, err := http.Get("http://" + pr.admin + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	for _, want := range []string{`gateway_requests_total{cluster="east",direction="egress"} 1`, "go_goroutines", "process_open_fds"} {
		if m := metrics(west); !strings.Contains(m, want) {
			t.Errorf("west /metrics lacks %s", want)
		}
	}
	if m := metrics(east); !strings.Contains(m, `gateway_requests_total{cluster="east",direction="ingress"} 1`) {
		t.Errorf("east /metrics lacks its ingress request:\n%s", m)
	}
}

// TestOpenSSLClient: a foreign TLS stack reaches the backend through the
// gateway with the certificates of `mcgate identity`.
func TestOpenSSLClient(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Fatal("openssl is required (apt-get install openssl)")
	}
	p := newPKI(t)
	_, _, eastAddr, _ := twoGateways(t, p)
	client := p.leaf(t, "west", "web", "west")
	cmd := exec.Command("openssl", "s_client", "-connect", eastAddr, "-servername", "api.production.svc.cluster.local",
		"-cert", filepath.Join(client, "tls.crt"), "-cert_chain", p.path("west-issuer.crt"),
		"-key", filepath.Join(client, "tls.key"), "-CAfile", p.path("ca.crt"), "-verify_return_error", "-quiet")
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	io.WriteString(stdin, "hello from openssl\n")
	lines := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		lines <- line
	}()
	select {
	case line := <-lines:
		if line != "hello from openssl\n" {
			t.Fatalf("openssl got %q", line)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no echo through the gateway for openssl")
	}
}

// TestSIGTERMDrain: on SIGTERM the gateway reports not ready, refuses new
// connections, keeps the open one working, and exits 0 once it closes.
func TestSIGTERMDrain(t *testing.T) {
	p := newPKI(t)
	east, _, eastAddr, egress := twoGateways(t, p, "--drain-timeout", "60s")
	c, err := net.Dial("tcp", egress) // the open connection crosses east
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	roundTrip(t, c, "before SIGTERM")
	if err := east.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	east.waitReady(t, http.StatusServiceUnavailable)
	client := p.leaf(t, "west", "web", "west")
	cert, err := tls.LoadX509KeyPair(filepath.Join(client, "tls.crt"), filepath.Join(client, "tls.key"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tls.Dial("tcp", eastAddr, &tls.Config{Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true,
		ServerName: "api.production.svc.cluster.local"}); err == nil {
		t.Fatal("new connection accepted while draining")
	}
	roundTrip(t, c, "during the drain")
	select {
	case err := <-east.done:
		east.done <- err
		t.Fatalf("gateway exited (%v) with a connection open", err)
	default:
	}
	c.Close()
	select {
	case err := <-east.done:
		east.done <- err
		if err != nil {
			t.Fatalf("exit: %v\n%s", err, east.stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("gateway did not exit after its last connection closed")
	}
	if !strings.Contains(east.stderr.String(), `"message":"gateway stopped"`) {
		t.Errorf("no stop line in the log")
	}
}

func TestBadStaticConfig(t *testing.T) {
	p := newPKI(t)
	p.issuer(t, "east")
	cfg := writeFile(t, filepath.Join(t.TempDir(), "bad.yaml"), "services:\n- name: api\n  namespace: production\n  ports:\n  - port: 99999\n")
	cmd := exec.Command(mcgateBin(t), "gateway", "--identity-dir", p.leaf(t, "east", "linkerd-gateway", "linkerd-multicluster"),
		"--listen-addr", "127.0.0.2:0", "--admin-addr", "127.0.0.2:0", "--static-config", cfg)
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatal("gateway started with a bad config")
	}
	if !strings.Contains(string(out), "line 5") || !strings.Contains(string(out), "port 99999") {
		t.Fatalf("error does not name the line and reason: %s", out)
	}
}
