package mirror_test

import (
	"context"
	"fmt"
	"math"
	"runtime"
	rtmetrics "runtime/metrics"
	"slices"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"

	"github.com/mcgate/mcgate/internal/testenv/wait"
	"github.com/mcgate/mcgate/mirror"
)

// usableWatch records when each mirror's EndpointSlice first holds a ready
// endpoint in west: the moment a client there can use the mirror.
type usableWatch struct {
	mu   sync.Mutex
	at   map[string]time.Time
	want int
	done chan struct{}
}

func watchUsable(b *testing.B, f *fixture, want int) (*usableWatch, func()) {
	w := &usableWatch{at: map[string]time.Time{}, want: want, done: make(chan struct{})}
	fac := informers.NewSharedInformerFactoryWithOptions(f.env.West.Client, 0, informers.WithNamespace(f.ns))
	inf := fac.Discovery().V1().EndpointSlices().Informer()
	record := func(o any) {
		s, ok := o.(*discoveryv1.EndpointSlice)
		if !ok || s.Labels[mirror.LabelManagedBy] != mirror.ManagedByValue || len(s.Endpoints) == 0 ||
			s.Endpoints[0].Conditions.Ready == nil || !*s.Endpoints[0].Conditions.Ready {
			return
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		if _, ok := w.at[s.Name]; !ok {
			w.at[s.Name] = time.Now()
			if len(w.at) == w.want {
				close(w.done)
			}
		}
	}
	inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: record, UpdateFunc: func(_, n any) { record(n) }})
	ctx, cancel := context.WithCancel(context.Background())
	fac.Start(ctx.Done())
	fac.WaitForCacheSync(ctx.Done())
	return w, func() { cancel(); fac.Shutdown() }
}

func (w *usableWatch) when(name string) (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	t, ok := w.at[name]
	return t, ok
}

// createRemoteFast creates the remote endpoints first, so the mirror is
// usable as soon as it is written.
func (f *fixture) createRemoteFast(ctx context.Context, name string) error {
	e := f.env.East.Client
	if _, err := e.DiscoveryV1().EndpointSlices(f.ns).Create(ctx, remoteSlice(f.ns, name), metav1.CreateOptions{}); err != nil {
		return err
	}
	_, err := e.CoreV1().Services(f.ns).Create(ctx, exportedService(name, f.ns, corev1.ServicePort{Name: "http", Port: 80}), metav1.CreateOptions{})
	return err
}

// BenchmarkExportLatency: 100 services exported one after the other, each
// timed from the remote Service's creation to a ready mirror slice in west.
func BenchmarkExportLatency(b *testing.B) {
	for range b.N {
		f := newFixture(b)
		f.putSecret(true)
		f.createLink(nil)
		f.startMirror("bench")
		const n = 100
		w, stop := watchUsable(b, f, n)
		var lat []time.Duration
		for i := range n {
			name := fmt.Sprintf("svc%03d", i)
			// The remote endpoints exist first (setup); the clock starts
			// at the export, the remote Service's creation.
			f.setRemoteEndpoint(f.ns, name, true)
			start := time.Now()
			if _, err := f.env.East.Client.CoreV1().Services(f.ns).Create(b.Context(),
				exportedService(name, f.ns, corev1.ServicePort{Name: "http", Port: 80}), metav1.CreateOptions{}); err != nil {
				b.Fatal(err)
			}
			var usable time.Time
			wait.Until(b, 30*time.Second, name+" usable", func() (ok bool) {
				usable, ok = w.when(name + "-" + f.cluster)
				return ok
			})
			lat = append(lat, usable.Sub(start))
		}
		stop()
		b.Logf("latencies in export order (ms): %v", msList(lat))
		slices.Sort(lat)
		b.ReportMetric(float64(percentile(lat, 0.50).Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(percentile(lat, 0.99).Microseconds())/1000, "p99-ms")
		b.ReportMetric(float64(lat[n-1].Microseconds())/1000, "max-ms")
	}
}

// BenchmarkColdStart2000: 2,000 exported services exist before the mirror
// starts; timed from Run to the last ready mirror slice, with the peak of
// the Go runtime's total memory (the whole test process) meanwhile.
func BenchmarkColdStart2000(b *testing.B) {
	for range b.N {
		f := newFixture(b)
		f.putSecret(true)
		f.createLink(nil)
		const n = 2000
		ctx := b.Context()
		var wg sync.WaitGroup
		errs := make(chan error, n)
		sem := make(chan struct{}, 32)
		for i := range n {
			wg.Go(func() {
				sem <- struct{}{}
				defer func() { <-sem }()
				if err := f.createRemoteFast(ctx, fmt.Sprintf("cold%04d", i)); err != nil {
					errs <- err
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			b.Fatal(err)
		}
		w, stop := watchUsable(b, f, n)
		runtime.GC()
		base := totalMemory()
		peak := base
		stopSampling := make(chan struct{})
		var sampler sync.WaitGroup
		sampler.Go(func() {
			t := time.NewTicker(20 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-stopSampling:
					return
				case <-t.C:
					peak = max(peak, totalMemory())
				}
			}
		})
		start := time.Now()
		f.startMirror("bench")
		select {
		case <-w.done:
		case <-time.After(5 * time.Minute):
			b.Fatalf("only %d of %d mirrors usable after 5 minutes", len(w.at), n)
		}
		elapsed := time.Since(start)
		close(stopSampling)
		sampler.Wait()
		stop()
		b.ReportMetric(elapsed.Seconds(), "cold-s")
		b.ReportMetric(float64(n)/elapsed.Seconds(), "svc/s")
		b.ReportMetric(float64(peak)/(1<<20), "peak-MiB")
		b.ReportMetric(float64(peak-base)/(1<<20), "peak-growth-MiB")
	}
}

func totalMemory() uint64 {
	s := []rtmetrics.Sample{{Name: "/memory/classes/total:bytes"}}
	rtmetrics.Read(s)
	return s[0].Value.Uint64()
}

func msList(ds []time.Duration) []int64 {
	out := make([]int64, len(ds))
	for i, d := range ds {
		out[i] = d.Milliseconds()
	}
	return out
}

// percentile is the nearest-rank percentile of sorted samples.
func percentile(sorted []time.Duration, p float64) time.Duration {
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[max(i, 0)]
}
