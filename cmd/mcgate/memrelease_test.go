package main

import (
	"testing"

	"github.com/rs/zerolog"
)

// TestMemoryReleaser feeds the releaser a scripted allocation and traffic
// count, one sample per second: one release after a burst once allocation
// and traffic have stopped for quietFor samples, none while either goes on
// or without a burst.
func TestMemoryReleaser(t *testing.T) {
	const mib = 1 << 20
	type step struct {
		seconds  int    // samples in this step
		perSec   uint64 // bytes allocated per sample
		releases int    // releases counted at its end
		traffic  uint64 // bytes spliced per sample
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"burst then quiet", []step{{2, 50 * mib, 0, 0}, {2, 0, 0, 0}, {2, 0, 1, 0}, {30, 0, 1, 0}}},
		{"steady allocation", []step{{60, 2 * mib, 0, 0}}},
		{"quiet, nothing to give back", []step{{60, 512 << 10, 0, 0}}},
		{"slow trickle adds up", []step{{40, 2 * mib, 0, 0}, {5, 0, 1, 0}}},
		{"two bursts", []step{{2, 50 * mib, 0, 0}, {5, 0, 1, 0}, {3, 40 * mib, 1, 0}, {5, 0, 2, 0}}},
		{"short pauses do not count", []step{{2, 50 * mib, 0, 0}, {2, 0, 0, 0}, {1, 5 * mib, 0, 0}, {2, 0, 0, 0}, {1, 0, 1, 0}}},
		{"traffic that allocates nothing", []step{{2, 50 * mib, 0, 0}, {30, 0, 0, 10 * mib}, {3, 0, 1, 0}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var allocated, spliced uint64
			releases := 0
			m := newMemoryReleaser(func() uint64 { return spliced }, zerolog.Nop())
			m.allocated = func() uint64 { return allocated }
			m.release = func() { releases++ }
			m.start()
			elapsed := 0
			for i, s := range tc.steps {
				for range s.seconds {
					allocated += s.perSec
					spliced += s.traffic
					m.sample()
					elapsed++
				}
				if releases != s.releases {
					t.Fatalf("step %d (at %ds): %d releases, want %d", i, elapsed, releases, s.releases)
				}
			}
		})
	}
}
