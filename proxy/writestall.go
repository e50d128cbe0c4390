package proxy

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync/atomic"
	"time"
)

// DefaultWriteStallTimeout is how long a peer may take none of the bytes
// a splice writes to it before the connection is reset: nginx's
// send_timeout and proxy_send_timeout default, the order of HAProxy's usual
// `timeout client` and `timeout server`.
const DefaultWriteStallTimeout = time.Minute

// errWriteStalled ends a splice whose destination took no byte for the
// write-stall timeout. It wraps os.ErrDeadlineExceeded, what the write
// returned.
var errWriteStalled = fmt.Errorf("proxy: peer took no bytes for the write-stall timeout: %w", os.ErrDeadlineExceeded)

// writeStall bounds how long a splice's write waits on a peer that stopped
// reading. Backpressure holds such a write, and with it the direction's
// goroutine, buffers and the sockets' queues, and stops reading the other
// peer; without a bound they are held until the idle timeout (1 h), which
// the peer that keeps writing the other way never lets expire.
//
// The deadline is on progress, not on the whole write: each time the
// kernel takes some of the write into the socket, which needs the peer to
// have taken earlier bytes once the send queue is full (tcp_wmem, or the
// unsent limit of listen_linux.go where set), the write gets another
// timeout. A slow peer that reads
// keeps its connection however long a write takes; one that takes nothing
// for the timeout gets a reset, as HAProxy's `timeout client` and nginx's
// `proxy_timeout` do.
type writeStall struct {
	timeout time.Duration // >0
	aborted *atomic.Bool  // the splice's: its expired deadlines end writes for good
}

// write writes p to c (a TCP connection, or what a transport wraps) under
// the write-stall deadline, which it owns: callers set no write deadline.
// A nil writeStall writes as c.Write does.
func (w *writeStall) write(c net.Conn, p []byte) (int, error) {
	if w == nil {
		return c.Write(p)
	}
	n := 0
	for {
		c.SetWriteDeadline(time.Now().Add(w.timeout))
		if w.aborted.Load() {
			// splicer.abort expired the deadline to end this write; it may
			// have done so just before the line above replaced it.
			return n, net.ErrClosed
		}
		m, err := c.Write(p[n:])
		n += m
		switch {
		case err == nil || !errors.Is(err, os.ErrDeadlineExceeded):
			return n, err
		case w.aborted.Load():
			return n, err
		case m == 0:
			return n, errWriteStalled
		}
		// The peer took some: a slow reader, not a stalled one.
	}
}
