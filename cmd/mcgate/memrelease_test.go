package main

import (
	"context"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rs/zerolog"
)

// TestMemoryReleaser drives the releaser on synctest's fake clock with a
// scripted allocation count: one release after a burst once allocation has
// stopped for quietFor samples, none while it goes on or without a burst.
func TestMemoryReleaser(t *testing.T) {
	const mib = 1 << 20
	type step struct {
		seconds  int    // how long this step lasts
		perSec   uint64 // bytes allocated per second during it
		releases int    // releases counted at its end
		traffic  uint64 // bytes spliced per second during it
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
			synctest.Test(t, func(t *testing.T) {
				var allocated, spliced atomic.Uint64
				var releases atomic.Int64
				m := newMemoryReleaser(spliced.Load, zerolog.Nop())
				m.allocated = allocated.Load
				m.release = func() { releases.Add(1) }
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan error, 1)
				go func() { done <- m.Run(ctx) }()
				synctest.Wait()
				elapsed := 0
				for i, s := range tc.steps {
					for range s.seconds {
						// Allocation happens between two samples; each
						// sample lands on a whole second.
						time.Sleep(time.Second / 2)
						allocated.Add(s.perSec)
						spliced.Add(s.traffic)
						time.Sleep(time.Second / 2)
						synctest.Wait()
						elapsed++
					}
					if got := int(releases.Load()); got != s.releases {
						t.Fatalf("step %d (at %ds): %d releases, want %d", i, elapsed, got, s.releases)
					}
				}
				cancel()
				if err := <-done; err != nil {
					t.Fatal(err)
				}
			})
		})
	}
}
