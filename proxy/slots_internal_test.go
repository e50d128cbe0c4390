package proxy

import (
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// slotConn is a connection from an address that records its Close.
type slotConn struct {
	net.Conn
	from   string
	closed atomic.Bool
}

func (c *slotConn) RemoteAddr() net.Addr { return &net.TCPAddr{IP: net.ParseIP(c.from), Port: 40000} }
func (c *slotConn) Close() error         { c.closed.Store(true); return nil }

// slotStep is one event of a slot scenario: after advancing the clock,
// conn label from source takes a slot (or, with release, gives it back).
type slotStep struct {
	advance time.Duration
	label   string
	from    string
	release bool
	// Expected for an acquire: refused, or else the label of the handshake
	// evicted to make room ("" for none).
	refused bool
	evicts  string
}

// acquireN is n stalled handshakes from one source, labelled prefix0...
func acquireN(prefix, from string, n int) []slotStep {
	var steps []slotStep
	for i := range n {
		steps = append(steps, slotStep{label: prefix + string(rune('0'+i)), from: from})
	}
	return steps
}

func TestHandshakeSlotPolicy(t *testing.T) {
	const a, b, c = "10.0.0.1", "10.0.0.2", "10.0.0.3"
	cat := func(parts ...[]slotStep) []slotStep {
		var out []slotStep
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	tests := []struct {
		name  string
		steps []slotStep // max 10, perSource 2, minAge 1s
	}{
		{"below half a source is not limited", acquireN("a", a, 5)},
		{"at half a source over its share evicts its own oldest", cat(acquireN("a", a, 5),
			[]slotStep{{label: "good", from: a, evicts: "a0"}, {label: "good2", from: a, evicts: "a1"}})},
		{"a prompt client of a busy address is served, and its release frees a slot", cat(acquireN("a", a, 5),
			[]slotStep{{label: "good", from: a, evicts: "a0"}, {label: "good", release: true}, {label: "again", from: a},
				{label: "more", from: a, evicts: "a1"}})},
		{"another source's older slot is never taken", cat([]slotStep{{label: "b0", from: b}}, acquireN("a", a, 4),
			[]slotStep{{label: "a4", from: a, evicts: "a0"}, {label: "a5", from: a, evicts: "a1"}})},
		{"a source below its share takes a free slot at half", cat(acquireN("a", a, 5),
			[]slotStep{{label: "c0", from: c}, {label: "c1", from: c}, {label: "c2", from: c, evicts: "c0"}})},
		{"full: a newcomer is refused while the oldest is younger than minAge", cat(acquireN("a", a, 5),
			acquireN("b", b, 2), acquireN("c", c, 2), []slotStep{{label: "d0", from: "10.0.0.4"},
				{advance: 999 * time.Millisecond, label: "e0", from: "10.0.0.5", refused: true}})},
		{"full: a newcomer evicts the oldest once it is minAge old", cat(acquireN("b", b, 1), acquireN("a", a, 4),
			acquireN("c", c, 2), []slotStep{{label: "d0", from: "10.0.0.4"}, {label: "d1", from: "10.0.0.4"}, {label: "d2", from: "10.0.0.5"},
				{advance: time.Second, label: "f0", from: "10.0.0.6", evicts: "b0"}})},
		{"full: a source at its share evicts its own, however young", cat(acquireN("b", b, 1), acquireN("a", a, 4),
			acquireN("c", c, 2), []slotStep{{label: "d0", from: "10.0.0.4"}, {label: "d1", from: "10.0.0.4"}, {label: "e0", from: "10.0.0.5"},
				{label: "d2", from: "10.0.0.4", evicts: "d0"}})},
		{"an evicted slot's release gives back nothing", cat(acquireN("a", a, 5),
			[]slotStep{{label: "good", from: a, evicts: "a0"}, {label: "a0", release: true},
				{label: "c0", from: c}, {label: "c1", from: c}, {label: "c2", from: c, evicts: "c0"}})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := time.Unix(1_000_000, 0)
			h := &handshakeSlots{max: 10, perSource: 2, minAge: time.Second, now: func() time.Time { return now }}
			conns := map[string]*slotConn{}
			slots := map[string]*handshakeSlot{}
			for i, st := range tt.steps {
				now = now.Add(st.advance)
				if st.release {
					h.release(slots[st.label])
					continue
				}
				closedBefore := map[string]bool{}
				for l, c := range conns {
					closedBefore[l] = c.closed.Load()
				}
				conn := &slotConn{from: st.from}
				s, reason := h.acquire(conn)
				if got := s == nil; got != st.refused {
					t.Fatalf("step %d (%s from %s): refused = %v (%q), want %v", i, st.label, st.from, got, reason, st.refused)
				}
				evicted := ""
				for l, c := range conns {
					if c.closed.Load() && !closedBefore[l] {
						if evicted != "" {
							t.Fatalf("step %d: evicted both %s and %s", i, evicted, l)
						}
						evicted = l
						if !slots[l].evicted.Load() {
							t.Fatalf("step %d: %s closed but not marked evicted", i, l)
						}
					}
				}
				if evicted != st.evicts {
					t.Fatalf("step %d (%s from %s): evicted %q, want %q", i, st.label, st.from, evicted, st.evicts)
				}
				if s != nil {
					conns[st.label], slots[st.label] = conn, s
				}
				checkSlotInvariants(t, h)
			}
		})
	}
}

// checkSlotInvariants: the per-source lists partition the overall order.
func checkSlotInvariants(t *testing.T, h *handshakeSlots) {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for src, l := range h.bySource {
		if l.Len() == 0 {
			t.Fatalf("empty list kept for %s", src)
		}
		n += l.Len()
	}
	if n != h.order.Len() || h.order.Len() > h.max {
		t.Fatalf("%d slots by source, %d overall, max %d", n, h.order.Len(), h.max)
	}
}

// TestHandshakeSlotsSharedAddress is issue 22's scenario at the gateway's
// defaults (1000 slots, 100 per source): an attacker holds 500 stalled
// handshakes from the address that 50 good clients share with it, and
// opens a new one as soon as one of its own is evicted. Every good client,
// which completes its handshake before the next arrives, is served; the
// attacker never holds more than half the slots and never takes the stalled
// handshake of another address.
func TestHandshakeSlotsSharedAddress(t *testing.T) {
	const shared, other = "10.0.0.1", "10.0.0.2"
	now := time.Unix(1_000_000, 0)
	h := &handshakeSlots{max: 1000, perSource: 100, minAge: 2500 * time.Millisecond, now: func() time.Time { return now }}
	bystander := &slotConn{from: other}
	if s, _ := h.acquire(bystander); s == nil {
		t.Fatal("bystander refused")
	}
	attacker := map[*slotConn]bool{}
	stall := func() {
		c := &slotConn{from: shared}
		if s, reason := h.acquire(c); s == nil {
			t.Fatalf("attacker refused (%s)", reason)
		}
		attacker[c] = true
	}
	for range 499 {
		stall()
	}
	for i := range 50 {
		now = now.Add(10 * time.Millisecond)
		good := &slotConn{from: shared}
		s, reason := h.acquire(good)
		if s == nil {
			t.Fatalf("good client %d refused (%s)", i, reason)
		}
		// The attacker replaces what it lost before the good client is done.
		for c := range attacker {
			if c.closed.Load() {
				delete(attacker, c)
				stall()
			}
		}
		if s.evicted.Load() {
			t.Fatalf("good client %d evicted before its handshake completed", i)
		}
		h.release(s)
		h.mu.Lock()
		held := h.bySource[shared].Len()
		h.mu.Unlock()
		if held > 500 {
			t.Fatalf("the shared address holds %d slots, more than half", held)
		}
	}
	if bystander.closed.Load() {
		t.Fatal("the shared address took another address's slot")
	}
	checkSlotInvariants(t, h)
}
