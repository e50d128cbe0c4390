package kubefaults

import (
	"context"
	"maps"
	"testing"
	"time"
)

// The remote API server's outage lasts this long (issue 7: a minute).
const apiOutage = time.Minute

// holdOutage keeps an outage going until d after since, checking every
// second that west's mirrors stay exactly as in snap: a failing watch must
// neither delete nor change them.
func (f *fixture) holdOutage(since time.Time, d time.Duration, snap mirrors) {
	f.t.Helper()
	want := snap.versions()
	for checks := 0; ; checks++ {
		m, err := f.mirrors(f.t.Context())
		if err != nil {
			f.t.Fatal(err)
		}
		if got := m.versions(); !maps.Equal(got, want) {
			f.t.Fatalf("mirrors changed during the outage (%v in):\n got %v\nwant %v", time.Since(since).Round(time.Second), got, want)
		}
		left := time.Until(since.Add(d))
		if left <= 0 {
			f.t.Logf("outage held %v; mirrors checked unchanged %d times", time.Since(since).Round(100*time.Millisecond), checks+1)
			return
		}
		select {
		case <-f.t.Context().Done():
			f.t.Fatal(f.t.Context().Err())
		case <-time.After(min(left, time.Second)):
		}
	}
}

// TestRemoteAPIServerStopped stops east's API server for a minute under
// west's mirror, with changes in east just before and just after.
func TestRemoteAPIServerStopped(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	before := f.linked(6, "")
	f.watchReported(westGatewayHost, false, 30*time.Second)
	t.Logf("east's API server before the outage (counted since it started): %v", readAPICounts(t, f.env.East))

	// Changes just before the stop: west may or may not see them before.
	f.must(f.addPort(ctx, "svc0", 9090))
	f.must(f.export(ctx, "pre"))
	running := false
	t.Cleanup(func() {
		if !running { // the test failed during the outage: later tests need east
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			if err := f.env.East.StartAPIServer(ctx); err != nil {
				t.Error(err)
			}
		}
	})
	stopping := time.Now()
	f.must(f.env.East.StopAPIServer())
	stoppedAt := time.Now()
	t.Logf("east's API server stopped (SIGTERM to exit: %v)", stoppedAt.Sub(stopping).Round(100*time.Millisecond))
	f.watchReported(westGatewayHost, true, apiOutage)
	snap, err := f.mirrors(ctx)
	f.must(err)
	f.holdOutage(stoppedAt, apiOutage, snap)

	f.must(f.env.East.StartAPIServer(ctx))
	running = true
	t.Logf("east's API server was down %v (stop to ready again)", time.Since(stoppedAt).Round(100*time.Millisecond))
	// Changes just after the restart.
	f.must(f.remove(ctx, "svc1"))
	f.must(f.unexport(ctx, "svc2"))
	f.must(f.export(ctx, "post"))
	caught := time.Now()
	// client-go retries the refused watches with a jittered backoff capped
	// at 30s (so up to a minute); a retry that meets the API server still
	// starting backs off once more.
	after := f.converged(3 * time.Minute)
	t.Logf("changes around the outage mirrored %v after the restart", time.Since(caught).Round(100*time.Millisecond))
	keptUIDs(t, before, after)
	f.watchReported(westGatewayHost, false, time.Minute)

	// The watches are live again (not just one relist): a later change
	// arrives too.
	f.must(f.export(ctx, "final"))
	f.converged(time.Minute)
	counts := readAPICounts(t, f.env.East)
	t.Logf("east's API server since its restart: %v", counts)
	// The watcher's informers resume their watches, or relist once each (a
	// watch that relists counts as a WATCH); a storm would be more.
	if counts.Lists > remoteInformers || counts.Watches > 2*remoteInformers {
		t.Errorf("relist storm after the restart: %v", counts)
	}
}

// remoteInformers is how many informers the mirror's watcher of a linked
// cluster runs: its exported services, their EndpointSlices, and its
// gateway Service (whose cluster-domain annotation the Link must agree
// with; mirror/domain.go). Each may resume or relist once after an outage.
const remoteInformers = 3

// TestRemotePathCut cuts the path from west's mirror to east's API server
// (a TCP forwarder) while east, still serving, changes; then restores it.
func TestRemotePathCut(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	fwd := f.eastForwarder()
	before := f.linked(6, fwd.URL())
	f.watchReported(westGatewayHost, false, 30*time.Second)
	start := readAPICounts(t, f.env.East)
	t.Logf("east's API server before the cut (since it started): %v", start)

	fwd.Cut()
	cutAt := time.Now()
	f.watchReported(westGatewayHost, true, time.Minute)
	snap, err := f.mirrors(ctx)
	f.must(err)
	// East changes while west cannot see it.
	f.must(f.remove(ctx, "svc0"))
	f.must(f.unexport(ctx, "svc1"))
	f.must(f.addPort(ctx, "svc2", 9090))
	f.must(f.export(ctx, "during"))
	f.holdOutage(cutAt, 20*time.Second, snap)

	fwd.Restore()
	restored := time.Now()
	after := f.converged(2 * time.Minute)
	t.Logf("path cut for %v; the changes made meanwhile mirrored %v after it was restored",
		restored.Sub(cutAt).Round(100*time.Millisecond), time.Since(restored).Round(100*time.Millisecond))
	keptUIDs(t, before, after)
	f.watchReported(westGatewayHost, false, time.Minute)
	f.must(f.export(ctx, "final"))
	f.converged(time.Minute)

	d := readAPICounts(t, f.env.East).minus(start)
	t.Logf("east's API server during the cut and after: %v", d)
	// The watches resume from their resourceVersion. client-go relists
	// instead when the broken stream ends with an error rather than EOF
	// (which one depends on the moment of the cut): at most once per
	// informer; a storm would be more.
	if d.Lists > remoteInformers || d.Watches > 2*remoteInformers || d.WatchLists > remoteInformers {
		t.Errorf("relisted after the path came back: %v", d)
	}
}
