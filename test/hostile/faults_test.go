package hostile

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mcgate/mcgate/identity"
	"github.com/mcgate/mcgate/internal/testenv/testpki"
	"github.com/mcgate/mcgate/internal/testenv/wait"
	"github.com/mcgate/mcgate/proxy"
)

// TestBackendFaults: a backend that resets, one that never answers and one
// that is gone each fail their own connections promptly and cleanly, are
// counted, and leave the healthy service's clients untouched.
func TestBackendFaults(t *testing.T) {
	ca := testpki.New(t)
	healthy := newBackend(t)
	resets := newBackendFunc(t, func(c net.Conn) {
		c.Read(make([]byte, 1))
		c.(*net.TCPConn).SetLinger(0)
	})
	silent := newBackendFunc(t, func(c net.Conn) { io.Copy(io.Discard, c) })
	goneLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gone := goneLn.Addr().String()
	goneLn.Close()
	gw := startGateway(t, ca, routes{
		"production/api":    {apiPort: {healthy.Addr()}},
		"production/resets": {80: {resets.Addr()}},
		"production/silent": {80: {silent.Addr()}},
		"production/gone":   {80: {gone}},
	}, func(c *proxy.IngressConfig) {
		c.IdleTimeout = time.Second
		c.HandshakeTimeout = 10 * time.Second // the default: this test is not about slow handshakes
	})
	addr := gw.Addr().String()
	good := clientConfig(t, ca)

	for _, tt := range []struct {
		svc    string
		within time.Duration // the client must learn of the fault by then
		reason string        // refusal reason, if the gateway refuses
	}{
		{"resets", 5 * time.Second, ""},
		{"silent", 5 * time.Second, ""}, // the idle timeout (1 s) ends it
		{"gone", 5 * time.Second, "dial_failed"},
	} {
		t.Run(tt.svc, func(t *testing.T) {
			cfg := good.Clone()
			cfg.ServerName = tt.svc + ".production.svc.cluster.local"
			// Several at once, with good clients of the healthy service
			// in between.
			var wg sync.WaitGroup
			errs := make(chan error, 20)
			for range 20 {
				wg.Go(func() {
					start := time.Now()
					err := faultedRoundTrip(addr, cfg)
					if err == nil {
						errs <- errors.New("round trip through a faulty backend succeeded")
						return
					}
					if d := time.Since(start); d > tt.within {
						errs <- errors.New("client learnt of the fault after " + d.String())
					}
				})
			}
			s := measure(addr, good, 50, probeGap)
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			if s.failed > 0 {
				t.Errorf("healthy service: %v (first error %v)", s, s.firstErr)
			}
			t.Logf("healthy service alongside %s: %v", tt.svc, s)
			if tt.reason != "" {
				if n := metric(t, gw.reg, refused, map[string]string{"reason": tt.reason}); n < 20 {
					t.Errorf("%s counted %v times, want 20", tt.reason, n)
				}
			}
			wait.Until(t, 10*time.Second, "no open connection left", func() bool { return gw.OpenConns() == 0 })
		})
	}
}

// faultedRoundTrip writes to the service and waits for an answer that a
// faulty backend never gives: it returns the error the client sees.
func faultedRoundTrip(addr string, cfg *tls.Config) error {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := c.Write([]byte("ping")); err != nil {
		return err
	}
	_, err = io.ReadFull(c, make([]byte, 4))
	return err
}

// tunnel is an egress set tunnelling 127.0.0.1:<port> to an ingress
// gateway, as the west gateway does for its apps.
type tunnel struct {
	*proxy.EgressSet
	listen string
	src    *identity.FileSource
	dir    string
}

// startTunnel runs the tunnel to api.production:8080 at gatewayAddr; opts
// change its route.
func startTunnel(t testing.TB, ca *testpki.CA, gatewayAddr string, opts ...func(*proxy.EgressRoute)) *tunnel {
	t.Helper()
	dir := ca.IdentityDir(t, "linkerd-gateway", "west")
	src := testpki.Source(t, dir)
	e := proxy.NewEgress(proxy.EgressConfig{DialTimeout: 5 * time.Second, DrainTimeout: 5 * time.Second, Log: zerolog.Nop()})
	route := proxy.EgressRoute{
		Listen: "127.0.0.1:0", Cluster: "east", GatewayAddresses: []string{gatewayAddr},
		Target: apiSNI + ":8080", TLS: identity.ClientTLSConfig(src, testpki.Name(t, gwSA, gwNS)),
	}
	for _, o := range opts {
		o(&route)
	}
	if err := e.Update([]proxy.EgressRoute{route}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return &tunnel{EgressSet: e, listen: e.Addrs()["127.0.0.1:0"].String(), src: src, dir: dir}
}

// stream is a long-lived connection through the tunnel that echoes a
// message every few milliseconds until stopped, and reports the first
// failure.
type stream struct {
	c    net.Conn
	stop chan struct{}
	done chan error
}

func openStream(t testing.TB, addr string) *stream {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	s := &stream{c: c, stop: make(chan struct{}), done: make(chan error, 1)}
	go func() {
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		msg := []byte(strings.Repeat("x", 1024))
		got := make([]byte, len(msg))
		for {
			c.SetDeadline(time.Now().Add(10 * time.Second))
			_, err := c.Write(msg)
			if err == nil {
				_, err = io.ReadFull(c, got)
			}
			if err != nil {
				s.done <- err
				return
			}
			select {
			case <-s.stop:
				s.done <- nil
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

// end stops the stream and returns its first failure; it closes it.
func (s *stream) end() error {
	close(s.stop)
	err := <-s.done
	s.c.Close()
	return err
}

// plainRoundTrip is one app connection through the tunnel.
func plainRoundTrip(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("hello")); err != nil {
		return err
	}
	_, err = io.ReadFull(c, make([]byte, 5))
	return err
}

// TestRemoteGatewayRestart: the remote gateway killed mid-transfer fails
// the streams crossing it promptly (no hang), and after it restarts on the
// same address new connections through the tunnel succeed.
func TestRemoteGatewayRestart(t *testing.T) {
	ca := testpki.New(t)
	be := newBackend(t)
	rt := routes{"production/api": {apiPort: {be.Addr()}}}
	east := startGateway(t, ca, rt, func(c *proxy.IngressConfig) { c.DrainTimeout = time.Nanosecond })
	eastAddr := east.Addr().String()
	west := startTunnel(t, ca, eastAddr)
	var streams []*stream
	for range 10 {
		streams = append(streams, openStream(t, west.listen))
	}
	wait.Until(t, 10*time.Second, "streams through east", func() bool { return east.OpenConns() == 10 })
	east.stop() // a drain timeout of 1 ns: every connection is cut at once
	for i, s := range streams {
		select {
		case err := <-s.done:
			if err == nil {
				t.Errorf("stream %d: no error after its gateway died", i)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("stream %d hangs after its gateway died", i)
		}
		s.c.Close()
	}
	if err := plainRoundTrip(west.listen); err == nil {
		t.Fatal("tunnel worked with its remote gateway down")
	}
	ln, err := net.Listen("tcp", eastAddr)
	if err != nil {
		t.Fatal(err)
	}
	startGateway(t, ca, rt, func(c *proxy.IngressConfig) { c.Listener = ln })
	for range 20 {
		if err := plainRoundTrip(west.listen); err != nil {
			t.Fatalf("after restart: %v", err)
		}
	}
}

// TestRotationUnderLoad: the gateway's leaf and both sides' trust bundles
// rotate (new anchor added, new leaves from a new anchor's issuer) while
// streams flow and new connections open: no stream breaks and every new
// connection succeeds.
func TestRotationUnderLoad(t *testing.T) {
	oldCA := testpki.New(t)
	newCA := testpki.New(t)
	be := newBackend(t)
	east := startGateway(t, oldCA, routes{"production/api": {apiPort: {be.Addr()}}})
	west := startTunnel(t, oldCA, east.Addr().String())
	var streams []*stream
	for range 20 {
		streams = append(streams, openStream(t, west.listen))
	}
	stopNew := make(chan struct{})
	newErrs := make(chan error, 1)
	go func() {
		n := 0
		for {
			select {
			case <-stopNew:
				newErrs <- nil
				return
			default:
			}
			if err := plainRoundTrip(west.listen); err != nil {
				newErrs <- errors.New("new connection " + err.Error())
				return
			}
			n++
		}
	}()
	write := func(dir string, ca *testpki.CA, leafName string, leafNS string, anchors ...*x509.Certificate) {
		leaf := ca.Leaf(t, leafName, leafNS, identity.CertOptions{})
		if err := identity.WriteIdentityDir(dir, leaf, []*x509.Certificate{ca.Issuer.Cert}, anchors); err != nil {
			t.Fatal(err)
		}
	}
	both := []*x509.Certificate{oldCA.Anchor.Cert, newCA.Anchor.Cert}
	steps := []struct {
		what string
		do   func()
	}{
		{"both trust both anchors", func() {
			write(east.dir, oldCA, gwSA, gwNS, both...)
			write(west.dir, oldCA, "linkerd-gateway", "west", both...)
		}},
		{"east leaf from the new anchor", func() { write(east.dir, newCA, gwSA, gwNS, both...) }},
		{"west leaf from the new anchor", func() { write(west.dir, newCA, "linkerd-gateway", "west", both...) }},
		// Not yet: removing the old anchor. A client resuming a session
		// whose certificate chains to the removed anchor is refused at
		// the end of its (resumed) handshake instead of being sent to a
		// full one, so one new connection per cached session fails. The
		// fix belongs in identity.ServerTLSConfig (decline such tickets in
		// UnwrapSession); see SECURITY.md and the issue 7 report.
	}
	for _, st := range steps {
		st.do()
		if err := east.src.Reload(); err != nil {
			t.Fatalf("%s: east reload: %v", st.what, err)
		}
		if err := west.src.Reload(); err != nil {
			t.Fatalf("%s: west reload: %v", st.what, err)
		}
		for range 5 {
			if err := plainRoundTrip(west.listen); err != nil {
				t.Fatalf("%s: new connection: %v", st.what, err)
			}
		}
	}
	close(stopNew)
	if err := <-newErrs; err != nil {
		t.Error(err)
	}
	for i, s := range streams {
		if err := s.end(); err != nil {
			t.Errorf("stream %d broke during rotation: %v", i, err)
		}
	}
}

// TestDrainUnderLoad: when the gateway is told to stop (SIGTERM in the
// binary) with 50 streams in flight, it refuses new connections and lets
// every stream finish: none is cut within the drain timeout.
func TestDrainUnderLoad(t *testing.T) {
	ca := testpki.New(t)
	be := newBackend(t)
	east := startGateway(t, ca, routes{"production/api": {apiPort: {be.Addr()}}}, func(c *proxy.IngressConfig) {
		c.DrainTimeout = 30 * time.Second
		c.HandshakeTimeout = 10 * time.Second
	})
	west := startTunnel(t, ca, east.Addr().String())
	var streams []*stream
	for range 50 {
		streams = append(streams, openStream(t, west.listen))
	}
	wait.Until(t, 60*time.Second, "50 streams through east", func() bool { return east.OpenConns() == 50 })
	stopped := make(chan struct{})
	go func() { east.stop(); close(stopped) }()
	wait.Until(t, 5*time.Second, "draining", east.Draining)
	if err := plainRoundTrip(west.listen); err == nil {
		t.Error("new connection accepted while draining")
	}
	// The streams keep flowing during the drain; check each still echoes.
	for i, s := range streams {
		if err := s.end(); err != nil {
			t.Errorf("stream %d cut by the drain: %v", i, err)
		}
	}
	select {
	case <-stopped:
	case <-time.After(20 * time.Second):
		t.Fatal("gateway did not stop after its last stream closed")
	}
	if strings.Contains(east.logs.String(), "drain timeout") {
		t.Error("drain timed out and closed connections")
	}
}
