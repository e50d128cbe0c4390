package hostile

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcgate/mcgate/internal/testenv/wait"
)

// Shared-address rounds: quiet and attack rounds alternate so that both
// sample the machine's background load alike.
const (
	sharedRounds      = 5
	sharedProbesRound = 10 // good clients per round: 50 under attack in all
	sharedStalled     = 500
	// The attacker runs more workers than the address may hold (half the
	// slots), each reconnecting at most once a second as the suite's
	// slowloris does, so that the address holds 500 stalled handshakes at
	// every moment and every good client has to evict one of them.
	sharedAttackers = sharedStalled + sharedStalled/10
)

// TestSharedAddressStalledHandshakes is issue 22's SNAT case: behind a load
// balancer that SNATs, good clients share an address with an attacker. The
// attacker holds 500 stalled handshakes (half a ClientHello, then silence;
// a new one when the gateway closes one, see sharedAttackers) from
// goodSource, the address the good clients use, against a gateway at its
// default slots (1,000, a tenth per source). Every good client must be
// served: the gateway evicts the address's oldest stalled handshake for it
// instead of refusing it. Its p99 is compared with the quiet rounds'
// (enforced with MCGATE_HOSTILE_STRICT=1, like TestHostileClients).
func TestSharedAddressStalledHandshakes(t *testing.T) {
	f := newAPIFixture(t)
	gw, good := f.gw, f.good
	addr := gw.Addr().String()
	hello := clientHello(t, apiSNI)
	stalled := attack{name: "stalled handshakes", workers: sharedAttackers, every: time.Second,
		hit: stallFromGoodSource(hello[:len(hello)/2])}

	var quiet, attacked stats
	var attackDials int64
	for round := range sharedRounds {
		q := measure(addr, good, sharedProbesRound, probeGap)
		dials, stop := stalled.launch(addr)
		wait.Until(t, 30*time.Second, "500 stalled handshakes in their slots", func() bool {
			return gw.HandshakesInProgress() >= sharedStalled
		})
		a := measure(addr, good, sharedProbesRound, probeGap)
		stop()
		attackDials += dials.Load()
		wait.Until(t, 30*time.Second, "the stalled handshakes gone", func() bool { return gw.HandshakesInProgress() == 0 })
		t.Logf("round %d: quiet %v; under attack %v", round, q, a)
		quiet, attacked = addStats(quiet, q), addStats(attacked, a)
	}
	// The p99 of 50 samples is their maximum.
	ratio := float64(attacked.max) / float64(quiet.max)
	evictions := metric(t, gw.reg, handshakeFailures, map[string]string{"reason": "evicted"})
	t.Logf("good clients sharing the address of %d stalled handshakes: %d/%d served, p99 %v vs %v quiet (%.2fx); %d attacker connections, %v evictions",
		sharedStalled, attacked.ok, attacked.ok+attacked.failed, attacked.max.Round(10*time.Microsecond), quiet.max.Round(10*time.Microsecond), ratio,
		attackDials, evictions)
	if evictions == 0 {
		t.Error("no handshake evicted: the address never reached its share")
	}
	if quiet.failed > 0 {
		t.Fatalf("quiet rounds: %d failed (first: %v)", quiet.failed, quiet.firstErr)
	}
	if attacked.failed > 0 || attacked.ok != sharedRounds*sharedProbesRound {
		t.Errorf("under attack: %d/%d good clients served (first error: %v)", attacked.ok, sharedRounds*sharedProbesRound, attacked.firstErr)
	}
	if n := metric(t, gw.reg, refused, map[string]string{"reason": "handshake_limit"}); n != 0 {
		t.Errorf("%v connections refused for want of a handshake slot", n)
	}
	if ratio > 2 {
		report := t.Logf
		if os.Getenv("MCGATE_HOSTILE_STRICT") != "" {
			report = t.Errorf
		}
		report("good client p99 %v under attack, more than 2x the quiet %v", attacked.max, quiet.max)
	}
}

// addStats merges the counts of two phases and keeps the larger maximum
// (the percentiles of the parts do not merge).
func addStats(s, more stats) stats {
	s.ok += more.ok
	s.failed += more.failed
	s.max = max(s.max, more.max)
	if s.firstErr == nil {
		s.firstErr = more.firstErr
	}
	return s
}

// stallFromGoodSource connects from goodSource, sends partial, and holds
// the connection until the gateway closes it (eviction or handshake
// timeout) or ctx ends.
func stallFromGoodSource(partial []byte) func(context.Context, string, *atomic.Int64) {
	return func(ctx context.Context, addr string, dials *atomic.Int64) {
		d := &net.Dialer{Timeout: 5 * time.Second, LocalAddr: goodSource}
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			if ctx.Err() == nil {
				fmt.Fprintln(os.Stderr, "stalled handshake: dial:", err)
			}
			return
		}
		defer context.AfterFunc(ctx, func() { c.Close() })()
		defer c.Close()
		dials.Add(1)
		c.Write(partial)
		io.Copy(io.Discard, c)
	}
}
