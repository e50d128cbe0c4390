package proxy

import "testing"

// TestDirectionMoves: a direction moves between its owners only along the
// four legal moves, and only from the state it is in; anything else
// panics.
func TestDirectionMoves(t *testing.T) {
	states := []dirState{dirRunning, dirParked, dirEnded}
	legal := map[[2]dirState]bool{
		{dirRunning, dirParked}: true, // park
		{dirParked, dirRunning}: true, // wake
		{dirParked, dirEnded}:   true, // abort
		{dirRunning, dirEnded}:  true, // end
	}
	for _, at := range states {
		for _, from := range states {
			for _, to := range states {
				var d direction
				d.state.Store(uint32(at))
				ok := at == from && legal[[2]dirState{from, to}]
				panicked := func() (p bool) {
					defer func() { p = recover() != nil }()
					d.move(from, to)
					return false
				}()
				if panicked == ok {
					t.Errorf("at %s, move %s→%s: panicked %v, want %v", at, from, to, panicked, !ok)
				}
				if want := map[bool]dirState{true: to, false: at}[ok]; dirState(d.state.Load()) != want {
					t.Errorf("at %s, move %s→%s: state %s after, want %s", at, from, to, dirState(d.state.Load()), want)
				}
			}
		}
	}
}
