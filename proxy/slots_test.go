package proxy_test

import (
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/mcgate/mcgate/identity"
	"github.com/mcgate/mcgate/internal/testenv/testpki"
	"github.com/mcgate/mcgate/internal/testenv/wait"
	"github.com/mcgate/mcgate/proxy"
)

// TestIngressHandshakeEviction: slow clients holding every handshake slot
// do not lock good clients out for a whole handshake timeout; the oldest
// is evicted, counted and logged, once it has had a quarter of the timeout.
func TestIngressHandshakeEviction(t *testing.T) {
	ca := testpki.New(t)
	be := newBackend(t)
	gw := startGateway(t, ca, routes{"production/api": {8080: {be.Addr()}}}, nil, func(c *proxy.IngressConfig) {
		c.MaxHandshakes = 2
		c.MaxHandshakesPerSource = 3          // this is about the overall cap
		c.HandshakeTimeout = 20 * time.Second // eviction, not the timeout, must free the slots
	})
	addr := gw.Addr().String()
	var slow []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write([]byte{0x16, 0x03, 0x01}) // the start of a record, then silence
		slow = append(slow, c)
	}
	// Slots are taken in each connection's goroutine: wait until the slow
	// ones hold both, or a newcomer scheduled first could take one.
	wait.Until(t, 10*time.Second, "slow clients in their handshakes", func() bool { return gw.HandshakesInProgress() == 2 })
	good := clientConfig(t, ca, "web", "west", identity.CertOptions{})
	// Until the slow ones are old enough (5 s here), newcomers are refused.
	wait.Until(t, 10*time.Second, "slow handshakes hold both slots", func() bool {
		c, err := dialTLS(t, addr, good, "api.production.svc.cluster.local")
		if err == nil {
			err = readErr(c)
			c.Close()
		}
		return counter(t, gw.reg, "gateway_refused_connections_total", map[string]string{"reason": "handshake_limit"}) >= 1
	})
	wait.Until(t, 20*time.Second, "good client gets a handshake slot", func() bool {
		c, err := dialTLS(t, addr, good, "api.production.svc.cluster.local")
		if err != nil {
			return false
		}
		got, err := echo(c, "hello")
		return err == nil && got == "hello"
	})
	// Slots are taken in each connection's goroutine, so either slow client
	// may be the oldest: one of them must have been closed by the eviction.
	closed := make(chan error, len(slow))
	for _, c := range slow {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		go func() { _, err := io.Copy(io.Discard, c); closed <- err }()
	}
	var errs []error
	for range slow {
		if err := <-closed; err == nil {
			errs = nil
			break
		} else {
			errs = append(errs, err)
		}
	}
	if errs != nil {
		t.Fatalf("no slow client was closed by the eviction: %v", errs)
	}
	if n := counter(t, gw.reg, "gateway_handshake_failures_total", map[string]string{"reason": "evicted"}); n < 1 {
		t.Fatal("eviction not counted")
	}
	if !contains(gw.logs.String(), `"reason":"evicted"`) {
		t.Error("eviction not logged")
	}
}

// TestIngressHandshakesPerSource: once half the handshake slots are taken,
// a host over its share takes a slot only by evicting its own oldest
// handshake, before any cryptography: a good client sharing the address of
// stalled ones (SNAT) is served, the host's share does not grow, and
// another host's stalled handshake is never taken.
func TestIngressHandshakesPerSource(t *testing.T) {
	ca := testpki.New(t)
	be := newBackend(t)
	gw := startGateway(t, ca, routes{"production/api": {8080: {be.Addr()}}}, nil, func(c *proxy.IngressConfig) {
		c.MaxHandshakes = 10
		c.MaxHandshakesPerSource = 2
		c.HandshakeTimeout = 20 * time.Second
	})
	addr := gw.Addr().String()
	stall := func(from net.IP) net.Conn {
		d := &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: from}}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.Write([]byte{0x16, 0x03, 0x01})
		return c
	}
	// Another host's stalled handshake, the oldest of all.
	bystander := stall(net.IPv4(127, 0, 0, 3))
	wait.Until(t, 10*time.Second, "the bystander in its slot", func() bool { return gw.HandshakesInProgress() == 1 })
	// Below half the slots a source is not limited: four stalled handshakes
	// from 127.0.0.1 are all taken, which makes half.
	var stalled []net.Conn
	for range 4 {
		stalled = append(stalled, stall(net.IPv4(127, 0, 0, 1)))
	}
	wait.Until(t, 10*time.Second, "five stalled handshakes in their slots", func() bool { return gw.HandshakesInProgress() == 5 })
	// Now at half: a good client from 127.0.0.1, over its share of 2, is
	// served and one of 127.0.0.1's stalled handshakes is evicted.
	good := clientConfig(t, ca, "web", "west", identity.CertOptions{})
	c, err := dialTLS(t, addr, good, "api.production.svc.cluster.local")
	if err != nil {
		t.Fatalf("a good client sharing the address of stalled handshakes: %v", err)
	}
	if got, err := echo(c, "hello"); err != nil || got != "hello" {
		t.Fatalf("a good client sharing the address of stalled handshakes: %q, %v", got, err)
	}
	c.Close()
	if n := counter(t, gw.reg, "gateway_handshake_failures_total", map[string]string{"reason": "evicted"}); n != 1 {
		t.Fatalf("%v evictions, want 1", n)
	}
	closedBy := func(cs ...net.Conn) int {
		n := 0
		for _, c := range cs {
			c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			if _, err := c.Read(make([]byte, 1)); errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) {
				n++
			}
		}
		return n
	}
	if n := closedBy(stalled...); n != 1 {
		t.Fatalf("%d of 127.0.0.1's stalled handshakes closed, want 1", n)
	}
	if closedBy(bystander) != 0 {
		t.Fatal("127.0.0.1 took the slot of 127.0.0.3")
	}
	if n := gw.HandshakesInProgress(); n != 4 {
		t.Fatalf("%d handshakes in progress after the good client, want 4 (3 stalled from 127.0.0.1, the bystander)", n)
	}
}

// TestIngressOneBusySourceNotRefused: all connections of a peer cluster come
// from its gateway's address; a burst of its handshakes larger than the
// per-source share is served while the slots are less than half taken.
func TestIngressOneBusySourceNotRefused(t *testing.T) {
	ca := testpki.New(t)
	be := newBackend(t)
	gw := startGateway(t, ca, routes{"production/api": {8080: {be.Addr()}}}, nil, func(c *proxy.IngressConfig) {
		c.MaxHandshakes = 100
		c.MaxHandshakesPerSource = 2
		c.HandshakeTimeout = 20 * time.Second
	})
	addr := gw.Addr().String()
	// Ten handshakes from 127.0.0.1 stall in their slots: five times the
	// per-source share, a tenth of the slots.
	for range 10 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write([]byte{0x16, 0x03, 0x01})
	}
	wait.Until(t, 10*time.Second, "ten handshakes in their slots", func() bool { return gw.HandshakesInProgress() == 10 })
	good := clientConfig(t, ca, "web", "west", identity.CertOptions{})
	c, err := dialTLS(t, addr, good, "api.production.svc.cluster.local")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := echo(c, "busy peer"); err != nil || got != "busy peer" {
		t.Fatalf("a busy source was refused below half the slots: %q, %v", got, err)
	}
	// Below half the slots a source's share is not enforced: nothing of its
	// own was evicted to make room.
	if n := counter(t, gw.reg, "gateway_handshake_failures_total", map[string]string{"reason": "evicted"}); n != 0 {
		t.Fatalf("%v evictions below half the slots", n)
	}
}
