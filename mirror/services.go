package mirror

// Reconciling mirrors: one remote service's mirror Service and its
// EndpointSlice, orphans (mirrors of clusters no Link names), and what
// enqueues them.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"

	"github.com/mcgate/mcgate/mirror/multicluster"
)

// reconcileService makes the mirror of one remote service match it.
func (c *controller) reconcileService(ctx context.Context, link, ns, name string) error {
	cfg, r, gwIPs := c.view(link)
	if cfg == nil || r == nil {
		// No working view of the remote cluster: never delete on that.
		return nil
	}
	if c.heldBack(link) {
		// Mirrors whose every connection the remote gateway would refuse:
		// none is written, and the existing ones stay as they are.
		return nil
	}
	rsvc := r.service(ns, name)
	existing, _ := c.m.mirrors.GetIndexer().ByIndex(indexByRemote, cfg.Cluster+"/"+ns+"/"+name)
	if rsvc == nil || !cfg.Selector.Matches(labels.Set(rsvc.Labels)) {
		if _, err := c.keepMirror(ctx, existing, ""); err != nil {
			return err
		}
		c.setStatus(link, ns, name, nil)
		return nil
	}
	want := mirrorName(rsvc, cfg.Cluster)
	actual, err := c.keepMirror(ctx, existing, want)
	if err != nil {
		return err
	}
	local := &multicluster.ObjectRef{Kind: "Service", Name: want, Namespace: ns}
	failed := func(reason string, err error) {
		c.setStatus(link, ns, name, &multicluster.LinkCondition{Status: metav1.ConditionFalse, Reason: reason, Message: err.Error(), LocalRef: local})
	}
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
		failed(reasonOf(err), err)
		if reasonOf(err) == multicluster.ReasonInvalidService {
			return nil
		}
		return err
	}
	addrs := gwIPs
	if cfg.Mode == multicluster.ModeEgress {
		addrs = c.m.localAddresses()
	}
	state := sliceState{Addresses: addrs, Alive: c.m.cfg.Health.Alive(cfg.Cluster), Empty: !r.hasReady(ns, name)}
	ready, err := c.applySlice(ctx, cfg, mirror, state)
	if err != nil {
		failed(multicluster.ReasonError, err)
		return err
	}
	c.m.met.endpoints.WithLabelValues(cfg.Cluster, want).Set(float64(ready))
	c.setStatus(link, ns, name, &multicluster.LinkCondition{Status: metav1.ConditionTrue, Reason: multicluster.ReasonMirrored, LocalRef: local})
	return nil
}

// view is what the leader knows of a Link's cluster: its parsed spec (nil
// while invalid), its watcher (nil while none works) and its gateway's IPs.
func (c *controller) view(link string) (*multicluster.LinkConfig, *remote, []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.links[link]
	if st == nil {
		return nil, nil, nil
	}
	return st.cfg, st.remote, st.gatewayIPs
}

// mirrorNamed returns the cached mirror Service ns/name, or nil.
func (c *controller) mirrorNamed(ns, name string) *corev1.Service {
	o, ok, _ := c.m.mirrors.GetStore().GetByKey(ns + "/" + name)
	if !ok {
		return nil
	}
	return o.(*corev1.Service)
}

// keepMirror deletes the mirrors of one remote service (objs) except the
// one named keep, which it returns (nil if none). Others were renamed
// through mirror.linkerd.io/remote-svc-name, or the service is gone.
func (c *controller) keepMirror(ctx context.Context, objs []any, keep string) (*corev1.Service, error) {
	var kept *corev1.Service
	for _, o := range objs {
		s := o.(*corev1.Service)
		if s.Name == keep {
			kept = s
			continue
		}
		if err := c.deleteMirror(ctx, s); err != nil {
			return nil, err
		}
	}
	return kept, nil
}

func (c *controller) deleteMirror(ctx context.Context, s *corev1.Service) error {
	err := c.m.cfg.Client.CoreV1().Services(s.Namespace).Delete(ctx, s.Name, metav1.DeleteOptions{
		Preconditions: &metav1.Preconditions{UID: &s.UID},
	})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("delete mirror %s/%s: %w", s.Namespace, s.Name, err)
	}
	c.m.met.writes.WithLabelValues("service", "delete").Inc()
	c.memo.forget(memoKey("service", s.Namespace, s.Name))
	c.memo.forget(memoKey("endpointslice", s.Namespace, s.Name))
	c.alloc.release(egressPrefix(s.Namespace, s.Name))
	c.m.met.egressUsed.Set(float64(c.alloc.inUse()))
	c.m.met.endpoints.DeleteLabelValues(s.Labels[multicluster.LabelClusterName], s.Name)
	return nil
}

// reconcileOrphan deletes a mirror whose cluster no Link names.
func (c *controller) reconcileOrphan(ctx context.Context, ns, name string) error {
	s := c.mirrorNamed(ns, name)
	if s == nil {
		return nil
	}
	if c.linkForCluster(s.Labels[multicluster.LabelClusterName]) != "" {
		if _, _, ok := parseFQName(s.Annotations[multicluster.AnnotationRemoteFQName]); ok {
			c.enqueueMirror(s) // its Link exists (again): handled there
			return nil
		}
	}
	c.m.log.Info().Str("namespace", ns).Str("name", name).Msg("deleting orphaned mirror")
	return c.deleteMirror(ctx, s)
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

// applyService writes the mirror of rsvc when actual (nil: none yet)
// differs from it, and returns the mirror as stored.
func (c *controller) applyService(ctx context.Context, cfg *multicluster.LinkConfig, rsvc, actual *corev1.Service) (*corev1.Service, error) {
	if len(rsvc.Spec.Ports) == 0 {
		return nil, fmt.Errorf("%w: remote service has no ports", errInvalidService)
	}
	egress, err := c.egressPorts(cfg, rsvc, actual)
	if err != nil {
		return nil, err
	}
	desired := desiredService(cfg, rsvc, egress)
	if actual != nil && serviceHasForeignSpec(actual, desired) {
		if actual, err = c.replaceSpec(ctx, actual, desired); err != nil {
			return nil, err
		}
	}
	if actual != nil && serviceOwnedUpToDate(actual, desired) {
		return actual, nil
	}
	key, cachedRV, fp := memoKey("service", *desired.Namespace, *desired.Name), "", fingerprint(desired)
	if actual != nil {
		cachedRV = actual.ResourceVersion
	}
	if out, ok := c.memo.unseen(key, cachedRV, fp); ok {
		return out.(*corev1.Service), nil // written already; the cache lags
	}
	// Force only when taking back fields of our own mirror (someone edited
	// it); creating never forces, so a foreign Service is never taken over.
	out, err := c.m.cfg.Client.CoreV1().Services(rsvc.Namespace).Apply(ctx, desired,
		metav1.ApplyOptions{FieldManager: fieldManager, Force: actual != nil})
	if err != nil {
		if apierrors.IsConflict(err) {
			return nil, fmt.Errorf("%w: %v", errInvalidService, err)
		}
		return nil, fmt.Errorf("apply mirror %s/%s: %w", *desired.Namespace, *desired.Name, err)
	}
	c.m.met.writes.WithLabelValues("service", "apply").Inc()
	c.memo.wrote(key, cachedRV, fp, out)
	return out, nil
}

// egressPorts allocates the egress ports of a mirror (egress mode), keeping
// those recorded on it.
func (c *controller) egressPorts(cfg *multicluster.LinkConfig, rsvc, actual *corev1.Service) (map[int32]int32, error) {
	if cfg.Mode != multicluster.ModeEgress {
		return nil, nil
	}
	var recorded map[int32]int32
	if actual != nil {
		recorded, _ = ParseEgressPorts(actual.Annotations[AnnotationEgressPorts])
	}
	ports := make([]int32, len(rsvc.Spec.Ports))
	for i, p := range rsvc.Spec.Ports {
		ports[i] = p.Port
	}
	egress, err := c.alloc.forMirror(rsvc.Namespace, mirrorName(rsvc, cfg.Cluster), ports, recorded)
	c.m.met.egressUsed.Set(float64(c.alloc.inUse()))
	return egress, err
}

// replaceSpec takes out of a mirror's spec what someone else added and
// apply leaves in place because it is not ours: a selector (the endpoint
// controller would write slices of its own) and ports of their own (an
// edited port number is a port of its own, which may even hold the name of
// ours, so that an apply adding ours back would be refused). A merge patch
// replaces the port list whole; the resourceVersion makes it fail rather
// than undo a change it has not seen.
func (c *controller) replaceSpec(ctx context.Context, actual *corev1.Service, desired *corev1ac.ServiceApplyConfiguration) (*corev1.Service, error) {
	body, err := json.Marshal(map[string]any{
		"metadata": map[string]any{"resourceVersion": actual.ResourceVersion},
		"spec":     map[string]any{"selector": nil, "ports": desired.Spec.Ports},
	})
	if err != nil {
		return nil, fmt.Errorf("marshal mirror %s/%s spec: %w", actual.Namespace, actual.Name, err)
	}
	out, err := c.m.cfg.Client.CoreV1().Services(actual.Namespace).Patch(ctx, actual.Name, types.MergePatchType, body,
		metav1.PatchOptions{FieldManager: fieldManager})
	if err != nil {
		return nil, fmt.Errorf("restore mirror %s/%s spec: %w", actual.Namespace, actual.Name, err)
	}
	c.m.met.writes.WithLabelValues("service", "patch").Inc()
	return out, nil
}

// applySlice writes the mirror's EndpointSlice when it differs, and returns
// the number of ready endpoints it holds.
func (c *controller) applySlice(ctx context.Context, cfg *multicluster.LinkConfig, mirror *corev1.Service, st sliceState) (int, error) {
	desired, err := desiredSlice(cfg, mirror, st)
	if err != nil {
		return 0, err
	}
	ready := 0
	if st.Alive {
		ready = len(desired.Endpoints)
	}
	cachedRV := ""
	if o, ok, _ := c.m.slices.GetStore().GetByKey(mirror.Namespace + "/" + mirror.Name); ok {
		cached := o.(*discoveryv1.EndpointSlice)
		if sliceUpToDate(cached, desired) {
			return ready, nil
		}
		cachedRV = cached.ResourceVersion
	}
	key, fp := memoKey("endpointslice", mirror.Namespace, mirror.Name), fingerprint(desired)
	if _, ok := c.memo.unseen(key, cachedRV, fp); ok {
		return ready, nil // written already; the cache lags
	}
	// The slice's endpoints and ports are atomic lists: a forced apply
	// replaces them whole, hand edits included.
	if _, err := c.m.cfg.Client.DiscoveryV1().EndpointSlices(mirror.Namespace).Apply(ctx, desired,
		metav1.ApplyOptions{FieldManager: fieldManager, Force: true}); err != nil {
		return 0, fmt.Errorf("apply endpointslice %s/%s: %w", mirror.Namespace, mirror.Name, err)
	}
	c.m.met.writes.WithLabelValues("endpointslice", "apply").Inc()
	c.memo.wrote(key, cachedRV, fp, nil)
	return ready, nil
}

// enqueueMirror enqueues the remote service a mirror stands for, or the
// mirror as an orphan when no Link names its cluster.
func (c *controller) enqueueMirror(s *corev1.Service) {
	cluster := s.Labels[multicluster.LabelClusterName]
	name, ns, ok := parseFQName(s.Annotations[multicluster.AnnotationRemoteFQName])
	link := c.linkForCluster(cluster)
	if link == "" || !ok {
		c.q.Add(key{kind: kOrphan, ns: s.Namespace, name: s.Name})
		return
	}
	c.q.Add(key{kind: kService, link: link, ns: ns, name: name})
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
	if m := c.mirrorNamed(s.Namespace, svc); m != nil {
		c.enqueueMirror(m)
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
	cfg, r, _ := c.view(link)
	if cfg == nil || r == nil {
		return
	}
	for _, k := range r.keys("") {
		ns, name, _ := strings.Cut(k, "/")
		c.q.Add(key{kind: kService, link: link, ns: ns, name: name})
	}
	objs, _ := c.m.mirrors.GetIndexer().ByIndex(indexByCluster, cfg.Cluster)
	for _, o := range objs {
		c.enqueueMirror(o.(*corev1.Service))
	}
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
			c.alloc.claim(egressKey(s.Namespace, s.Name, sp), int(ep))
		}
	}
	c.m.met.egressUsed.Set(float64(c.alloc.inUse()))
}
