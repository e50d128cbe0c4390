package proxy

import (
	"container/list"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// handshakeSlots bounds the connections that are in their TLS handshake,
// i.e. not yet authenticated, overall and per source IP.
//
// Per source: once the slots are at least half taken, a host that holds
// perSource slots or more takes a new one only by giving up its own oldest
// handshake, before any cryptography: a single address (slowloris, or
// handshakes that stop halfway) can hold at most half of the slots and
// never take another host's. It evicts rather than refuses because an
// address is not a client: behind a load balancer that SNATs (Kubernetes'
// default externalTrafficPolicy: Cluster) good clients share the address
// of the attacker, and a refusal would lock them out for as long as the
// attacker's handshakes stall. Evicting the oldest serves every client of
// the address that completes its handshake before that address opens
// perSource more, and costs nothing the address could not cost anyway by
// connecting and closing: a stalled handshake has done no cryptography
// worth keeping. Below half, a source is not limited: every connection
// from a peer cluster comes from that cluster's gateway, one address, and
// a burst of its handshakes under load is legitimate traffic that must not
// be cut while slots are free.
//
// Overall: when every slot is taken, a newcomer evicts the oldest
// handshake if it has been going on for at least minAge. A healthy
// handshake takes a few round trips, so the oldest one is almost always a
// slow or stalled client, and evicting it keeps good clients from being
// refused for a whole HandshakeTimeout while many attackers hold every
// slot. minAge bounds how fast evictions recycle slots, and so the
// handshake CPU they can cost: max per minAge. Only when every slot is
// younger than minAge (a flood of fresh connections) is the newcomer
// refused.
type handshakeSlots struct {
	max, perSource int
	minAge         time.Duration
	now            func() time.Time // nil: time.Now

	mu       sync.Mutex
	order    list.List             // of *handshakeSlot, oldest first
	bySource map[string]*list.List // of *handshakeSlot, oldest first
}

type handshakeSlot struct {
	conn    net.Conn
	source  string
	start   time.Time
	elem    *list.Element // in handshakeSlots.order
	srcElem *list.Element // in handshakeSlots.bySource[source]
	evicted atomic.Bool
}

// reasonHandshakeLimit is acquire's refusal reason.
const reasonHandshakeLimit = "handshake_limit"

// acquire takes a slot for c, evicting a handshake if needed (see
// handshakeSlots). A nil slot means c must be refused, for the reason
// returned.
func (h *handshakeSlots) acquire(c net.Conn) (*handshakeSlot, string) {
	now := time.Now()
	if h.now != nil {
		now = h.now()
	}
	source := sourceOf(c)
	h.mu.Lock()
	victim, ok := h.victimLocked(source, now)
	if !ok {
		h.mu.Unlock()
		return nil, reasonHandshakeLimit
	}
	if victim != nil {
		h.removeLocked(victim)
		victim.evicted.Store(true)
	}
	s := &handshakeSlot{conn: c, source: source, start: now}
	s.elem = h.order.PushBack(s)
	if h.bySource == nil {
		h.bySource = make(map[string]*list.List)
	}
	mine := h.bySource[source]
	if mine == nil {
		mine = list.New()
		h.bySource[source] = mine
	}
	s.srcElem = mine.PushBack(s)
	h.mu.Unlock()
	if victim != nil {
		victim.conn.Close() // its handshake fails at once; its goroutine releases nothing
	}
	return s, ""
}

// victimLocked picks the handshake a newcomer from source must evict: nil
// if a slot is free for it; ok is false if it must be refused instead.
func (h *handshakeSlots) victimLocked(source string, now time.Time) (victim *handshakeSlot, ok bool) {
	if mine := h.bySource[source]; h.perSource > 0 && mine != nil && mine.Len() >= h.perSource && 2*h.order.Len() >= h.max {
		return mine.Front().Value.(*handshakeSlot), true
	}
	if h.order.Len() < h.max {
		return nil, true
	}
	oldest := h.order.Front().Value.(*handshakeSlot)
	if now.Sub(oldest.start) < h.minAge {
		return nil, false
	}
	return oldest, true
}

// inProgress is the number of slots taken.
func (h *handshakeSlots) inProgress() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.order.Len()
}

// release gives back s's slot unless it was evicted (and so given away).
func (h *handshakeSlots) release(s *handshakeSlot) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !s.evicted.Load() {
		h.removeLocked(s)
	}
}

func (h *handshakeSlots) removeLocked(s *handshakeSlot) {
	h.order.Remove(s.elem)
	mine := h.bySource[s.source]
	if mine.Remove(s.srcElem); mine.Len() == 0 {
		delete(h.bySource, s.source)
	}
}

// sourceOf is the IP address c comes from ("" when unknown: all such
// connections then share one source's slots).
func sourceOf(c net.Conn) string {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return a.IP.String()
	}
	host, _, err := net.SplitHostPort(c.RemoteAddr().String())
	if err != nil {
		return ""
	}
	return host
}
