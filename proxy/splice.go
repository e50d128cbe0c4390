package proxy

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// side is one end of a spliced pair.
type side struct {
	r    io.Reader // reads; may buffer bytes peeked before routing
	conn net.Conn  // writes, deadlines, close
	raw  net.Conn  // the TCP connection under conn (conn itself when plain)
}

func plainSide(c net.Conn) side { return side{r: c, conn: c, raw: c} }

// closeWrite ends this side's outgoing stream: close_notify on TLS, then a
// FIN on the TCP connection, so the peer sees the end of the stream exactly
// as the other peer sent it.
func (s side) closeWrite() {
	if tc, ok := s.conn.(*tls.Conn); ok {
		tc.CloseWrite()
	}
	if cw, ok := s.raw.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
}

// abort closes this side with a TCP reset where possible, so that a fault
// on the other side (a reset, a timeout) reaches this peer as a fault and
// not as a clean end of stream.
func (s side) abort() {
	if tc, ok := s.raw.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	s.conn.Close()
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

var errIdle = errors.New("idle timeout")

// splicer copies both ways between a client and an upstream.
type splicer struct {
	idle       time.Duration // no bytes either way for this long ends the pair
	toUpstream prometheus.Counter
	toClient   prometheus.Counter
	lastActive atomic.Int64 // unix nanos of the last byte either way

	client, upstream side
	abortOnce        sync.Once
}

// run copies until both directions have ended, then closes both sides. A
// clean end (EOF) in one direction is passed on as a half-close and the
// other direction keeps flowing; an error in either direction aborts both
// at once, so that neither waits on a peer that will never speak again.
// It returns the first error other than a clean end.
func (s *splicer) run(client, upstream side) error {
	s.client, s.upstream = client, upstream
	s.lastActive.Store(time.Now().UnixNano())
	errc := make(chan error, 1)
	go func() { errc <- s.copyOrAbort(upstream, client, s.toUpstream) }()
	err := s.copyOrAbort(client, upstream, s.toClient)
	if err2 := <-errc; err == nil {
		err = err2
	}
	if err == nil {
		client.conn.Close()
		upstream.conn.Close()
	}
	return err
}

func (s *splicer) copyOrAbort(dst, src side, counter prometheus.Counter) error {
	err := s.copy(dst, src, counter)
	if err != nil {
		// The other direction may be blocked on either side: unblock it.
		s.abortOnce.Do(func() {
			s.client.abort()
			s.upstream.abort()
		})
	}
	return err
}

// copy moves bytes from src to dst until src ends (then half-closes dst)
// or fails.
func (s *splicer) copy(dst, src side, counter prometheus.Counter) error {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	if s.idle > 0 {
		src.conn.SetReadDeadline(time.Now().Add(s.idle))
	}
	for {
		n, rerr := src.r.Read(buf)
		if n > 0 {
			s.lastActive.Store(time.Now().UnixNano())
			if s.idle > 0 {
				// A peer that stops reading must not hold us forever.
				dst.conn.SetWriteDeadline(time.Now().Add(s.idle))
			}
			if _, werr := dst.conn.Write(buf[:n]); werr != nil {
				return werr
			}
			counter.Add(float64(n))
		}
		switch {
		case rerr == nil:
		case errors.Is(rerr, io.EOF), errors.Is(rerr, io.ErrUnexpectedEOF):
			// io.ErrUnexpectedEOF is a TLS peer that closed TCP without
			// close_notify (common, e.g. openssl s_client); treat it as
			// the end of its stream.
			dst.closeWrite()
			return nil
		case errors.Is(rerr, os.ErrDeadlineExceeded) && s.idle > 0:
			// The read deadline is per direction, idleness is per pair:
			// keep waiting while the other direction is active.
			last := time.Unix(0, s.lastActive.Load())
			if time.Since(last) >= s.idle {
				return errIdle
			}
			src.conn.SetReadDeadline(last.Add(s.idle))
		default:
			return rerr
		}
	}
}
