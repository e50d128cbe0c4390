package proxy

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/mcgate/mcgate/internal/testenv/wait"
)

// TestParkerFailureResumes: when the epoll descriptor fails under the
// parker, the parked directions resume in goroutines and the connection
// carries data both ways as if it had never parked.
func TestParkerFailureResumes(t *testing.T) {
	gauge := prometheus.NewGauge(prometheus.GaugeOpts{Name: "parked"})
	o, err := newSpliceOptions(0, 5*time.Millisecond, nil, zerolog.Nop(), gauge)
	if err != nil {
		t.Fatal(err)
	}
	if o.parker == nil {
		t.Fatal("no parker on Linux: epoll is missing")
	}
	stop := o.runParker()
	defer stop()
	app, client := tcpPair(t)
	upstream, backend := tcpPair(t)
	done := make(chan error, 1)
	bytes := prometheus.NewCounter(prometheus.CounterOpts{Name: "bytes"})
	newSplicer(o, plainSide(client), plainSide(upstream), bytes, bytes, func(err error) { done <- err }).start()

	wait.Until(t, 10*time.Second, "both directions parked", func() bool { return o.parker.parkedLen() == 2 })
	o.parker.ep.close() // the descriptor fails: the parker's wait returns an error
	wait.Until(t, 10*time.Second, "both directions resumed", func() bool { return o.parker.parkedLen() == 0 })
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
