package identity_test

import (
	"syscall"
	"testing"
	"time"

	"github.com/mcgate/mcgate/identity"
)

// benchmarkHandshake dials the loopback echo server with cfg and makes one
// round trip per iteration: the round trip waits for the server to verify
// the client's chain and, on the resumed path, delivers the next ticket.
// With cacheMiss, the server forgets the chains it verified before every
// handshake, so it verifies the client's chain in full each time.
func benchmarkHandshake(b *testing.B, resumed, cacheMiss bool) {
	p := newPair(b, nil, nil)
	s := startServer(b, identity.ServerTLSConfig(p.srv))
	cfg := identity.ClientTLSConfig(p.cli, p.gateway)
	if !resumed {
		cfg.ClientSessionCache = nil
	}
	prime, err := dial(b, s.addr, cfg)
	if err != nil {
		b.Fatal(err)
	}
	if err := echo(prime, "x"); err != nil {
		b.Fatal(err)
	}
	prime.Close()
	b.ReportAllocs()
	// The machine is shared, so wall time per handshake says little; the
	// process's CPU time per handshake (client and server together) is
	// steadier.
	cpu0 := cpuTime(b)
	for b.Loop() {
		if cacheMiss {
			identity.ForgetVerifiedChains(p.srv)
		}
		c, err := dialConn(b.Context(), s.addr, cfg)
		if err != nil {
			b.Fatal(err)
		}
		if err := echo(c, "x"); err != nil {
			b.Fatal(err)
		}
		if c.ConnectionState().DidResume != resumed {
			b.Fatalf("resumed = %v, want %v", !resumed, resumed)
		}
		c.Close()
	}
	b.ReportMetric(float64((cpuTime(b)-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
}

// cpuTime returns the user and system CPU time of the process so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkHandshakeFull: full handshakes of one client, whose chain the
// server has verified before (cache hit) or not (cache miss). The client's
// work is the same in both, so the difference is the server's chain check.
func BenchmarkHandshakeFull(b *testing.B) {
	b.Run("cache hit", func(b *testing.B) { benchmarkHandshake(b, false, false) })
	b.Run("cache miss", func(b *testing.B) { benchmarkHandshake(b, false, true) })
}

func BenchmarkHandshakeResumed(b *testing.B) { benchmarkHandshake(b, true, false) }
