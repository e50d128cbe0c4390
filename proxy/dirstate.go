package proxy

import "fmt"

// Who owns a direction of a splice. A direction's buffer, reader, pollRead
// and read deadline belong to exactly one owner at a time, and handing them
// over is where a bug would let two goroutines copy one stream, or a pooled
// buffer reach another connection. So the owner is an explicit state,
// changed only by compare-and-swap from the state the changer believes it
// owns:
//
//	running ──park──▶ parked      its goroutine, in parker.park, before the
//	                              direction is in the parker's map
//	parked ──wake───▶ running     the parker (wake, failed), or the goroutine
//	                              whose park failed, after taking it out
//	parked ──abort──▶ ended       splicer.abort, after taking it out
//	running ──end───▶ ended       its goroutine, when the copy ends
//
// The parker moves a direction in or out of parked under its lock together
// with its map entry, so that a parked direction is exactly one in the map.
// Only these moves happen, and only at those hand-offs: reads and writes do
// not look at the state, so it costs the data path nothing.
type dirState uint32

const (
	dirRunning dirState = iota // a goroutine copies (the state a direction starts in)
	dirParked                  // the parker holds it; whoever takes it out owns it
	dirEnded                   // it ended, once, and its splicer counted it
)

func (s dirState) String() string {
	switch s {
	case dirRunning:
		return "running"
	case dirParked:
		return "parked"
	case dirEnded:
		return "ended"
	}
	return fmt.Sprintf("dirState(%d)", uint32(s))
}

// legalMove reports whether from→to is one of the four moves above.
func legalMove(from, to dirState) bool {
	switch from {
	case dirRunning:
		return to == dirParked || to == dirEnded
	case dirParked:
		return to == dirRunning || to == dirEnded
	}
	return false
}

// move hands d from the owner in state from to the one in state to. It
// panics when the move is not one of the four above or d is not in from:
// two owners of one direction would interleave two copies of a stream or
// hand a pooled buffer to another connection, which no gateway should go
// on doing.
func (d *direction) move(from, to dirState) {
	if !legalMove(from, to) {
		panic(fmt.Sprintf("proxy: direction moved %s→%s: not a legal move", from, to))
	}
	if !d.state.CompareAndSwap(uint32(from), uint32(to)) {
		panic(fmt.Sprintf("proxy: direction moved %s→%s while %s", from, to, dirState(d.state.Load())))
	}
}

// mustBe panics unless d is in state want; run checks it owns d.
func (d *direction) mustBe(want dirState) {
	if got := dirState(d.state.Load()); got != want {
		panic(fmt.Sprintf("proxy: direction is %s, want %s", got, want))
	}
}
