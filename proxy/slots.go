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
// perSource slots or more is refused before any cryptography, so a single
// attacker (slowloris, or handshakes that stop halfway) can take at most
// half of the slots and never lock the others out. Below half, a source
// is not limited: every connection from a peer cluster comes from that
// cluster's gateway, one address, and a burst of its handshakes under load
// is legitimate traffic that must not be refused while slots are free.
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

	mu       sync.Mutex
	order    list.List // of *handshakeSlot, oldest first
	bySource map[string]int
}

type handshakeSlot struct {
	conn    net.Conn
	source  string
	start   time.Time
	elem    *list.Element
	evicted atomic.Bool
}

// Refusal reasons of acquire.
const (
	reasonHandshakeLimit       = "handshake_limit"
	reasonSourceHandshakeLimit = "source_handshake_limit"
)

// acquire takes a slot for c, evicting the oldest handshake if needed. A
// nil slot means c must be refused, for the reason returned.
func (h *handshakeSlots) acquire(c net.Conn) (*handshakeSlot, string) {
	now := time.Now()
	source := sourceOf(c)
	var victim *handshakeSlot
	h.mu.Lock()
	if h.bySource == nil {
		h.bySource = make(map[string]int)
	}
	if h.perSource > 0 && h.bySource[source] >= h.perSource && 2*h.order.Len() >= h.max {
		h.mu.Unlock()
		return nil, reasonSourceHandshakeLimit
	}
	if h.order.Len() >= h.max {
		oldest := h.order.Front().Value.(*handshakeSlot)
		if now.Sub(oldest.start) < h.minAge {
			h.mu.Unlock()
			return nil, reasonHandshakeLimit
		}
		h.removeLocked(oldest)
		oldest.evicted.Store(true)
		victim = oldest
	}
	s := &handshakeSlot{conn: c, source: source, start: now}
	s.elem = h.order.PushBack(s)
	h.bySource[source]++
	h.mu.Unlock()
	if victim != nil {
		victim.conn.Close() // its handshake fails at once; its goroutine releases nothing
	}
	return s, ""
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
	if h.bySource[s.source]--; h.bySource[s.source] <= 0 {
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
