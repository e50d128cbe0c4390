package proxy

import (
	"net"
	"sync"
	"time"
)

// tracker owns the open client connections of one listener set: it enforces
// the connection limit, lets drain wait for them, and force-closes what is
// left when the drain timeout expires. Connection goroutines call add before
// they do anything and done when they are finished with the connection; a
// splice that outlives the goroutine that started it calls done when it ends.
type tracker struct {
	max int // 0: unlimited

	mu     sync.Mutex
	conns  map[net.Conn]func() // how drain closes each: Close, or its splice's abort
	closed bool
	wg     sync.WaitGroup
}

// add registers c; false means the limit is reached or the set is closed
// for good, and the caller must close c itself.
func (t *tracker) add(c net.Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed || (t.max > 0 && len(t.conns) >= t.max) {
		return false
	}
	if t.conns == nil {
		t.conns = make(map[net.Conn]func())
	}
	t.conns[c] = func() { c.Close() }
	t.wg.Add(1)
	return true
}

// closeWith makes drain end c with abort instead of closing it: a splice
// whose directions may be parked must be told, since closing a parked
// socket wakes nobody. Past the drain deadline it aborts at once: the
// drain may have closed c before it knew to abort.
func (t *tracker) closeWith(c net.Conn, abort func()) {
	t.mu.Lock()
	_, ok := t.conns[c]
	if ok {
		t.conns[c] = abort
	}
	late := t.closed
	t.mu.Unlock()
	if ok && late {
		abort()
	}
}

func (t *tracker) done(c net.Conn) {
	t.mu.Lock()
	delete(t.conns, c)
	t.mu.Unlock()
	t.wg.Done()
}

func (t *tracker) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.conns)
}

// drain waits up to timeout for every connection to finish, then closes
// the rest and waits for them to be done. It returns how many it closed.
func (t *tracker) drain(timeout time.Duration) int {
	finished := make(chan struct{})
	go func() { t.wg.Wait(); close(finished) }()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-finished:
		return 0
	case <-timer.C:
	}
	t.mu.Lock()
	t.closed = true
	closers := make([]func(), 0, len(t.conns))
	for _, close := range t.conns {
		closers = append(closers, close)
	}
	t.mu.Unlock()
	// Outside the lock: an abort may end its splice at once, which calls done.
	for _, close := range closers {
		close() // unblocks or ends the connection's splice, which calls done
	}
	<-finished
	return len(closers)
}
