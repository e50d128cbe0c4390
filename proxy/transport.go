package proxy

import (
	"io"
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
// connection churn the pool is often empty after a GC. crypto/tls asks for
// more only when it has no complete record, so a read that waits on the
// socket always finds the transport empty: parking (park.go) can trust the
// socket's readiness.
//
// Writes: between hold and flush, the records of one tls.Conn.Write are
// gathered and written with one syscall. Only the direction that copies into
// this connection holds; writes from elsewhere (alerts, close_notify) go out
// directly unless they land inside a hold, where flush sends them in order.
//
// Both buffers count against the server's bufferBudget; without room the
// transport reads and writes directly, as crypto/tls would on its own.
type transport struct {
	net.Conn // the TCP connection
	budget   *bufferBudget

	// readAhead and readEOF belong to the one goroutine that reads (under
	// crypto/tls's input lock); rmu guards the buffer against Close from
	// another.
	readAhead bool
	poll      *pollRead // reads the socket while its direction's pollRead runs
	readEOF   bool      // a socket read returned EOF: the peer's FIN (see errTruncated)
	rmu       sync.Mutex
	rbuf      *[]byte // nil when empty
	r, w      int     // unread bytes are (*rbuf)[r:w]
	closed    bool

	wmu     sync.Mutex
	stall   *writeStall // set as the splice starts; nil: plain writes
	holding bool        // a hold is on and its buffer is budgeted
	wbuf    *[]byte     // taken at the first write of a hold
	wn      int
}

func newTransport(c net.Conn, budget *bufferBudget) *transport {
	return &transport{Conn: c, budget: budget}
}

func (t *transport) Read(p []byte) (int, error) {
	t.rmu.Lock()
	if t.rbuf == nil {
		t.rmu.Unlock()
		if !t.readAhead || len(p) >= transportBufSize || !t.budget.take(transportBufSize) {
			return t.readSocket(p)
		}
		bp := transportBufPool.Get().(*[]byte)
		n, err := t.readSocket(*bp)
		t.rmu.Lock()
		if n == 0 || t.closed {
			t.rmu.Unlock()
			t.releaseRead(bp)
			if err == nil {
				err = net.ErrClosed
			}
			return 0, err
		}
		// A read that returned bytes and an error returns the error again
		// on the next read, once the bytes are served.
		t.rbuf, t.r, t.w = bp, 0, n
	}
	defer t.rmu.Unlock()
	n := copy(p, (*t.rbuf)[t.r:t.w])
	t.r += n
	if t.r == t.w {
		t.releaseRead(t.rbuf)
		t.rbuf = nil
	}
	return n, nil
}

func (t *transport) readSocket(p []byte) (n int, err error) {
	if t.poll != nil {
		n, err = t.poll.read(p)
	} else {
		n, err = t.Conn.Read(p)
	}
	if err == io.EOF {
		t.readEOF = true
	}
	return n, err
}

func (t *transport) releaseRead(bp *[]byte) {
	transportBufPool.Put(bp)
	t.budget.give(transportBufSize)
}

// Close closes the connection and gives back a read-ahead buffer that was
// still holding bytes (a connection aborted in the middle of a transfer).
func (t *transport) Close() error {
	t.rmu.Lock()
	t.closed = true
	if t.rbuf != nil {
		t.releaseRead(t.rbuf)
		t.rbuf = nil
	}
	t.rmu.Unlock()
	return t.Conn.Close()
}

// Write sends p now, or gathers it during a hold.
func (t *transport) Write(p []byte) (int, error) {
	t.wmu.Lock()
	defer t.wmu.Unlock()
	if !t.holding {
		return t.stall.write(t.Conn, p)
	}
	if t.wn+len(p) > transportBufSize {
		if err := t.writeHeldLocked(); err != nil {
			return 0, err
		}
	}
	if len(p) > transportBufSize {
		return t.stall.write(t.Conn, p)
	}
	if t.wbuf == nil {
		t.wbuf = transportBufPool.Get().(*[]byte)
	}
	t.wn += copy((*t.wbuf)[t.wn:], p)
	return len(p), nil
}

// hold starts gathering writes until flush, if the budget has room.
func (t *transport) hold() {
	if !t.budget.take(transportBufSize) {
		return
	}
	t.wmu.Lock()
	t.holding = true
	t.wmu.Unlock()
}

// flush ends a hold and writes what it gathered. An error here is a write
// error crypto/tls did not see: the caller must abort the connection.
func (t *transport) flush() error {
	t.wmu.Lock()
	defer t.wmu.Unlock()
	if !t.holding {
		return nil
	}
	t.holding = false
	err := t.writeHeldLocked()
	if t.wbuf != nil {
		transportBufPool.Put(t.wbuf)
		t.wbuf = nil
	}
	t.budget.give(transportBufSize)
	return err
}

func (t *transport) writeHeldLocked() error {
	if t.wn == 0 {
		return nil
	}
	_, err := t.stall.write(t.Conn, (*t.wbuf)[:t.wn])
	t.wn = 0
	return err
}
