package proxy

import (
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcgate/mcgate/internal/testenv/wait"
)

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

// returns when it is done.
func TestTrackerLateCloseWith(t *testing.T) {
	var tr tracker
	c, _ := net.Pipe()
	if !tr.add(c) {
		t.Fatal("add refused")
	}
	drained := make(chan int, 1)
	go func() { drained <- tr.drain(0) }()
	wait.Until(t, 10*time.Second, "drain past its deadline", func() bool {
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
