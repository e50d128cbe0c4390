package kubefaults

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/mcgate/mcgate/internal/testenv/kubetest"
)

// watchGone reports whether a watch of east's exported services from
// resourceVersion rv is refused as expired (410 Gone), which is what the
// mirror's own watch from that version meets.
func (f *fixture) watchGone(rv string) (bool, error) {
	ctx, cancel := context.WithTimeout(f.t.Context(), 30*time.Second)
	defer cancel()
	w, err := f.env.East.Client.CoreV1().Services(f.ns).Watch(ctx, metav1.ListOptions{ResourceVersion: rv,
		LabelSelector: "mirror.linkerd.io/exported=true"})
	if err != nil {
		return apierrors.IsResourceExpired(err) || apierrors.IsGone(err), err
	}
	defer w.Stop()
	// Served: either an ERROR event saying expired comes first, or the
	// events since rv (the history is still there).
	select {
	case ev, ok := <-w.ResultChan():
		if !ok {
			return false, errors.New("watch closed")
		}
		if ev.Type == watch.Error {
			err := apierrors.FromObject(ev.Object)
			return apierrors.IsResourceExpired(err) || apierrors.IsGone(err), err
		}
		return false, fmt.Errorf("served from %s: %s event", rv, ev.Type)
	case <-ctx.Done():
		return false, ctx.Err()
	}
}

// restartAll restarts the API servers of clusters at once and waits for
// them.
func restartAll(ctx context.Context, clusters ...*kubetest.Cluster) error {
	var wg sync.WaitGroup
	errs := make([]error, len(clusters))
	for i, c := range clusters {
		wg.Go(func() { errs[i] = c.RestartAPIServer(ctx) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// TestEtcdCompactionForcesRelist hides changes in east from west's mirror
// (its path to east is cut), compacts etcd past them and restarts both API
// servers, so that every watch of the mirror, remote and local, resumes
// from a resourceVersion that is gone (410) and must relist. The mirrors
// then converge to exactly what east exports, the surviving ones with the
// UIDs they had.
func TestEtcdCompactionForcesRelist(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	fwd := f.eastForwarder()
	before := f.linked(10, fwd.URL())
	seen, err := f.env.East.Client.CoreV1().Services(f.ns).List(ctx, metav1.ListOptions{})
	f.must(err)
	rv := seen.ResourceVersion // the mirror has seen at least this much

	fwd.Cut()
	f.watchReported(westGatewayHost, true, time.Minute)
	f.must(f.remove(ctx, "svc0"))
	f.must(f.remove(ctx, "svc1"))
	f.must(f.unexport(ctx, "svc2"))
	f.must(f.addPort(ctx, "svc3", 9090))
	f.must(f.export(ctx, "new0"))
	f.must(f.export(ctx, "new1"))
	compacted, err := f.env.East.CompactEtcd(ctx)
	f.must(err)
	restart := time.Now()
	f.must(restartAll(ctx, f.env.East, f.env.West))
	t.Logf("etcd compacted at revision %d (the mirror had seen %s); both API servers restarted in %v",
		compacted, rv, time.Since(restart).Round(100*time.Millisecond))
	gone, err := f.watchGone(rv)
	if !gone {
		t.Fatalf("a watch from the mirror's resourceVersion %s is not refused as expired: %v", rv, err)
	}

	fwd.Restore()
	restored := time.Now()
	after := f.converged(2 * time.Minute)
	t.Logf("%d mirrors converged %v after the path came back", len(after.services), time.Since(restored).Round(100*time.Millisecond))
	keptUIDs(t, before, after)
	f.watchReported(westGatewayHost, false, time.Minute)
	t.Logf("east's API server since its restart: %v", readAPICounts(t, f.env.East))
}
