package mirror

import (
	"context"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/mcgate/mcgate/internal/kubeconfig"
)

// Remote client limits: the watcher only lists and watches, so a modest
// budget is enough and protects the remote API server from a relist storm.
const (
	remoteQPS   = 50
	remoteBurst = 100
	// remoteSyncTimeout bounds how long new credentials may take to list
	// the remote cluster before they are reported bad.
	remoteSyncTimeout = 30 * time.Second
)

func defaultRemoteConfig(kc []byte) (*rest.Config, error) {
	rc, err := kubeconfig.RESTConfig(kc)
	if err != nil {
		return nil, err
	}
	rc.QPS, rc.Burst = remoteQPS, remoteBurst
	rc.ContentType = "application/vnd.kubernetes.protobuf"
	rc.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	rc.UserAgent = "mcgate-mirror"
	return rc, nil
}

// remote watches one linked cluster: its Services matching the Link's
// selector (filtered by the API server, so unexported services never reach
// memory) and a reduced copy of its EndpointSlices (only whether each
// service has a ready endpoint matters here).
type remote struct {
	secretVersion string // resourceVersion of the Secret it was built from
	selector      string
	services      cache.SharedIndexInformer
	slices        cache.SharedIndexInformer
	gateway       cache.SharedIndexInformer // the cluster's gateway Service (domain.go)
	cancel        context.CancelFunc
	wg            sync.WaitGroup

	// failing holds, per resource, the error that started the current run
	// of failed list or watch calls; onHealth runs when it turns empty or
	// non-empty.
	healthMu sync.Mutex
	failing  map[string]error
	onHealth func(*remote)
}

// remoteWatch is what a watcher of a linked cluster watches and whom it
// tells.
type remoteWatch struct {
	selector      labels.Selector // of the Services to mirror
	secretVersion string
	// gatewayNamespace holds the cluster's gateway Service
	// (multicluster.GatewayServiceName).
	gatewayNamespace string
	// onService receives every remote Service whose mirror may need work;
	// onGateway runs when the gateway Service changes; onHealth when the
	// watcher starts or stops failing to reach the cluster (see watchErr).
	onService func(ns, name string)
	onGateway func()
	onHealth  func(*remote)
}

// startRemote checks the credentials with one list call, then runs the
// informers and waits for them to sync.
func startRemote(ctx context.Context, rc *rest.Config, w remoteWatch) (*remote, error) {
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("remote client: %w", err)
	}
	cctx, ccancel := context.WithTimeout(ctx, remoteSyncTimeout)
	defer ccancel()
	selector := w.selector
	// Fails fast on bad credentials or RBAC, which an informer would only
	// retry forever.
	if _, err := client.CoreV1().Services("").List(cctx, metav1.ListOptions{Limit: 1, LabelSelector: selector.String()}); err != nil {
		return nil, fmt.Errorf("list remote services: %w", err)
	}
	r := &remote{secretVersion: w.secretVersion, selector: selector.String(), failing: map[string]error{}, onHealth: w.onHealth}
	r.services = newInformer(r.reporting("services", cache.NewFilteredListWatchFromClient(client.CoreV1().RESTClient(), "services", "", func(o *metav1.ListOptions) {
		o.LabelSelector = selector.String()
	})), &corev1.Service{}, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	r.gateway = newGatewayInformer(client, w.gatewayNamespace)
	r.slices = cache.NewSharedIndexInformer(r.reporting("endpointslices", cache.NewFilteredListWatchFromClient(client.DiscoveryV1().RESTClient(), "endpointslices", "", noFilter)),
		&discoveryv1.EndpointSlice{}, 0, cache.Indexers{indexByService: sliceServiceKey})
	_ = r.slices.SetTransform(reduceSlice)

	enqueue := func(obj any) {
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		if m, ok := obj.(metav1.Object); ok {
			w.onService(m.GetNamespace(), m.GetName())
		}
	}
	enqueueOwner := func(obj any) {
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		if s, ok := obj.(*discoveryv1.EndpointSlice); ok {
			name := s.Labels[discoveryv1.LabelServiceName]
			// Slices of services we do not mirror are the common case.
			if _, ok, _ := r.services.GetIndexer().GetByKey(s.Namespace + "/" + name); ok {
				w.onService(s.Namespace, name)
			}
		}
	}
	if _, err := r.services.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: enqueue, UpdateFunc: func(_, n any) { enqueue(n) }, DeleteFunc: enqueue,
	}); err != nil {
		return nil, fmt.Errorf("remote handler: %w", err)
	}
	if _, err := r.slices.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: enqueueOwner, UpdateFunc: func(_, n any) { enqueueOwner(n) }, DeleteFunc: enqueueOwner,
	}); err != nil {
		return nil, fmt.Errorf("remote handler: %w", err)
	}
	if _, err := r.gateway.AddEventHandler(handler(func(any) { w.onGateway() })); err != nil {
		return nil, fmt.Errorf("remote handler: %w", err)
	}
	rctx, cancel := context.WithCancel(ctx)
	r.cancel = cancel
	r.wg.Go(func() { r.services.RunWithContext(rctx) })
	r.wg.Go(func() { r.slices.RunWithContext(rctx) })
	r.wg.Go(func() { r.gateway.RunWithContext(rctx) })
	// The gateway Service too: its domain is checked before any mirror is
	// written.
	if !cache.WaitForCacheSync(cctx.Done(), r.services.HasSynced, r.slices.HasSynced, r.gateway.HasSynced) {
		r.stop()
		return nil, fmt.Errorf("remote caches did not sync within %s", remoteSyncTimeout)
	}
	return r, nil
}

// stop ends the informers and waits for them.
func (r *remote) stop() {
	r.cancel()
	r.wg.Wait()
}

// reporting makes lw record the outcome of each list and watch call. A
// reflector retries a refused watch with backoff, forever and silently (it
// resumes from its resourceVersion once the server is back, without a
// relist), and its cache stays as it was: without this, a remote API server
// that is down or unreachable would look healthy in the Link's status and
// metrics while its mirrors go stale.
func (r *remote) reporting(resource string, lw *cache.ListWatch) *cache.ListWatch {
	listFn, watchFn := lw.ListWithContextFunc, lw.WatchFuncWithContext
	lw.ListWithContextFunc = func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
		obj, err := listFn(ctx, o)
		r.record(ctx, resource, err)
		return obj, err
	}
	lw.WatchFuncWithContext = func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
		w, err := watchFn(ctx, o)
		r.record(ctx, resource, err)
		return w, err
	}
	// Callers of the context-free methods fall back to the functions above.
	lw.ListFunc, lw.WatchFunc = nil, nil
	return lw
}

func (r *remote) record(ctx context.Context, resource string, err error) {
	// Stopping, or an expired resourceVersion (the reflector relists, which
	// is how a watch recovers from compaction): neither says the cluster is
	// unreachable.
	if ctx.Err() != nil || (err != nil && (apierrors.IsResourceExpired(err) || apierrors.IsGone(err))) {
		return
	}
	r.healthMu.Lock()
	wasFailing := len(r.failing) > 0
	if err == nil {
		delete(r.failing, resource)
	} else if r.failing[resource] == nil {
		r.failing[resource] = fmt.Errorf("%s: %w", resource, err)
	}
	changed := wasFailing != (len(r.failing) > 0)
	r.healthMu.Unlock()
	if changed && r.onHealth != nil {
		r.onHealth(r)
	}
}

// watchErr says why listing or watching the remote cluster fails, or nil
// while it works.
func (r *remote) watchErr() error {
	r.healthMu.Lock()
	defer r.healthMu.Unlock()
	for _, res := range []string{"services", "endpointslices"} {
		if err := r.failing[res]; err != nil {
			return err
		}
	}
	return nil
}

// reduceSlice keeps what hasReady needs: the owning service and each
// endpoint's ready condition, not addresses, hints or managed fields.
func reduceSlice(obj any) (any, error) {
	s, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		return obj, nil
	}
	out := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{
		Name: s.Name, Namespace: s.Namespace, ResourceVersion: s.ResourceVersion,
		Labels: map[string]string{discoveryv1.LabelServiceName: s.Labels[discoveryv1.LabelServiceName]},
	}}
	for _, e := range s.Endpoints {
		out.Endpoints = append(out.Endpoints, discoveryv1.Endpoint{Conditions: discoveryv1.EndpointConditions{Ready: e.Conditions.Ready}})
	}
	return out, nil
}

// service returns the remote Service if it is in the (selector-filtered)
// cache.
func (r *remote) service(ns, name string) *corev1.Service {
	o, ok, _ := r.services.GetIndexer().GetByKey(ns + "/" + name)
	if !ok {
		return nil
	}
	return o.(*corev1.Service)
}

// hasReady reports whether the remote service has a ready endpoint.
func (r *remote) hasReady(ns, name string) bool {
	objs, _ := r.slices.GetIndexer().ByIndex(indexByService, ns+"/"+name)
	for _, o := range objs {
		for _, e := range o.(*discoveryv1.EndpointSlice).Endpoints {
			if e.Conditions.Ready == nil || *e.Conditions.Ready {
				return true
			}
		}
	}
	return false
}

// keys lists "<ns>/<name>" of the cached remote services (optionally of one
// namespace).
func (r *remote) keys(ns string) []string {
	if ns == "" {
		return r.services.GetIndexer().ListKeys()
	}
	objs, _ := r.services.GetIndexer().ByIndex(cache.NamespaceIndex, ns)
	out := make([]string, 0, len(objs))
	for _, o := range objs {
		s := o.(*corev1.Service)
		out = append(out, s.Namespace+"/"+s.Name)
	}
	return out
}
