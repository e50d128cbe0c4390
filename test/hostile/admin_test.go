package hostile

import (
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcgate/mcgate/internal/testenv/testproxy"
	"github.com/mcgate/mcgate/probe"
)

// adminIdleTimeout is the admin servers' idle timeout in this test (30 s
// by default, which a test would wait out).
const adminIdleTimeout = 500 * time.Millisecond

// TestAdminDescriptors (issue 25, point 2): a client that needs no
// credential opens 300 keep-alive connections to the admin port and 300
// to the probe port, sends one request on each and never another. The
// gateway must hold at most its connection cap of them at once, close
// them once idle, be back to its baseline of descriptors afterwards, and
// keep serving the data plane meanwhile. The clients run in a child
// process, so /proc/self/fd counts the gateway's descriptors only.
func TestAdminDescriptors(t *testing.T) {
	const perPort = 300
	f := newAPIFixture(t)
	gw, good := f.gw, f.good
	ready := func() error { return nil }
	admin := serveAdmin(t, probe.AdminConfig{Gatherer: prometheus.NewRegistry(), Ready: ready, IdleTimeout: adminIdleTimeout})
	probePort := serveAdmin(t, probe.AdminConfig{ProbeOnly: true, Ready: ready, IdleTimeout: adminIdleTimeout})
	baseline := openFDs(t)

	c := startChild(t, "idle-http", childJob{Addrs: []string{admin, probePort}, N: perPort})
	c.waitFor(t, "ready")
	peak := sampleFDs(t)
	// The data plane is served while the admin ports are flooded.
	if err := roundTrip(gw.Addr().String(), good); err != nil {
		t.Errorf("ingress under an admin-port flood: %v", err)
	}
	closed := c.waitFor(t, "closed")
	held := peak.stop()
	after := openFDs(t)
	t.Logf("descriptors: baseline %d, peak %d (+%d) while %d idle keep-alive connections were open (idle timeout %v), %d after; client: %s",
		baseline, held, held-baseline, 2*perPort, adminIdleTimeout, after, closed)
	if limit := baseline + 2*probe.DefaultMaxConns + 16; held > limit {
		t.Errorf("peak of %d descriptors, want at most %d (two servers of %d connections)", held, limit, probe.DefaultMaxConns)
	}
	if after > baseline+2 {
		t.Errorf("%d descriptors after the idle timeout, baseline %d", after, baseline)
	}
	if closed != "closed 600 of 600" {
		t.Errorf("client: %s, want every connection closed by the gateway", closed)
	}
}

// serveAdmin runs an admin server on 127.0.0.1 until the test ends and
// returns its address.
func serveAdmin(t *testing.T, cfg probe.AdminConfig) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimPrefix(testproxy.ServeAdmin(t, ln, cfg), "http://")
}

func openFDs(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(fds)
}

// fdSampler records the most descriptors seen until stopped.
type fdSampler struct {
	stopc chan struct{}
	wg    sync.WaitGroup
	max   int
}

func sampleFDs(t *testing.T) *fdSampler {
	s := &fdSampler{stopc: make(chan struct{}), max: openFDs(t)}
	s.wg.Go(func() {
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-s.stopc:
				return
			case <-tick.C:
				if n, err := os.ReadDir("/proc/self/fd"); err == nil {
					s.max = max(s.max, len(n))
				}
			}
		}
	})
	t.Cleanup(func() { s.stop() })
	return s
}

// stop ends the sampling and returns the peak; idempotent.
func (s *fdSampler) stop() int {
	select {
	case <-s.stopc:
	default:
		close(s.stopc)
	}
	s.wg.Wait()
	return s.max
}
