package proxy

import (
	"net"
	"syscall"
)

// pollRead reads a direction's source socket the way an event loop does
// (nginx's "ready" flag): a read that emptied the socket, as the kernel
// says with the read (TCP_INQ), makes the next read wait for the runtime
// poller to report new bytes instead of asking the kernel first. net.Conn's Read always asks first; on a
// connection that carries requests and answers that ask can only fail with
// EAGAIN, so a relayed exchange costs two reads that return nothing, one
// per direction, next to the four that move its bytes.
//
// The wait must not lose bytes that arrived after the short read. The
// runtime's poller is edge-triggered and keeps one "ready" token per
// descriptor, set by every arrival and taken by a wait; but each Read and
// RawConn.Read clears the token when it starts, so a wait is only safe
// inside the RawConn.Read that made the short read. run therefore forwards
// from inside that call: it reads, writes to the destination and reads
// again, and returns false to the runtime (wait, then call again) only when
// the socket has nothing more: no bytes and no FIN, which a short read
// alone does not tell (readHinted), since a FIN that came with the bytes a
// read took raises no event of its own. Anything that arrived since set the
// token, and the wait returns at once. A token left by bytes that read
// already took costs one read that finds EAGAIN: what net.Conn pays every
// time.
//
// A TLS source reads through its transport, which asks pollRead while run
// is on (transport.poll) and gives crypto/tls errWouldBlock, a temporary
// error it keeps no record of, when the socket has nothing.
//
// While run forwards, the direction holds its source's descriptor, and
// net.Conn.Close waits for every holder; splicer.abort expires both
// sockets' deadlines before it closes them, which ends any write or wait
// held up in here.
type pollRead struct {
	rc    syscall.RawConn // nil: not in use
	never bool            // the source cannot be read this way
	conn  net.Conn        // the source's TCP connection, for errors
	tr    *transport      // the source's transport when it is TLS
	step  func() (n int, werr, rerr error)
	cb    func(fd uintptr) bool // callback, as a func value made once

	// While run is on.
	fd         int
	called     bool // RawConn.Read has called back since run started
	empty      bool // the last read emptied the socket or found nothing
	werr, rerr error
}

// errWouldBlock is a read of pollRead that would have to wait. It is a
// temporary net.Error so that crypto/tls keeps the connection and any
// partial record, as it does for an expired deadline.
var errWouldBlock net.Error = wouldBlock{}

type wouldBlock struct{}

func (wouldBlock) Error() string   { return "proxy: read would block" }
func (wouldBlock) Timeout() bool   { return true }
func (wouldBlock) Temporary() bool { return true }

func (p *pollRead) ready() bool { return p.rc != nil }

// open starts reading src through p with step as the forwarding step,
// when src is a TCP connection read directly or through a transport with
// no reader buffering above it (a sniffing reader is dropped once drained).
func (p *pollRead) open(src *side, step func() (n int, werr, rerr error)) bool {
	if b, ok := src.r.(interface{ Buffered() int }); ok {
		if b.Buffered() > 0 {
			return false // try again once the sniffed bytes are read
		}
		src.r = src.conn
	}
	rc := rawConn(src.raw)
	if rc == nil || src.r != src.conn || (src.tr == nil && src.conn != src.raw) {
		p.never = true
		return false
	}
	p.rc, p.conn, p.tr, p.step = rc, src.raw, src.tr, step
	p.cb = p.callback
	return true
}

// run forwards until a step fails (werr, rerr) or a wait ends with an
// error (rerr: the deadline, or the socket closed).
func (p *pollRead) run() (werr, rerr error) {
	p.werr, p.rerr, p.called = nil, nil, false
	err := p.rc.Read(p.cb)
	if err == nil {
		return p.werr, p.rerr
	}
	if !p.called {
		// RawConn.Read fails before it calls back when the deadline has
		// passed already (a late goroutine, a GC pause). crypto/tls may
		// hold whole records it read earlier (with the handshake's last
		// flight, or several in one read): they must go out now, since a
		// parked direction is woken by its socket alone. Marked empty, the
		// socket is not read: only what is held moves.
		p.fd = -1
		if moved, done := p.forward(true); moved || done {
			return p.werr, p.rerr
		}
	}
	return nil, err
}

// callback is called by RawConn.Read with the descriptor held: at the
// start, when the socket may have anything, and after each wait, when it
// has something (or a stale token). true ends run.
func (p *pollRead) callback(fd uintptr) bool {
	p.fd, p.called = int(fd), true
	_, done := p.forward(false)
	return done
}

// forward steps until a read would block (false) or a step fails (true,
// the errors in werr and rerr), and reports whether any bytes moved.
func (p *pollRead) forward(empty bool) (moved, done bool) {
	p.empty = empty
	if p.tr != nil {
		p.tr.poll = p
	}
	defer p.leave()
	for {
		n, werr, rerr := p.step()
		moved = moved || n > 0
		if werr == nil && rerr == errWouldBlock {
			return moved, false
		}
		if werr != nil || rerr != nil {
			p.werr, p.rerr = werr, rerr
			return moved, true
		}
	}
}

// leave ends the callback's use of the descriptor.
func (p *pollRead) leave() {
	p.fd = -1
	if p.tr != nil {
		p.tr.poll = nil
	}
}
