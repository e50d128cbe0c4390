package proxy_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcgate/mcgate/identity"
	"github.com/mcgate/mcgate/internal/testenv/testpki"
	"github.com/mcgate/mcgate/internal/testenv/testproxy"
	"github.com/mcgate/mcgate/proxy"
)

const (
	gwSA = "linkerd-gateway"
	gwNS = "linkerd-multicluster"
)

type routes = testproxy.Routes

func newBackend(t *testing.T) *testproxy.Backend { return testproxy.NewEchoBackend(t) }

// gateway is a running ingress server for one test.
type gateway struct {
	*proxy.IngressServer
	ca     *testpki.CA
	dir    string
	src    *identity.FileSource
	reg    *prometheus.Registry
	logs   *testproxy.SyncBuffer
	cancel context.CancelFunc
	done   chan error
}

type gatewayOpt = func(*proxy.IngressConfig)

func startGateway(t *testing.T, ca *testpki.CA, router proxy.Router, allow []string, opts ...gatewayOpt) *gateway {
	t.Helper()
	tg := testproxy.NewGateway(t, ca, router, allow, opts...)
	g := &gateway{IngressServer: tg.IngressServer, ca: ca, dir: tg.Dir, src: tg.Src, reg: tg.Reg, logs: tg.Logs}
	ctx, cancel := context.WithCancel(context.Background())
	g.cancel, g.done = cancel, make(chan error, 1)
	go func() { g.done <- g.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-g.done; err != nil {
			t.Errorf("ingress Run: %v", err)
		}
	})
	return g
}

// clientConfig returns a client config for identity sa.ns issued by ca,
// expecting the gateway's identity.
func clientConfig(t testing.TB, ca *testpki.CA, sa, ns string, opts identity.CertOptions) *tls.Config {
	t.Helper()
	dir := t.TempDir()
	ca.WriteDir(t, dir, ca.Leaf(t, sa, ns, opts))
	return identity.ClientTLSConfig(testpki.Source(t, dir), testpki.Name(t, gwSA, gwNS))
}

func dialTLS(t testing.TB, addr string, cfg *tls.Config, sni string, alpn ...string) (*tls.Conn, error) {
	t.Helper()
	cfg = cfg.Clone()
	cfg.ServerName = sni
	cfg.NextProtos = alpn
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err == nil {
		t.Cleanup(func() { c.Close() })
	}
	return c, err
}

// echo writes msg and reads the same number of bytes back.
func echo(c net.Conn, msg string) (string, error) {
	c.SetDeadline(time.Now().Add(5 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := io.WriteString(c, msg); err != nil {
		return "", err
	}
	buf := make([]byte, len(msg))
	_, err := io.ReadFull(c, buf)
	return string(buf), err
}

// counter returns the value of name{labels}, 0 if absent.
func counter(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	return testproxy.Metric(t, reg, name, labels)
}

// readErr reports the error a refused TLS client sees on its first read:
// TLS 1.3 clients learn of a refusal only after their handshake completed.
func readErr(c *tls.Conn) error {
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := c.Read(make([]byte, 1))
	if err == nil {
		return errors.New("read succeeded")
	}
	return err
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

// runUntilCleanup runs a component until the test or benchmark ends.
func runUntilCleanup(tb testing.TB, run func(context.Context) error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("Run: %v", err)
		}
	})
}
