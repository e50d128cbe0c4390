package mirror

import (
	"context"
	"errors"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
)

// The watcher reports when its list and watch calls start and stop failing
// (a reflector retries a refused watch silently); the outage itself is on
// real clusters in test/kubefaults.
func TestRemoteReportsFailingCalls(t *testing.T) {
	changes := 0
	r := &remote{failing: map[string]error{}, onHealth: func(*remote) { changes++ }}
	results := map[string]error{}
	lw := func(resource string) *cache.ListWatch {
		return r.reporting(resource, &cache.ListWatch{
			ListWithContextFunc: func(context.Context, metav1.ListOptions) (runtime.Object, error) {
				return &corev1.ServiceList{}, results[resource]
			},
			WatchFuncWithContext: func(context.Context, metav1.ListOptions) (watch.Interface, error) {
				return watch.NewFake(), results[resource]
			},
		})
	}
	services, slices := lw("services"), lw("endpointslices")
	ctx := context.Background()
	refused := errors.New("dial tcp 198.18.0.254:6443: connect: connection refused")
	step := func(what string, call func(), wantChanges int, wantFailing bool) {
		t.Helper()
		call()
		if err := r.watchErr(); changes != wantChanges || (err != nil) != wantFailing {
			t.Fatalf("%s: %d changes, watchErr %v; want %d changes, failing %v", what, changes, err, wantChanges, wantFailing)
		}
	}

	step("working", func() { services.WatchWithContext(ctx, metav1.ListOptions{}) }, 0, false)
	results["services"] = refused
	step("refused", func() { services.WatchWithContext(ctx, metav1.ListOptions{}) }, 1, true)
	step("refused again", func() { services.ListWithContext(ctx, metav1.ListOptions{}) }, 1, true)
	if err := r.watchErr(); !errors.Is(err, refused) {
		t.Fatalf("watchErr %v does not wrap the first failure", err)
	}
	results["services"] = apierrors.NewResourceExpired("too old resource version")
	step("expired: a relist, not an outage", func() { services.WatchWithContext(ctx, metav1.ListOptions{}) }, 1, true)
	results["endpointslices"] = refused
	step("second resource fails too", func() { slices.WatchWithContext(ctx, metav1.ListOptions{}) }, 1, true)
	results["services"] = nil
	step("one recovered", func() { services.ListWithContext(ctx, metav1.ListOptions{}) }, 1, true)
	results["endpointslices"] = nil
	step("both recovered", func() { slices.WatchWithContext(ctx, metav1.ListOptions{}) }, 2, false)
	results["services"] = refused
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	step("stopping", func() { services.WatchWithContext(cancelled, metav1.ListOptions{}) }, 2, false)
	step("deprecated methods report too", func() { services.Watch(metav1.ListOptions{}) }, 3, true)
}
