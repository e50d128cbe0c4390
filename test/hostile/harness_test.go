package hostile

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcgate/mcgate/identity"
	"github.com/mcgate/mcgate/internal/testenv/testpki"
	"github.com/mcgate/mcgate/internal/testenv/testproxy"
	"github.com/mcgate/mcgate/proxy"
)

const (
	gwSA    = "linkerd-gateway"
	gwNS    = "linkerd-multicluster"
	apiSNI  = "api.production.svc.cluster.local"
	apiPort = 8080
)

// TestMain raises the open-file limit: the attacks hold a few thousand
// sockets on both ends in this one process. Started as a child, it runs
// the child's job instead of the tests.
func TestMain(m *testing.M) {
	if mode := os.Getenv(childEnv); mode != "" {
		os.Exit(runChild(mode)) // a client process of a measurement (child_test.go)
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && lim.Cur < lim.Max {
		lim.Cur = lim.Max
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
	os.Exit(m.Run())
}

type (
	backend = testproxy.Backend
	routes  = testproxy.Routes
)

func newBackend(t testing.TB) *backend { return testproxy.NewEchoBackend(t) }

func newBackendFunc(t testing.TB, serve func(net.Conn)) *backend {
	return testproxy.NewBackend(t, serve)
}

// gateway is an ingress server running for one test.
type gateway struct {
	*proxy.IngressServer
	ca   *testpki.CA
	dir  string
	src  *identity.FileSource
	reg  *prometheus.Registry
	logs *testproxy.SyncBuffer
	stop func() // cancels Run and waits for it; idempotent
}

// startGateway runs an ingress gateway on 127.0.0.1 with short handshake
// and route timeouts (2 s), exporting api.production:8080 → be.
func startGateway(t testing.TB, ca *testpki.CA, router proxy.Router, opts ...func(*proxy.IngressConfig)) *gateway {
	t.Helper()
	tg := testproxy.NewGateway(t, ca, router, nil, opts...)
	g := &gateway{IngressServer: tg.IngressServer, ca: ca, dir: tg.Dir, src: tg.Src, reg: tg.Reg, logs: tg.Logs}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	var once sync.Once
	g.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("ingress Run: %v", err)
			}
		})
	}
	t.Cleanup(g.stop)
	return g
}

// apiFixture is the usual bed of an attack test: a gateway exporting
// api.production:8080 to an echo backend, and a good client that has made
// one round trip through it.
type apiFixture struct {
	ca   *testpki.CA
	be   *backend
	gw   *gateway
	good *tls.Config
}

func newAPIFixture(t testing.TB, opts ...func(*proxy.IngressConfig)) apiFixture {
	t.Helper()
	f := apiFixture{ca: testpki.New(t), be: newBackend(t)}
	f.gw = startGateway(t, f.ca, routes{"production/api": {apiPort: {f.be.Addr()}}}, opts...)
	f.good = clientConfig(t, f.ca)
	if err := roundTrip(f.gw.Addr().String(), f.good); err != nil {
		t.Fatal(err)
	}
	return f
}

// clientConfig is a good client: identity web.west issued by ca, checking
// the gateway's identity, resuming sessions as the egress does.
func clientConfig(t testing.TB, ca *testpki.CA) *tls.Config {
	t.Helper()
	dir := t.TempDir()
	ca.WriteDir(t, dir, ca.Leaf(t, "web", "west", identity.CertOptions{}))
	cfg := identity.ClientTLSConfig(testpki.Source(t, dir), testpki.Name(t, gwSA, gwNS)).Clone()
	cfg.ServerName = apiSNI
	return cfg
}

// hostileConfig presents certs (leaf first) signed however the attacker
// likes and does not check the server.
func hostileConfig(leaf *identity.KeyPair, chain ...[]byte) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13, InsecureSkipVerify: true, ServerName: apiSNI,
		Certificates: []tls.Certificate{{Certificate: append([][]byte{leaf.Cert.Raw}, chain...), PrivateKey: leaf.Key}},
	}
}

// goodSource is where good clients connect from; attackers use 127.0.0.1,
// another host as far as the gateway's per-source limits go.
var goodSource = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}

// roundTrip is one good client's unit of work: connect, handshake, echo
// 64 bytes, close.
func roundTrip(addr string, cfg *tls.Config) error {
	d := &net.Dialer{Timeout: 5 * time.Second, LocalAddr: goodSource}
	c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	msg := []byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
	if _, err := c.Write(msg); err != nil {
		return err
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		return err
	}
	if !bytes.Equal(got, msg) {
		return fmt.Errorf("echo mismatch")
	}
	return nil
}

// stats are a good client's results over one phase.
type stats struct {
	ok, failed    int
	p50, p99, max time.Duration
	firstErr      error
}

func (s stats) String() string {
	return fmt.Sprintf("%d/%d ok, p50 %v, p99 %v, max %v", s.ok, s.ok+s.failed,
		s.p50.Round(10*time.Microsecond), s.p99.Round(10*time.Microsecond), s.max.Round(10*time.Microsecond))
}

// measure runs n round trips one after the other, gap apart (probeRound).
func measure(addr string, cfg *tls.Config, n int, gap time.Duration) stats {
	return probeRound(addr, cfg, n, gap).stats
}

func metric(t testing.TB, reg prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	return testproxy.Metric(t, reg, name, labels)
}

// resources is what a leak shows in: goroutines, open fds, live heap.
type resources struct {
	goroutines, fds int
	heap            uint64 // HeapInuse after a GC
}

func (r resources) String() string {
	return fmt.Sprintf("goroutines %d, fds %d, heap %.1f MiB", r.goroutines, r.fds, float64(r.heap)/(1<<20))
}

func sample() resources {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fds, _ := os.ReadDir("/proc/self/fd")
	return resources{goroutines: runtime.NumGoroutine(), fds: len(fds), heap: ms.HeapInuse}
}
