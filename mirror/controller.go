package mirror

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/cache"
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
}

// controller writes mirrors; one exists while this replica leads.
type controller struct {
	m     *Mirror
	q     workqueue.TypedRateLimitingInterface[key]
	alloc *Allocator

	mu    sync.Mutex
	links map[string]*linkState
}

func newController(m *Mirror) *controller {
	rl := workqueue.NewTypedMaxOfRateLimiter(
		workqueue.NewTypedItemExponentialFailureRateLimiter[key](100*time.Millisecond, 5*time.Minute),
		&workqueue.TypedBucketRateLimiter[key]{Limiter: rate.NewLimiter(rate.Limit(50), 300)},
	)
	return &controller{
		m:     m,
		q:     workqueue.NewTypedRateLimitingQueueWithConfig(rl, workqueue.TypedRateLimitingQueueConfig[key]{Name: "mirror"}),
		alloc: NewAllocator(m.cfg.EgressPorts),
		links: map[string]*linkState{},
	}
}

func (c *controller) run(ctx context.Context) error {
	defer c.stopRemotes()
	c.claimEgressPorts()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer c.q.ShutDown()

	m := m(c)
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

func m(c *controller) *Mirror { return c.m }

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

// claimEgressPorts rebuilds the allocator from the mirrors' annotations,
// oldest mirror first, so a port recorded twice stays with the older one.
func (c *controller) claimEgressPorts() {
	svcs := c.m.mirrors.GetStore().List()
	slices.SortFunc(svcs, func(a, b any) int {
		x, y := a.(*corev1.Service), b.(*corev1.Service)
		if d := x.CreationTimestamp.Compare(y.CreationTimestamp.Time); d != 0 {
			return d
		}
		return strings.Compare(x.Namespace+"/"+x.Name, y.Namespace+"/"+y.Name)
	})
	for _, o := range svcs {
		s := o.(*corev1.Service)
		ports, err := ParseEgressPorts(s.Annotations[AnnotationEgressPorts])
		if err != nil {
			continue
		}
		for sp, ep := range ports {
			c.alloc.Claim(EgressKey(s.Namespace, s.Name, sp), int(ep))
		}
	}
	c.m.met.egressUsed.Set(float64(c.alloc.InUse()))
}

// linkForCluster names the Link (in the cache) whose targetClusterName is
// cluster, the alphabetically first when several claim it.
func (c *controller) linkForCluster(cluster string) string {
	best := ""
	for _, o := range c.m.links.GetStore().List() {
		u := o.(*unstructured.Unstructured)
		tc, _, _ := unstructured.NestedString(u.Object, "spec", "targetClusterName")
		if tc == cluster && (best == "" || u.GetName() < best) {
			best = u.GetName()
		}
	}
	return best
}

func (c *controller) enqueueMirror(s *corev1.Service) {
	cluster := s.Labels[multicluster.LabelClusterName]
	name, ns, ok := ParseFQName(s.Annotations[multicluster.AnnotationRemoteFQName])
	link := c.linkForCluster(cluster)
	if link == "" || !ok {
		c.q.Add(key{kind: kOrphan, ns: s.Namespace, name: s.Name})
		return
	}
	c.q.Add(key{kind: kService, link: link, ns: ns, name: name})
}

func (c *controller) onSecret(o any) {
	s := o.(*corev1.Secret)
	for _, l := range c.m.links.GetStore().List() {
		u := l.(*unstructured.Unstructured)
		if n, _, _ := unstructured.NestedString(u.Object, "spec", "clusterCredentialsSecret"); n == s.Name {
			c.q.Add(key{kind: kLink, link: u.GetName()})
		}
	}
}

func (c *controller) onSlice(o any) {
	s := o.(*discoveryv1.EndpointSlice)
	svc := s.Labels[discoveryv1.LabelServiceName]
	if s.Namespace == c.m.cfg.Namespace && svc == c.m.cfg.GatewayService && len(c.m.cfg.AdvertiseAddresses) == 0 {
		c.q.Add(key{kind: kAll}) // our own addresses changed
		return
	}
	if s.Labels[LabelManagedBy] != ManagedByValue {
		return
	}
	if mo, ok, _ := c.m.mirrors.GetStore().GetByKey(s.Namespace + "/" + svc); ok {
		c.enqueueMirror(mo.(*corev1.Service))
	}
}

// onNamespace catches up mirrors skipped because their namespace was missing.
func (c *controller) onNamespace(o any) {
	ns := o.(*corev1.Namespace).Name
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, st := range c.links {
		if st.remote == nil {
			continue
		}
		for _, k := range st.remote.keys(ns) {
			c.q.Add(key{kind: kService, link: st.name, ns: ns, name: k[len(ns)+1:]})
		}
	}
}

// resync enqueues every remote service of a Link and every local mirror of
// its cluster: the level-triggered pass that also collects orphans after a
// restart or a watch gap.
func (c *controller) resync(link string) {
	c.mu.Lock()
	st := c.links[link]
	var r *remote
	cluster := ""
	if st != nil {
		r, cluster = st.remote, st.cluster
	}
	c.mu.Unlock()
	if r == nil {
		return
	}
	for _, k := range r.keys("") {
		ns, name, _ := strings.Cut(k, "/")
		c.q.Add(key{kind: kService, link: link, ns: ns, name: name})
	}
	objs, _ := c.m.mirrors.GetIndexer().ByIndex(indexByCluster, cluster)
	for _, o := range objs {
		c.enqueueMirror(o.(*corev1.Service))
	}
}

// repair re-resolves gateway names (Linkerd #10635: load balancer IPs
// change behind a stable name) and re-checks every mirror.
func (c *controller) repair(ctx context.Context) {
	c.mu.Lock()
	states := make([]*linkState, 0, len(c.links))
	for _, st := range c.links {
		states = append(states, st)
	}
	c.mu.Unlock()
	for _, st := range states {
		c.mu.Lock()
		cfg := st.cfg
		c.mu.Unlock()
		if cfg == nil {
			continue
		}
		ips := c.resolve(ctx, cfg)
		c.mu.Lock()
		st.gatewayIPs = ips
		c.mu.Unlock()
		c.m.met.repairs.WithLabelValues(cfg.Cluster).Inc()
	}
	c.q.Add(key{kind: kAll})
}

func (c *controller) resolve(ctx context.Context, cfg *multicluster.LinkConfig) []string {
	var out []string
	for _, h := range cfg.GatewayHosts {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		ips, err := c.m.cfg.Resolve(rctx, h)
		cancel()
		if err != nil {
			c.m.log.Warn().Err(err).Str("cluster", cfg.Cluster).Str("host", h).Msg("resolve gateway address")
			continue
		}
		out = append(out, ips...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func (c *controller) stopRemotes() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, st := range c.links {
		if st.remote != nil {
			st.remote.stop()
			st.remote = nil
		}
	}
}

// reconcileLink validates a Link and (re)starts its cluster watcher when
// its selector or credentials changed. New credentials replace the running
// watcher only once they work: bad ones leave the existing watcher and
// mirrors as they are.
func (c *controller) reconcileLink(ctx context.Context, name string) error {
	obj, ok, _ := c.m.links.GetStore().GetByKey(c.m.cfg.Namespace + "/" + name)
	if !ok {
		return c.teardownLink(ctx, name)
	}
	c.mu.Lock()
	st := c.links[name]
	if st == nil {
		st = &linkState{name: name, services: map[string]multicluster.ServiceStatus{}}
		c.links[name] = st
	}
	c.mu.Unlock()

	l, err := linkSpecFromUnstructured(obj.(*unstructured.Unstructured))
	var cfg *multicluster.LinkConfig
	if err == nil {
		cfg, err = l.Config()
	}
	if err == nil {
		if owner := c.linkForCluster(cfg.Cluster); owner != name {
			err = &multicluster.FieldError{Field: "spec.targetClusterName", Value: cfg.Cluster, Reason: "already linked by Link " + owner}
		}
	}
	if err != nil {
		c.m.log.Warn().Err(err).Str("link", name).Msg("invalid Link: not watching its cluster")
		c.mu.Lock()
		if st.remote != nil {
			st.remote.stop()
			st.remote = nil
		}
		st.cfg, st.invalid, st.cfgKey = nil, err, ""
		c.mu.Unlock()
		c.statusLater(name)
		return nil
	}
	// Status writes update the Link too; only a real change of the parsed
	// spec re-resolves the gateway and re-checks every mirror (the repair
	// loop re-resolves periodically anyway).
	cfgKey := fmt.Sprintf("%+v|%s", *cfg, cfg.Selector)
	c.mu.Lock()
	cfgChanged := st.cfgKey != cfgKey
	c.mu.Unlock()
	var ips []string
	if cfgChanged {
		ips = c.resolve(ctx, cfg)
	}
	c.mu.Lock()
	st.cfg, st.invalid, st.cluster, st.cfgKey = cfg, nil, cfg.Cluster, cfgKey
	if cfgChanged {
		st.gatewayIPs = ips
	}
	running := st.remote
	c.mu.Unlock()

	sobj, ok, _ := c.m.secrets.GetStore().GetByKey(c.m.cfg.Namespace + "/" + cfg.Secret)
	if !ok {
		c.credentialsFailed(name, fmt.Errorf("secret %s/%s of type %s not found", c.m.cfg.Namespace, cfg.Secret, multicluster.SecretType))
		return nil // the Secret's arrival enqueues the Link again
	}
	secret := sobj.(*corev1.Secret)
	if running != nil && running.secretVersion == secret.ResourceVersion && running.selector == cfg.Selector.String() {
		c.statusLater(name)
		if cfgChanged { // gateway, mode or exclusions changed; status-only updates change nothing
			c.resync(name)
		}
		return nil
	}
	kc, ok := secret.Data[multicluster.SecretKey]
	if !ok {
		c.credentialsFailed(name, fmt.Errorf("secret %s has no %q key", secret.Name, multicluster.SecretKey))
		return nil
	}
	rc, err := c.m.cfg.RemoteConfig(kc)
	if err != nil {
		c.credentialsFailed(name, err)
		return nil
	}
	r, err := startRemote(ctx, rc, cfg.Selector, secret.ResourceVersion, func(ns, n string) {
		c.q.Add(key{kind: kService, link: name, ns: ns, name: n})
	}, func(r *remote) { c.remoteHealthChanged(name, r) })
	if err != nil && unreachable(err) {
		c.unreachable(name, err)
		// A fixed, short retry: the rate limiter's backoff would grow to
		// minutes while the cluster is down, delaying the first watch after
		// it is back. The old watcher, if any, keeps running.
		return retryAfter{err, unreachableRetry}
	}
	if err != nil {
		c.credentialsFailed(name, err)
		return err // retried with backoff; the old watcher keeps running
	}
	c.mu.Lock()
	old := st.remote
	st.remote, st.credErr, st.connErr = r, nil, nil
	c.mu.Unlock()
	if old != nil {
		old.stop()
	}
	c.m.met.connected.WithLabelValues(cfg.Cluster).Set(1)
	c.m.log.Info().Str("link", name).Str("cluster", cfg.Cluster).Msg("watching linked cluster")
	c.statusLater(name)
	c.resync(name)
	return nil
}

// teardownLink stops a deleted Link's watcher and deletes its mirrors
// (Linkerd leaves them behind; an unlinked cluster's services must go).
func (c *controller) teardownLink(ctx context.Context, name string) error {
	c.mu.Lock()
	st := c.links[name]
	c.mu.Unlock()
	if st == nil {
		return nil
	}
	if st.remote != nil {
		st.remote.stop()
	}
	if st.cluster != "" && c.linkForCluster(st.cluster) == "" {
		objs, _ := c.m.mirrors.GetIndexer().ByIndex(indexByCluster, st.cluster)
		for _, o := range objs {
			if err := c.deleteMirror(ctx, o.(*corev1.Service)); err != nil {
				return err
			}
		}
		c.m.met.connected.DeleteLabelValues(st.cluster)
	}
	c.mu.Lock()
	delete(c.links, name)
	c.mu.Unlock()
	c.m.log.Info().Str("link", name).Str("cluster", st.cluster).Msg("Link deleted: mirrors removed")
	return nil
}

func (c *controller) reconcileOrphan(ctx context.Context, ns, name string) error {
	o, ok, _ := c.m.mirrors.GetStore().GetByKey(ns + "/" + name)
	if !ok {
		return nil
	}
	s := o.(*corev1.Service)
	if c.linkForCluster(s.Labels[multicluster.LabelClusterName]) != "" {
		if _, _, ok := ParseFQName(s.Annotations[multicluster.AnnotationRemoteFQName]); ok {
			c.enqueueMirror(s) // its Link exists (again): handled there
			return nil
		}
	}
	c.m.log.Info().Str("namespace", ns).Str("name", name).Msg("deleting orphaned mirror")
	return c.deleteMirror(ctx, s)
}

func (c *controller) deleteMirror(ctx context.Context, s *corev1.Service) error {
	err := c.m.cfg.Client.CoreV1().Services(s.Namespace).Delete(ctx, s.Name, metav1.DeleteOptions{
		Preconditions: &metav1.Preconditions{UID: &s.UID},
	})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("delete mirror %s/%s: %w", s.Namespace, s.Name, err)
	}
	c.m.met.writes.WithLabelValues("service", "delete").Inc()
	c.alloc.Release(s.Namespace + "/" + s.Name + ":")
	c.m.met.egressUsed.Set(float64(c.alloc.InUse()))
	c.m.met.endpoints.DeleteLabelValues(s.Labels[multicluster.LabelClusterName], s.Name)
	return nil
}

// reconcileService makes the mirror of one remote service match it.
func (c *controller) reconcileService(ctx context.Context, link, ns, name string) error {
	c.mu.Lock()
	st := c.links[link]
	var cfg *multicluster.LinkConfig
	var r *remote
	var gwIPs []string
	if st != nil {
		cfg, r, gwIPs = st.cfg, st.remote, st.gatewayIPs
	}
	c.mu.Unlock()
	if cfg == nil || r == nil {
		// No working view of the remote cluster: never delete on that.
		return nil
	}
	rsvc := r.service(ns, name)
	existing, _ := c.m.mirrors.GetIndexer().ByIndex(indexByRemote, cfg.Cluster+"/"+ns+"/"+name)
	if rsvc == nil || !cfg.Selector.Matches(labels.Set(rsvc.Labels)) {
		for _, o := range existing {
			if err := c.deleteMirror(ctx, o.(*corev1.Service)); err != nil {
				return err
			}
		}
		c.setStatus(link, ns, name, nil)
		return nil
	}
	want := MirrorName(rsvc, cfg.Cluster)
	var actual *corev1.Service
	for _, o := range existing {
		s := o.(*corev1.Service)
		if s.Name == want {
			actual = s
			continue
		}
		// Renamed through mirror.linkerd.io/remote-svc-name.
		if err := c.deleteMirror(ctx, s); err != nil {
			return err
		}
	}
	local := &multicluster.ObjectRef{Kind: "Service", Name: want, Namespace: ns}
	if !c.namespaceUsable(ns) {
		if c.setStatus(link, ns, name, &multicluster.LinkCondition{Status: metav1.ConditionFalse, Reason: multicluster.ReasonMissingNamespace,
			Message: "namespace " + ns + " does not exist in this cluster", LocalRef: local}) {
			c.event(link, corev1.EventTypeNormal, "ServiceMirroringSkipped",
				fmt.Sprintf("Skipped mirroring service %s/%s: namespace does not exist", ns, name))
		}
		return nil
	}
	mirror, err := c.applyService(ctx, cfg, rsvc, actual)
	if err != nil {
		c.setStatus(link, ns, name, &multicluster.LinkCondition{Status: metav1.ConditionFalse, Reason: reasonOf(err), Message: err.Error(), LocalRef: local})
		if reasonOf(err) == multicluster.ReasonInvalidService {
			return nil
		}
		return err
	}
	addrs := gwIPs
	if cfg.Mode == multicluster.ModeEgress {
		addrs = c.m.localAddresses()
	}
	state := SliceState{Addresses: addrs, Alive: c.m.cfg.Health.Alive(cfg.Cluster), Empty: !r.hasReady(ns, name)}
	ready, err := c.applySlice(ctx, cfg, mirror, state)
	if err != nil {
		c.setStatus(link, ns, name, &multicluster.LinkCondition{Status: metav1.ConditionFalse, Reason: multicluster.ReasonError, Message: err.Error(), LocalRef: local})
		return err
	}
	c.m.met.endpoints.WithLabelValues(cfg.Cluster, want).Set(float64(ready))
	c.setStatus(link, ns, name, &multicluster.LinkCondition{Status: metav1.ConditionTrue, Reason: multicluster.ReasonMirrored, LocalRef: local})
	return nil
}

// namespaceUsable: the namespace exists and is not being deleted (the API
// server refuses new objects in a terminating namespace).
func (c *controller) namespaceUsable(ns string) bool {
	o, ok, _ := c.m.namespaces.GetStore().GetByKey(ns)
	return ok && o.(*corev1.Namespace).DeletionTimestamp == nil
}

// errInvalidService marks errors retrying cannot fix.
var errInvalidService = errors.New("invalid service")

func reasonOf(err error) string {
	if errors.Is(err, errInvalidService) {
		return multicluster.ReasonInvalidService
	}
	return multicluster.ReasonError
}

func (c *controller) applyService(ctx context.Context, cfg *multicluster.LinkConfig, rsvc *corev1.Service, actual *corev1.Service) (*corev1.Service, error) {
	if len(rsvc.Spec.Ports) == 0 {
		return nil, fmt.Errorf("%w: remote service has no ports", errInvalidService)
	}
	var egress map[int32]int32
	if cfg.Mode == multicluster.ModeEgress {
		var recorded map[int32]int32
		if actual != nil {
			recorded, _ = ParseEgressPorts(actual.Annotations[AnnotationEgressPorts])
		}
		ports := make([]int32, len(rsvc.Spec.Ports))
		for i, p := range rsvc.Spec.Ports {
			ports[i] = p.Port
		}
		var err error
		egress, err = c.alloc.ForMirror(rsvc.Namespace, MirrorName(rsvc, cfg.Cluster), ports, recorded)
		c.m.met.egressUsed.Set(float64(c.alloc.InUse()))
		if err != nil {
			return nil, err
		}
	}
	desired := DesiredService(cfg, rsvc, egress)
	if actual != nil && UpToDate(actual, desired.Labels, desired.Annotations) {
		return actual, nil
	}
	// Force only when taking back fields of our own mirror (someone edited
	// it); creating never forces, so a foreign Service is never taken over.
	out, err := c.m.cfg.Client.CoreV1().Services(rsvc.Namespace).Apply(ctx, desired,
		metav1.ApplyOptions{FieldManager: FieldManager, Force: actual != nil})
	if err != nil {
		if apierrors.IsConflict(err) {
			return nil, fmt.Errorf("%w: %v", errInvalidService, err)
		}
		return nil, fmt.Errorf("apply mirror %s/%s: %w", *desired.Namespace, *desired.Name, err)
	}
	c.m.met.writes.WithLabelValues("service", "apply").Inc()
	return out, nil
}

// applySlice writes the mirror's EndpointSlice when it differs, and returns
// the number of ready endpoints it holds.
func (c *controller) applySlice(ctx context.Context, cfg *multicluster.LinkConfig, mirror *corev1.Service, st SliceState) (int, error) {
	desired, err := DesiredSlice(cfg, mirror, st)
	if err != nil {
		return 0, err
	}
	ready := 0
	if st.Alive {
		ready = len(desired.Endpoints)
	}
	if o, ok, _ := c.m.slices.GetStore().GetByKey(mirror.Namespace + "/" + mirror.Name); ok &&
		UpToDate(o.(*discoveryv1.EndpointSlice), desired.Labels, desired.Annotations) {
		return ready, nil
	}
	if _, err := c.m.cfg.Client.DiscoveryV1().EndpointSlices(mirror.Namespace).Apply(ctx, desired,
		metav1.ApplyOptions{FieldManager: FieldManager, Force: true}); err != nil {
		return 0, fmt.Errorf("apply endpointslice %s/%s: %w", mirror.Namespace, mirror.Name, err)
	}
	c.m.met.writes.WithLabelValues("endpointslice", "apply").Inc()
	return ready, nil
}

// setStatus records a remote service's condition (nil drops the entry) and
// schedules a status write when it changed; it reports whether it changed.
func (c *controller) setStatus(link, ns, name string, cond *multicluster.LinkCondition) bool {
	c.mu.Lock()
	st := c.links[link]
	if st == nil {
		c.mu.Unlock()
		return false
	}
	k := ns + "/" + name
	old, had := st.services[k]
	if cond == nil {
		delete(st.services, k)
	} else {
		cond.Type = multicluster.ConditionMirrored
		if had && len(old.Conditions) == 1 && sameCondition(old.Conditions[0], *cond) {
			c.mu.Unlock()
			return false
		}
		cond.LastTransitionTime = metav1.Now()
		st.services[k] = multicluster.ServiceStatus{ControllerName: multicluster.ControllerName,
			RemoteRef: multicluster.ObjectRef{Kind: "Service", Name: name, Namespace: ns}, Conditions: []multicluster.LinkCondition{*cond}}
	}
	c.mu.Unlock()
	if cond == nil && !had {
		return false
	}
	c.statusLater(link)
	return true
}

func sameCondition(a, b multicluster.LinkCondition) bool {
	return a.Status == b.Status && a.Reason == b.Reason && a.Message == b.Message &&
		(a.LocalRef == nil) == (b.LocalRef == nil) && (a.LocalRef == nil || *a.LocalRef == *b.LocalRef)
}

// statusDelay batches status writes. A Link's status holds one entry per
// mirrored service, so each write costs O(services) on the API server and
// in every Link watcher; a few seconds of staleness in status is cheap.
const statusDelay = 2 * time.Second

// statusLater batches status writes: a burst of service changes becomes
// one patch of the Link's status.
func (c *controller) statusLater(link string) {
	c.q.AddAfter(key{kind: kStatus, link: link}, statusDelay)
}

// event records a Kubernetes Event on the Link (best effort).
func (c *controller) event(link, typ, reason, msg string) {
	o, ok, _ := c.m.links.GetStore().GetByKey(c.m.cfg.Namespace + "/" + link)
	if !ok {
		return
	}
	u := o.(*unstructured.Unstructured)
	now := metav1.Now()
	ev := &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{GenerateName: link + ".", Namespace: c.m.cfg.Namespace},
		InvolvedObject: corev1.ObjectReference{Kind: "Link", APIVersion: multicluster.LinkGVR.GroupVersion().String(),
			Name: link, Namespace: c.m.cfg.Namespace, UID: u.GetUID()},
		Reason: reason, Message: msg, Type: typ, Count: 1,
		FirstTimestamp: now, LastTimestamp: now,
		Source:              corev1.EventSource{Component: "mcgate-mirror"},
		ReportingController: "mcgate.io/mirror", ReportingInstance: c.m.cfg.Identity,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.m.cfg.Client.CoreV1().Events(c.m.cfg.Namespace).Create(ctx, ev, metav1.CreateOptions{}); err != nil {
		c.m.log.Warn().Err(err).Str("link", link).Str("reason", reason).Msg("record event")
	}
}
