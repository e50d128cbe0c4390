package proxy

import (
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// waitFor polls cond until it holds, failing t after 10 s (testproxy has
// the same, but imports this package).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (dialed, accepted net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if dialed, err = net.Dial("tcp", ln.Addr().String()); err != nil {
		t.Fatal(err)
	}
	if accepted, err = ln.Accept(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dialed.Close(); accepted.Close() })
	return dialed, accepted
}

// TestParkerFailureResumes: when the epoll descriptor fails under the
// parker, the parked directions resume in goroutines and the connection
// carries data both ways as if it had never parked.
func TestParkerFailureResumes(t *testing.T) {
	gauge := prometheus.NewGauge(prometheus.GaugeOpts{Name: "parked"})
	o, err := newSpliceOptions(0, 5*time.Millisecond, zerolog.Nop(), gauge)
	if err != nil {
		t.Fatal(err)
	}
	if o.parker == nil {
		t.Skip("no epoll on this platform: nothing parks")
	}
	stop := o.runParker()
	defer stop()
	app, client := tcpPair(t)
	upstream, backend := tcpPair(t)
	done := make(chan error, 1)
	bytes := prometheus.NewCounter(prometheus.CounterOpts{Name: "bytes"})
	newSplicer(o, plainSide(client), plainSide(upstream), bytes, bytes, func(err error) { done <- err }).start()

	waitFor(t, "both directions parked", func() bool { return o.parker.parkedLen() == 2 })
	o.parker.ep.close() // the descriptor fails: the parker's wait returns an error
	waitFor(t, "both directions resumed", func() bool { return o.parker.parkedLen() == 0 })
	for _, way := range [][2]net.Conn{{app, backend}, {backend, app}} {
		if _, err := io.WriteString(way[0], "ping"); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 4)
		way[1].SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadFull(way[1], buf); err != nil || string(buf) != "ping" {
			t.Fatalf("after the parker failed: read %q, %v", buf, err)
		}
	}
	app.(*net.TCPConn).CloseWrite()
	backend.(*net.TCPConn).CloseWrite()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("splice ended with %v, want a clean end", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("splice did not end after both half-closes")
	}
}

// TestTrackerLateCloseWith: a splice registered after the drain deadline
// (the drain has already closed its client connection, which would wake
// no parked direction) is aborted at once, exactly once, and the drain
// returns when it is done.
func TestTrackerLateCloseWith(t *testing.T) {
	var tr tracker
	c, _ := net.Pipe()
	if !tr.add(c) {
		t.Fatal("add refused")
	}
	drained := make(chan int, 1)
	go func() { drained <- tr.drain(0) }()
	waitFor(t, "drain past its deadline", func() bool {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		return tr.closed
	})
	var aborts atomic.Int32
	tr.closeWith(c, func() {
		aborts.Add(1)
		tr.done(c)
	})
	select {
	case n := <-drained:
		if n != 1 {
			t.Errorf("drain closed %d connections, want 1", n)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("drain still waiting for a connection registered after its deadline")
	}
	if n := aborts.Load(); n != 1 {
		t.Errorf("aborted %d times, want 1", n)
	}
}
