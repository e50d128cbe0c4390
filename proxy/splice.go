package proxy

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// side is one end of a spliced pair.
type side struct {
	r    io.Reader  // reads; may buffer bytes peeked before routing
	conn net.Conn   // writes, deadlines, close
	raw  net.Conn   // the TCP connection under conn (conn itself when plain)
	tr   *transport // between conn and raw when conn is TLS over a transport
	// stall bounds the splice's writes to conn when they do not go
	// through tr (which has its own); nil: no bound but the idle timeout.
	stall *writeStall
}

func plainSide(c net.Conn) side { return side{r: c, conn: c, raw: c} }

// tlsSide is a TLS connection over raw, through a transport when it was
// made with one.
func tlsSide(tc *tls.Conn, raw net.Conn) side {
	tr, _ := tc.NetConn().(*transport)
	return side{r: tc, conn: tc, raw: raw, tr: tr}
}

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
// not as a clean end of stream. The TCP connection is closed first: a TLS
// close would send close_notify (a clean end to the peer) and could wait
// up to 5 s for room in a full send buffer, which an abort run by the
// drain or the parker must not.
func (s side) abort() {
	if tc, ok := s.raw.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	s.raw.Close()
	if s.conn != s.raw {
		s.conn.Close() // releases the TLS state; its alert fails on the closed socket
	}
}

// Copy buffers. A direction starts with a small buffer, enough for requests
// and answers, and moves to a large one once a read fills the small one
// (bulk data), so connections that carry little cost little while they are
// active; parked directions hold none.
const (
	smallBufSize = 4 << 10
	largeBufSize = 64 << 10
	// holdMin is the smallest write that may make more than one TLS record
	// (crypto/tls starts a connection with records of about 1.2 KiB).
	holdMin = 1 << 10
)

var (
	smallBufPool = sync.Pool{New: func() any { b := make([]byte, smallBufSize); return &b }}
	largeBufPool = sync.Pool{New: func() any { b := make([]byte, largeBufSize); return &b }}
)

var errIdle = errors.New("idle timeout")

// errDrained ends the connections still open at the drain deadline.
var errDrained = fmt.Errorf("drain deadline: %w", net.ErrClosed)

// spliceOptions are what the splices of one server share.
type spliceOptions struct {
	idle time.Duration // no bytes either way for this long ends the pair; 0: never
	// writeStall: a destination that takes no byte for this long ends the
	// pair (see writeStall); 0: the idle timeout bounds writes instead.
	writeStall time.Duration
	// unsentLimit: TCP_NOTSENT_LOWAT of both sockets (listen_linux.go);
	// 0: the kernel's autotuning.
	unsentLimit int
	parkDelay   time.Duration // no bytes read in one direction for this long parks it; 0: never
	parker      *parker       // nil: never park
	buffers     *bufferBudget // bulk buffers of this server's connections
}

// splicer copies both ways between a client and an upstream. Each
// direction runs in a goroutine of its own while it carries bytes and is
// parked (no goroutine, no buffer; see park.go) while it is idle. Nobody
// waits on a splice: the last direction to end calls done.
type splicer struct {
	spliceOptions
	client, upstream side
	dirs             [2]direction    // client→upstream, upstream→client
	done             func(err error) // once, after both directions ended
	lastActive       atomic.Int64    // unix nanos of the last byte either way
	aborted          atomic.Bool

	mu      sync.Mutex
	running int   // directions not ended yet
	err     error // the first error, which aborted the pair
}

// direction is one way of a splice.
type direction struct {
	s        *splicer
	src, dst *side
	counter  prometheus.Counter
	state    atomic.Uint32 // its owner, a dirState (see dirstate.go)
	token    uint64        // while parked; guarded by the parker's mu

	// Owned by whoever owns the direction (see dirstate.go): the
	// goroutine running copy, or the parker.
	bp       *[]byte   // the copy buffer, from smallBufPool or (large) largeBufPool
	large    bool      // bp is a large buffer, counted in the budget
	lastRead time.Time // of the last byte read
	canPark  bool      // the source may still park
	poll     pollRead  // reads src between waits, when it can
}

// newSplicer prepares a splice; start runs it. done gets nil when both
// directions ended cleanly (EOF each way, passed on as half-closes) and
// both sides are closed, else the first error, which aborted both sides
// (so that neither waits on a peer that will never speak again).
func newSplicer(o spliceOptions, client, upstream side, toUpstream, toClient prometheus.Counter, done func(error)) *splicer {
	s := &splicer{spliceOptions: o, client: client, upstream: upstream, done: done, running: 2}
	s.dirs[0] = direction{s: s, src: &s.client, dst: &s.upstream, counter: toUpstream}
	s.dirs[1] = direction{s: s, src: &s.upstream, dst: &s.client, counter: toClient}
	return s
}

// start copies both ways, each in a fresh goroutine (small stacks, not
// the one the handshake grew), and returns at once.
func (s *splicer) start() {
	if s.unsentLimit > 0 { // a stalled reader holds little in our send queues
		limitUnsent(s.client.raw, s.unsentLimit)
		limitUnsent(s.upstream.raw, s.unsentLimit)
	}
	if s.writeStall > 0 {
		ws := &writeStall{timeout: s.writeStall, aborted: &s.aborted}
		s.client.boundWrites(ws)
		s.upstream.boundWrites(ws)
	}
	s.lastActive.Store(time.Now().UnixNano())
	go s.dirs[0].run()
	go s.dirs[1].run()
}

// abort closes both sides with a reset and ends the parked directions;
// running ones end when their read or write fails on the closed socket.
// cause becomes the splice's error unless it already has one. Safe to call
// at any time, more than once, from any goroutine.
func (s *splicer) abort(cause error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = cause
	}
	s.mu.Unlock()
	if s.aborted.Swap(true) {
		return
	}
	// A direction reading through pollRead writes while it holds its
	// source's descriptor, and Close waits for every holder: expired
	// deadlines first end each write and wait on both sockets, so that
	// neither Close below waits on a write held up by the other's peer.
	// step checks aborted after it moves a write deadline.
	s.client.raw.SetDeadline(expired)
	s.upstream.raw.SetDeadline(expired)
	s.client.abort()
	s.upstream.abort()
	for i := range s.dirs {
		if s.parker.take(&s.dirs[i], dirEnded) {
			s.end(nil)
		}
	}
}

// end records that one direction has ended; err aborts the pair.
func (s *splicer) end(err error) {
	if err != nil {
		s.abort(err)
	}
	s.mu.Lock()
	s.running--
	last := s.running == 0
	err = s.err
	s.mu.Unlock()
	if !last {
		return
	}
	if err == nil {
		s.client.conn.Close()
		s.upstream.conn.Close()
	}
	s.done(err)
}

// idleSince reports whether the pair has carried no byte for the idle
// timeout at now.
func (s *splicer) idleSince(now time.Time) bool {
	return s.idle > 0 && now.Sub(time.Unix(0, s.lastActive.Load())) >= s.idle
}

// run copies until the direction ends or parks; the goroutine that runs
// it owns it (state running) until then.
func (d *direction) run() {
	d.mustBe(dirRunning)
	if parked, err := d.copy(); !parked {
		d.move(dirRunning, dirEnded)
		d.s.end(err)
	}
}

// copy moves bytes from src to dst until src ends (then half-closes dst),
// fails, or has been idle for the park delay and parks.
func (d *direction) copy() (parked bool, err error) {
	s, src, dst := d.s, d.src, d.dst
	d.bp, d.large = smallBufPool.Get().(*[]byte), false
	defer func() {
		if !parked { // a parked direction has given its buffer back
			d.putBuf()
		}
	}()
	d.canPark = s.parkDelay > 0 && s.parker != nil
	d.lastRead = time.Now()
	if s.idle > 0 || d.canPark {
		src.conn.SetReadDeadline(s.readDeadline(d.lastRead, d.canPark))
	}
	for {
		werr, rerr := d.pump()
		if werr != nil {
			return false, werr
		}
		switch {
		case rerr == nil:
		case errors.Is(rerr, io.EOF): // a clean end (fill tells a truncated one apart)
			dst.closeWrite()
			return false, nil
		case errors.Is(rerr, os.ErrDeadlineExceeded) && (s.idle > 0 || d.canPark):
			// The read deadline is per direction, idleness is per pair:
			// keep waiting while the other direction is active.
			now := time.Now()
			if s.idleSince(now) {
				return false, errIdle
			}
			if d.canPark && now.Sub(d.lastRead) >= s.parkDelay {
				// The buffer goes back before park: from then on the
				// direction, and its fields, belong to the parker, which
				// may resume it in another goroutine at once.
				d.putBuf()
				if d.park() {
					return true, nil
				}
				d.bp = smallBufPool.Get().(*[]byte)
				d.canPark = false // this source cannot park: read on
			}
			src.conn.SetReadDeadline(s.readDeadline(d.lastRead, d.canPark))
		default:
			return false, rerr
		}
	}
}

// pump reads from src and writes what it read to dst: once, or, when src
// can be read through pollRead, over and over with waits in between, until
// a read or a write fails or a wait ends with the deadline or a close.
func (d *direction) pump() (werr, rerr error) {
	if !d.poll.ready() && !d.poll.never {
		d.poll.open(d.src, d.step)
	}
	if d.poll.ready() {
		return d.poll.run()
	}
	_, werr, rerr = d.step()
	return werr, rerr
}

// step reads once from src and writes what it read, n bytes, to dst.
func (d *direction) step() (n int, werr, rerr error) {
	s, src, dst := d.s, d.src, d.dst
	buf := *d.bp
	n, rerr = d.fill(buf)
	if n == 0 {
		return 0, nil, rerr
	}
	now := time.Now()
	d.lastRead = now
	s.lastActive.Store(now.UnixNano())
	if s.idle > 0 && s.writeStall == 0 {
		// A peer that stops reading must not hold us forever (with a
		// write-stall timeout, side.write bounds the write itself).
		dst.conn.SetWriteDeadline(now.Add(s.idle))
		if s.aborted.Load() {
			return n, net.ErrClosed, nil // abort's expired deadline may just have been replaced
		}
	}
	if err := dst.write(buf[:n]); err != nil {
		return n, err, nil
	}
	d.counter.Add(float64(n))
	if n == len(buf) && !d.large && s.buffers.take(largeBufSize) {
		if src.tr != nil {
			src.tr.readAhead = true // bulk: see transport
		}
		smallBufPool.Put(d.bp)
		d.bp, d.large = largeBufPool.Get().(*[]byte), true
	}
	return n, nil, rerr
}

// putBuf returns the copy buffer to its pool and its budget.
func (d *direction) putBuf() {
	if d.large {
		largeBufPool.Put(d.bp)
		d.s.buffers.give(largeBufSize)
	} else {
		smallBufPool.Put(d.bp)
	}
	d.bp, d.large = nil, false
}

// write writes p to the side, gathering the TLS records of a large write
// into one syscall when the side has a transport.
func (s *side) write(p []byte) error {
	if s.tr == nil {
		_, err := s.stall.write(s.conn, p)
		return err
	}
	if len(p) <= holdMin {
		_, err := s.conn.Write(p)
		return err
	}
	s.tr.hold()
	_, err := s.conn.Write(p)
	if ferr := s.tr.flush(); err == nil {
		err = ferr
	}
	return err
}

// boundWrites puts the side's writes under ws: in its transport, where
// crypto/tls's records reach the socket (a deadline crypto/tls saw expire
// would end the connection even though the peer was reading), else in
// write.
func (s *side) boundWrites(ws *writeStall) {
	if s.tr != nil {
		s.tr.wmu.Lock() // a drain's abort may already close, and write an alert
		s.tr.stall = ws
		s.tr.wmu.Unlock()
	} else {
		s.stall = ws
	}
}

// expired is a deadline in the past.
var expired = time.Unix(1, 0)

// readDeadline is when a read that has seen nothing since lastRead must
// stop to check for the idle timeout or to park.
func (s *splicer) readDeadline(lastRead time.Time, canPark bool) time.Time {
	var t time.Time
	if s.idle > 0 {
		t = time.Unix(0, s.lastActive.Load()).Add(s.idle)
	}
	if p := lastRead.Add(s.parkDelay); canPark && (t.IsZero() || p.Before(t)) {
		t = p
	}
	return t
}

// park hands the direction to the parker. It is called only after a read
// that waited until its deadline, so nothing the source has received is
// held above the socket: crypto/tls reads the socket only when it has no
// complete record buffered (a partial one is fine: the socket becomes
// readable when the rest arrives), and a sniffing reader returns what it
// holds before it reads. After true the direction belongs to the parker.
func (d *direction) park() bool {
	if b, ok := d.src.r.(interface{ Buffered() int }); ok {
		if b.Buffered() > 0 {
			return false
		}
		d.src.r = d.src.conn // drained: drop the reader and its buffer
	}
	sc, ok := d.src.raw.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	if tc, ok := d.src.conn.(*tls.Conn); ok {
		releaseTLSInput(tc) // before park: from then on another goroutine may read
	}
	return d.s.parker.park(d, rc)
}
