package proxy

import (
	"net"
	"sync"
)

// transportBufSize is how much a transport reads ahead or holds back at
// once: four full TLS records.
const transportBufSize = 64 << 10

var transportBufPool = sync.Pool{New: func() any { b := make([]byte, transportBufSize); return &b }}

// transport sits between crypto/tls and the TCP connection so that bulk
// data costs one syscall per 64 KiB instead of one per 16 KiB record.
// crypto/tls reads the socket for one record at a time and writes each
// record with a write of its own; on the VMs our users run on, the syscall
// and the per-segment work of the network stack cost more than the cipher.
//
// Reads: once the direction reading this connection has seen bulk data
// (readAhead), a read crypto/tls asks for that is smaller than
// transportBufSize reads up to that much into a pooled buffer and serves the
// following reads from it. The buffer goes back to the pool as soon as it is
// drained, so an idle connection holds none. Handshakes and small requests
// read directly: for them a 64 KiB buffer would only cost, and under
// connection churn the pool is often empty after a GC. crypto/tls asks for more only when it has no
// complete record, so a read that waits on the socket always finds the
// transport empty: parking (park.go) can trust the socket's readiness.
//
// Writes: between hold and flush, the records of one tls.Conn.Write are
// gathered and written with one syscall. Only the direction that copies into
// this connection holds; writes from elsewhere (alerts, close_notify) go out
// directly unless they land inside a hold, where flush sends them in order.
type transport struct {
	net.Conn // the TCP connection

	// Read side: used only under crypto/tls's input lock, by one goroutine
	// at a time.
	readAhead bool
	rbuf      *[]byte // nil when empty
	r, w      int     // unread bytes are (*rbuf)[r:w]

	wmu     sync.Mutex
	holding bool
	wbuf    *[]byte // nil outside a hold
	wn      int
}

func newTransport(c net.Conn) *transport { return &transport{Conn: c} }

func (t *transport) Read(p []byte) (int, error) {
	if t.rbuf == nil {
		if !t.readAhead || len(p) >= transportBufSize {
			return t.Conn.Read(p)
		}
		bp := transportBufPool.Get().(*[]byte)
		n, err := t.Conn.Read(*bp)
		if n == 0 {
			transportBufPool.Put(bp)
			return 0, err
		}
		// A read that returned bytes and an error returns the error again
		// on the next read, once the bytes are served.
		t.rbuf, t.r, t.w = bp, 0, n
	}
	n := copy(p, (*t.rbuf)[t.r:t.w])
	t.r += n
	if t.r == t.w {
		transportBufPool.Put(t.rbuf)
		t.rbuf = nil
	}
	return n, nil
}

// Write sends p now, or gathers it during a hold.
func (t *transport) Write(p []byte) (int, error) {
	t.wmu.Lock()
	defer t.wmu.Unlock()
	if !t.holding {
		return t.Conn.Write(p)
	}
	if t.wn+len(p) > transportBufSize {
		if err := t.writeHeldLocked(); err != nil {
			return 0, err
		}
	}
	if len(p) > transportBufSize {
		return t.Conn.Write(p)
	}
	if t.wbuf == nil {
		t.wbuf = transportBufPool.Get().(*[]byte)
	}
	t.wn += copy((*t.wbuf)[t.wn:], p)
	return len(p), nil
}

// hold starts gathering writes until flush.
func (t *transport) hold() {
	t.wmu.Lock()
	t.holding = true
	t.wmu.Unlock()
}

// flush ends a hold and writes what it gathered. An error here is a write
// error crypto/tls did not see: the caller must abort the connection.
func (t *transport) flush() error {
	t.wmu.Lock()
	defer t.wmu.Unlock()
	t.holding = false
	err := t.writeHeldLocked()
	if t.wbuf != nil {
		transportBufPool.Put(t.wbuf)
		t.wbuf = nil
	}
	return err
}

func (t *transport) writeHeldLocked() error {
	if t.wn == 0 {
		return nil
	}
	_, err := t.Conn.Write((*t.wbuf)[:t.wn])
	t.wn = 0
	return err
}
