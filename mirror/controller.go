package mirror

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"

	"github.com/mcgate/mcgate/mirror/multicluster"
)

// kind is what a queue key asks to reconcile.
type kind uint8

const (
	kLink    kind = iota // a Link: watcher, credentials, validation
	kService             // one remote service of a Link: its mirror and slice
	kOrphan              // a mirror whose cluster has no Link
	kStatus              // write a Link's status
	kAll                 // re-check every mirror of every Link
)

type key struct {
	kind     kind
	link     string
	ns, name string
}

// linkState is the leader's view of one Link.
type linkState struct {
	name    string
	cluster string
	cfg     *multicluster.LinkConfig // nil while the Link is invalid
	invalid error
	credErr error // the credentials were refused or unusable
	// connErr: the last watcher start could not reach the cluster, so
	// whether the credentials work is unknown (not the same as credErr).
	connErr    error
	remote     *remote
	cfgKey     string                                // fingerprint of cfg: a change re-checks every mirror
	gatewayIPs []string                              // resolved gatewayAddress (direct mode)
	services   map[string]multicluster.ServiceStatus // "<ns>/<name>" of the remote service

	// domainErr: the Link's targetClusterDomain is not the one its
	// cluster's gateway serves; no mirror is written meanwhile (domain.go).
	domainErr *domainMismatch
}

// controller writes mirrors; one exists while this replica leads.
type controller struct {
	m      *Mirror
	q      workqueue.TypedRateLimitingInterface[key]
	alloc  *allocator
	events record.EventRecorder // on Links
	memo   *writeMemo           // our last writes, until the informers see them

	mu    sync.Mutex
	links map[string]*linkState
}

func newController(m *Mirror, events record.EventRecorder) *controller {
	rl := workqueue.NewTypedMaxOfRateLimiter(
		workqueue.NewTypedItemExponentialFailureRateLimiter[key](100*time.Millisecond, 5*time.Minute),
		&workqueue.TypedBucketRateLimiter[key]{Limiter: rate.NewLimiter(rate.Limit(50), 300)},
	)
	return &controller{
		m:      m,
		q:      workqueue.NewTypedRateLimitingQueueWithConfig(rl, workqueue.TypedRateLimitingQueueConfig[key]{Name: "mirror"}),
		alloc:  newAllocator(m.cfg.EgressPorts),
		events: events,
		memo:   newWriteMemo(),
		links:  map[string]*linkState{},
	}
}

func (c *controller) run(ctx context.Context) error {
	defer c.stopRemotes()
	c.claimEgressPorts()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer c.q.ShutDown()

	m := c.m
	handlers := []struct {
		inf cache.SharedIndexInformer
		h   cache.ResourceEventHandler
	}{
		{m.links, handler(func(o any) { c.q.Add(key{kind: kLink, link: o.(metav1.Object).GetName()}) })},
		{m.secrets, handler(c.onSecret)},
		{m.mirrors, handler(func(o any) { c.enqueueMirror(o.(*corev1.Service)) })},
		{m.slices, handler(c.onSlice)},
		{m.namespaces, cache.ResourceEventHandlerFuncs{AddFunc: c.onNamespace}},
	}
	for _, h := range handlers {
		reg, err := h.inf.AddEventHandler(h.h)
		if err != nil {
			return fmt.Errorf("mirror: add handler: %w", err)
		}
		defer h.inf.RemoveEventHandler(reg)
	}
	for range m.cfg.Workers {
		wg.Go(func() {
			for c.next(ctx) {
			}
		})
	}
	wg.Go(func() {
		t := time.NewTicker(m.cfg.RepairPeriod)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-m.cfg.Health.Changed():
				c.q.Add(key{kind: kAll})
			case <-t.C:
				c.repair(ctx)
			}
		}
	})
	<-ctx.Done()
	return nil
}

// handler turns every informer event into one call of f with the object
// (tombstones unwrapped): handlers only enqueue.
func handler(f func(any)) cache.ResourceEventHandler {
	unwrap := func(o any) {
		if d, ok := o.(cache.DeletedFinalStateUnknown); ok {
			o = d.Obj
		}
		if o != nil {
			f(o)
		}
	}
	return cache.ResourceEventHandlerFuncs{AddFunc: unwrap, UpdateFunc: func(_, n any) { unwrap(n) }, DeleteFunc: unwrap}
}

func (c *controller) next(ctx context.Context) bool {
	k, shutdown := c.q.Get()
	if shutdown {
		return false
	}
	defer c.q.Done(k)
	err := c.reconcile(ctx, k)
	if err == nil {
		c.q.Forget(k)
		c.m.met.reconciles.WithLabelValues("ok").Inc()
		return true
	}
	c.m.met.reconciles.WithLabelValues("error").Inc()
	if ctx.Err() != nil {
		return true
	}
	var later retryAfter
	if errors.As(err, &later) {
		c.q.Forget(k)
		c.q.AddAfter(k, later.after)
		return true
	}
	c.m.log.Warn().Err(err).Str("link", k.link).Str("namespace", k.ns).Str("name", k.name).Msg("reconcile failed; will retry")
	c.q.AddRateLimited(k)
	return true
}

func (c *controller) reconcile(ctx context.Context, k key) error {
	switch k.kind {
	case kLink:
		return c.reconcileLink(ctx, k.link)
	case kService:
		return c.reconcileService(ctx, k.link, k.ns, k.name)
	case kOrphan:
		return c.reconcileOrphan(ctx, k.ns, k.name)
	case kStatus:
		return c.writeStatus(ctx, k.link)
	case kAll:
		c.mu.Lock()
		names := make([]string, 0, len(c.links))
		for n := range c.links {
			names = append(names, n)
		}
		c.mu.Unlock()
		for _, n := range names {
			c.resync(n)
			c.statusLater(n) // GatewayAlive may have changed
		}
	}
	return nil
}
