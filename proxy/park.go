package proxy

import (
	"errors"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// Parking: an idle direction of a splice gives up its goroutine and its
// buffer and waits in epoll instead.
//
// A direction whose reads have seen no byte for the park delay hands the
// socket it reads from to the parker and returns. The parker watches every
// parked socket with one epoll descriptor (itself waited on through the Go
// runtime's poller, so no thread sleeps on it) and, when a socket becomes
// readable or hangs up, starts a goroutine that resumes the copy with a
// pooled buffer. An idle connection then costs no goroutine and no buffer,
// only its sockets and TLS state.
//
// Closing a descriptor removes it from epoll without a word, so whoever
// closes a parked connection must tell the parker (splicer.abort does):
// the entry is taken out of the parker under its lock by exactly one of the
// waker and the aborter, and that one resumes or ends the direction, so each
// direction ends exactly once. These hand-offs are moves of the direction's
// state (dirstate.go), checked where they happen. Pairs whose directions are
// both parked have no read deadline running; the parker's sweep ends those
// idle past the idle timeout.

// errParkerClosed ends directions still parked when their parker is
// closed; the owner drains every connection first, so it marks a bug.
var errParkerClosed = errors.New("proxy: parker closed with connections parked")

// parker is the set of parked directions of one server (an IngressServer
// or an EgressSet), which owns it: it runs run in a goroutine it waits for
// and calls close after its drain. A nil *parker never parks.
type parker struct {
	ep    *epoll
	log   zerolog.Logger
	gauge prometheus.Gauge
	sweep time.Duration // how often pairs parked past their idle timeout are looked for; 0: never

	mu       sync.Mutex
	next     uint64
	parked   map[uint64]*direction // by token
	stopping bool
}

// newParker opens the parker's epoll descriptor. sweep is how often it
// looks for parked pairs past their idle timeout (0: never). It returns
// nil (never park) where the platform has no epoll.
func newParker(log zerolog.Logger, gauge prometheus.Gauge, sweep time.Duration) (*parker, error) {
	ep, err := openEpoll()
	if errors.Is(err, errNoEpoll) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &parker{ep: ep, log: log, gauge: gauge, sweep: sweep, parked: make(map[uint64]*direction)}, nil
}

// sweepInterval is how often a parker looks for pairs idle past idle: an
// eighth of it, so a parked pair is closed at most 12.5% late, and at least
// once a minute.
func sweepInterval(idle time.Duration) time.Duration {
	if idle <= 0 {
		return 0
	}
	return min(max(idle/8, 10*time.Millisecond), time.Minute)
}

// park hands d's source socket to the parker. It returns false when d must
// keep reading in its goroutine (no parker, parker closed, or the socket
// could not be watched, e.g. because it was just closed: the next read says
// so). After true the caller's goroutine no longer owns d: whoever takes d
// out of the parker (a wake or an abort) ends or resumes it.
func (p *parker) park(d *direction, rc syscall.RawConn) bool {
	if p == nil {
		return false
	}
	p.mu.Lock()
	if p.stopping {
		p.mu.Unlock()
		return false
	}
	p.next++
	tok := p.next
	d.token = tok
	d.move(dirRunning, dirParked)
	p.parked[tok] = d
	p.mu.Unlock()
	p.gauge.Inc()
	// The entry is in the map before the socket is watched: an abort that
	// closes the socket from now on finds the entry and ends d itself.
	if err := p.ep.watch(rc, tok); err != nil {
		// Closed under us, or epoll refused: if nobody took d meanwhile,
		// it is ours again and goes on reading.
		return !p.take(d, dirRunning)
	}
	return true
}

// take removes d from the parker if it is parked, moving it to state to
// (running or ended), and reports whether it was: the caller now owns d.
func (p *parker) take(d *direction, to dirState) bool {
	if p == nil {
		return false
	}
	p.mu.Lock()
	e, ok := p.parked[d.token]
	ok = ok && e == d
	if ok {
		delete(p.parked, d.token)
		d.move(dirParked, to)
	}
	p.mu.Unlock()
	if ok {
		p.gauge.Dec()
	}
	return ok
}

// wake resumes the direction parked under tok, if it is still parked (an
// abort may have taken it since epoll reported it).
func (p *parker) wake(tok uint64) {
	p.mu.Lock()
	d, ok := p.parked[tok]
	if ok {
		delete(p.parked, tok)
		d.move(dirParked, dirRunning)
	}
	p.mu.Unlock()
	if ok {
		p.gauge.Dec()
		go d.run()
	}
}

// run waits for parked sockets to become readable and resumes their
// directions, and sweeps idle pairs, until close.
func (p *parker) run() {
	if p == nil {
		return
	}
	nextSweep := time.Time{}
	if p.sweep > 0 {
		nextSweep = time.Now().Add(p.sweep)
	}
	for {
		if err := p.ep.wait(nextSweep, p.wake); err != nil {
			p.failed(err)
			return
		}
		if !nextSweep.IsZero() && !time.Now().Before(nextSweep) {
			p.sweepIdle()
			nextSweep = time.Now().Add(p.sweep)
		}
	}
}

// failed stops parking after the epoll descriptor failed or was closed.
// Unless close did it, the parked directions resume in goroutines of
// their own and read on as if they had never parked: a broken parker
// costs memory, never connections.
func (p *parker) failed(err error) {
	p.mu.Lock()
	closing := p.stopping
	p.stopping = true
	var left []*direction
	if !closing {
		for tok, d := range p.parked {
			delete(p.parked, tok)
			d.move(dirParked, dirRunning)
			left = append(left, d)
		}
	}
	p.mu.Unlock()
	if closing {
		return
	}
	p.log.Error().Err(err).Int("resumed", len(left)).Msg("parker failed: idle connections are no longer parked")
	for _, d := range left {
		p.gauge.Dec()
		go d.run()
	}
}

// sweepIdle aborts the pairs with a parked direction that have been idle
// past their idle timeout. A pair with one direction still reading is
// caught by that direction's own read deadline as well; whichever comes
// first ends it.
func (p *parker) sweepIdle() {
	now := time.Now()
	var idle []*splicer
	p.mu.Lock()
	for _, d := range p.parked {
		if d.s.idleSince(now) {
			idle = append(idle, d.s)
		}
	}
	p.mu.Unlock()
	for _, s := range idle {
		s.abort(errIdle) // idempotent: a pair with both directions parked is listed twice
	}
}

// close stops parking, makes run return, and ends any direction still
// parked. The owner calls it once its drain has ended every connection.
func (p *parker) close() {
	if p == nil {
		return
	}
	p.mu.Lock()
	p.stopping = true
	left := make([]*direction, 0, len(p.parked))
	for _, d := range p.parked {
		left = append(left, d)
	}
	p.mu.Unlock()
	p.ep.close()
	for _, d := range left {
		d.s.abort(errParkerClosed)
	}
}

// parkedLen is the number of directions parked now.
func (p *parker) parkedLen() int {
	if p == nil {
		return 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.parked)
}

// newSpliceOptions makes the options of one server's splices, with a
// parker when parkDelay > 0 (and the platform has epoll). Negative
// durations disable what they time.
func newSpliceOptions(idle, parkDelay time.Duration, buffers *bufferBudget, log zerolog.Logger, gauge prometheus.Gauge) (spliceOptions, error) {
	o := spliceOptions{idle: max(idle, 0), parkDelay: max(parkDelay, 0), buffers: buffers}
	if o.parkDelay > 0 {
		p, err := newParker(log, gauge, sweepInterval(o.idle))
		if err != nil {
			return spliceOptions{}, err
		}
		o.parker = p
	}
	return o, nil
}

// runParker runs the parker in a goroutine until the returned stop, which
// the owner calls after its drain: stop closes the parker and waits for
// the goroutine.
func (o spliceOptions) runParker() (stop func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		o.parker.run()
	}()
	return func() {
		o.parker.close()
		<-done
	}
}
