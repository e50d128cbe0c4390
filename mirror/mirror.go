package mirror

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"

	"github.com/mcgate/mcgate/mirror/multicluster"
	"github.com/mcgate/mcgate/probe"
)

// GatewayHealth is what the mirror needs from the remote-gateway probes;
// *probe.Workers is the gateway's.
type GatewayHealth interface {
	// Set replaces the set of probed gateways.
	Set(targets []ProbeTarget)
	// Alive reports a cluster's gateway verdict; unprobed clusters are alive.
	Alive(cluster string) bool
	// Changed receives after any verdict changed.
	Changed() <-chan struct{}
}

// ProbeTarget is one gateway to probe.
type ProbeTarget = probe.Target

// EgressEntry is one egress listener the gateway must run: accept plain TCP
// on Port and tunnel it over mTLS to Target through the remote gateway.
type EgressEntry struct {
	Port             int
	Cluster          string
	GatewayAddresses []string // "host:port" of the remote gateway
	GatewayIdentity  string
	Target           string // "<svc>.<ns>.svc.<remote domain>:<port>"
}

// Config configures the mirror.
type Config struct {
	// Client and Dynamic talk to this cluster. Their rest.Config's QPS and
	// Burst bound the write rate: the caller sets them (see cmd/mcgate).
	Client  kubernetes.Interface
	Dynamic dynamic.Interface
	// Namespace holds Links, credential Secrets and the Lease.
	Namespace      string
	ExportSelector labels.Selector
	EgressPorts    PortRange
	// AdvertiseAddresses are this gateway's addresses for mirrored
	// EndpointSlices in egress mode. When empty, the ready endpoints of
	// GatewayService (in Namespace) are used, which covers several replicas.
	AdvertiseAddresses []string
	GatewayService     string
	Health             GatewayHealth
	// Identity names this replica in the Lease (default: the host name);
	// New adds a part random per process (see multicluster.HolderIdentity).
	Identity   string
	Log        zerolog.Logger
	Registerer prometheus.Registerer

	// RepairPeriod re-resolves gateway names and re-checks every mirror
	// (Linkerd's endpoint-refresh-period; default 1m).
	RepairPeriod time.Duration
	// Workers is the number of concurrent reconciles (default 16).
	Workers int
	// Lease timings (defaults: Linkerd's 30s/10s/2s).
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	// Resolve looks up gateway names (default net.DefaultResolver).
	Resolve func(ctx context.Context, host string) ([]string, error)
	// RemoteConfig turns a kubeconfig into a client config for a linked
	// cluster (default: clientcmd, QPS 50, burst 100: reads only).
	RemoteConfig func(kubeconfig []byte) (*rest.Config, error)
}

// Mirror runs the informers every replica needs (ingress routes, egress
// listeners, probes) and, on the elected replica, the controller that
// writes mirrors.
type Mirror struct {
	cfg Config
	log zerolog.Logger
	met *metrics

	links      cache.SharedIndexInformer // Links in Namespace (unstructured)
	secrets    cache.SharedIndexInformer // remote-kubeconfig Secrets in Namespace
	mirrors    cache.SharedIndexInformer // local mirror Services
	exported   cache.SharedIndexInformer // local Services matching the export selector
	slices     cache.SharedIndexInformer // local EndpointSlices
	namespaces cache.SharedIndexInformer

	routes        *Routes
	egressChanged chan struct{}
	leading       atomic.Bool
	synced        atomic.Bool // the local caches behind Routes and Egress are filled
}

// indexByRemote indexes mirror Services by "<cluster>/<ns>/<remote name>",
// indexByCluster by their cluster-name label.
const (
	indexByRemote  = "remote"
	indexByCluster = "cluster"
)

func mirrorCluster(obj any) ([]string, error) {
	if s, ok := obj.(*corev1.Service); ok && s.Labels[multicluster.LabelClusterName] != "" {
		return []string{s.Labels[multicluster.LabelClusterName]}, nil
	}
	return nil, nil
}

func mirrorRemoteKey(obj any) ([]string, error) {
	s, ok := obj.(*corev1.Service)
	if !ok {
		return nil, nil
	}
	c := s.Labels[multicluster.LabelClusterName]
	name, ns, ok := parseFQName(s.Annotations[multicluster.AnnotationRemoteFQName])
	if c == "" || !ok || ns != s.Namespace {
		return nil, nil
	}
	return []string{c + "/" + ns + "/" + name}, nil
}

// New builds the informers; nothing talks to the API server before Run.
func New(cfg Config) (*Mirror, error) {
	if cfg.Client == nil || cfg.Dynamic == nil || cfg.Health == nil || cfg.Registerer == nil {
		return nil, errors.New("mirror: Client, Dynamic, Health and Registerer are required")
	}
	if cfg.Namespace == "" {
		cfg.Namespace = "linkerd-multicluster"
	}
	if cfg.ExportSelector == nil {
		cfg.ExportSelector = labels.SelectorFromSet(labels.Set{"mirror.linkerd.io/exported": "true"})
	}
	if cfg.EgressPorts == (PortRange{}) {
		cfg.EgressPorts = PortRange{4200, 5199}
	}
	if len(cfg.AdvertiseAddresses) == 0 && cfg.GatewayService == "" {
		return nil, errors.New("mirror: need AdvertiseAddresses or GatewayService")
	}
	if cfg.Identity == "" {
		h, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("mirror: leader identity: %w", err)
		}
		cfg.Identity = h
	}
	var err error
	if cfg.Identity, err = multicluster.HolderIdentity(cfg.Identity); err != nil {
		return nil, fmt.Errorf("mirror: %w", err)
	}
	if cfg.RepairPeriod <= 0 {
		cfg.RepairPeriod = time.Minute
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 16
	}
	if cfg.LeaseDuration <= 0 {
		cfg.LeaseDuration, cfg.RenewDeadline, cfg.RetryPeriod = 30*time.Second, 10*time.Second, 2*time.Second
	}
	if cfg.Resolve == nil {
		cfg.Resolve = net.DefaultResolver.LookupHost
	}
	if cfg.RemoteConfig == nil {
		cfg.RemoteConfig = defaultRemoteConfig
	}
	met, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	m := &Mirror{cfg: cfg, log: cfg.Log, met: met, egressChanged: make(chan struct{}, 1)}
	core := cfg.Client.CoreV1().RESTClient()
	m.links = dynamicinformer.NewFilteredDynamicInformer(cfg.Dynamic, multicluster.LinkGVR, cfg.Namespace, 0, cache.Indexers{}, nil).Informer()
	m.secrets = newInformer(cache.NewFilteredListWatchFromClient(core, "secrets", cfg.Namespace, func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("type", multicluster.SecretType).String()
	}), &corev1.Secret{}, cache.Indexers{})
	m.mirrors = newInformer(cache.NewFilteredListWatchFromClient(core, "services", "", func(o *metav1.ListOptions) {
		o.LabelSelector = multicluster.LabelMirroredService + "=true"
	}), &corev1.Service{}, cache.Indexers{indexByRemote: mirrorRemoteKey, indexByCluster: mirrorCluster})
	m.exported = newInformer(cache.NewFilteredListWatchFromClient(core, "services", "", func(o *metav1.ListOptions) {
		o.LabelSelector = cfg.ExportSelector.String()
	}), &corev1.Service{}, cache.Indexers{})
	m.slices = newInformer(cache.NewFilteredListWatchFromClient(cfg.Client.DiscoveryV1().RESTClient(), "endpointslices", "", noFilter),
		&discoveryv1.EndpointSlice{}, cache.Indexers{indexByService: sliceServiceKey})
	m.namespaces = newInformer(cache.NewFilteredListWatchFromClient(core, "namespaces", "", noFilter), &corev1.Namespace{}, cache.Indexers{})
	m.routes = newRoutes(m.exported.GetIndexer(), m.slices.GetIndexer(), cfg.ExportSelector)
	return m, nil
}

func newInformer(lw cache.ListerWatcher, obj runtime.Object, idx cache.Indexers) cache.SharedIndexInformer {
	inf := cache.NewSharedIndexInformer(lw, obj, 0, idx)
	// Managed fields are the bulk of a Service's size and we never read them.
	_ = inf.SetTransform(stripManagedFields)
	return inf
}

func stripManagedFields(obj any) (any, error) {
	if m, ok := obj.(metav1.Object); ok {
		m.SetManagedFields(nil)
	}
	return obj, nil
}

// Routes is the ingress route table (valid once Run has synced).
func (m *Mirror) Routes() *Routes { return m.routes }

// Synced reports whether the informer caches behind Routes and Egress have
// filled: before that, every service would look unexported, so the gateway
// must not report ready.
func (m *Mirror) Synced() bool { return m.synced.Load() }

// Identity is this replica's Lease holder identity.
func (m *Mirror) Identity() string { return m.cfg.Identity }

// Leading reports whether this replica currently writes mirrors.
func (m *Mirror) Leading() bool { return m.leading.Load() }

// EgressChanged receives after the egress set may have changed.
func (m *Mirror) EgressChanged() <-chan struct{} { return m.egressChanged }

func (m *Mirror) informers() []cache.SharedIndexInformer {
	return []cache.SharedIndexInformer{m.links, m.secrets, m.mirrors, m.exported, m.slices, m.namespaces}
}

// Run runs the informers, keeps probes and the egress set in step with
// Links and mirrors, and campaigns for the Lease; while leading it runs the
// controller. It returns when ctx ends, after every goroutine it started.
func (m *Mirror) Run(ctx context.Context) error {
	m.log.Info().Str("identity", m.cfg.Identity).Str("lease", m.cfg.Namespace+"/"+multicluster.LeaseName).
		Msg("mirror starting; this replica's Lease holder identity")
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, inf := range m.informers() {
		wg.Go(func() { inf.RunWithContext(ctx) })
	}
	syncs := make([]cache.InformerSynced, 0, 6)
	for _, inf := range m.informers() {
		syncs = append(syncs, inf.HasSynced)
	}
	if !cache.WaitForCacheSync(ctx.Done(), syncs...) {
		return nil // ctx ended before the caches synced
	}
	m.synced.Store(true)
	m.log.Info().Msg("mirror caches synced")

	// Links and mirror Services decide probes and egress listeners on every
	// replica, leader or not.
	kick := make(chan struct{}, 1)
	poke := func() {
		select {
		case kick <- struct{}{}:
		default:
		}
	}
	h := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { poke() },
		UpdateFunc: func(any, any) { poke() },
		DeleteFunc: func(any) { poke() },
	}
	for _, inf := range []cache.SharedIndexInformer{m.links, m.mirrors} {
		reg, err := inf.AddEventHandler(h)
		if err != nil {
			return fmt.Errorf("mirror: add handler: %w", err)
		}
		defer inf.RemoveEventHandler(reg)
	}
	wg.Go(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-kick:
			}
			// A burst of mirror events (a cold start writes thousands)
			// becomes one recomputation.
			select {
			case <-ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
			m.cfg.Health.Set(m.probeTargets())
			select {
			case m.egressChanged <- struct{}{}:
			default:
			}
		}
	})
	return m.campaign(ctx)
}

// campaign holds elections until ctx ends; the controller runs while this
// replica leads and is joined before the next campaign.
func (m *Mirror) campaign(ctx context.Context) error {
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Name: multicluster.LeaseName, Namespace: m.cfg.Namespace},
		Client:     m.cfg.Client.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: m.cfg.Identity},
	}
	for ctx.Err() == nil {
		// The elector starts OnStartedLeading in a goroutine of its own; it
		// only hands the lease context over, and the controller runs here,
		// so this function joins it before campaigning again.
		leadCh := make(chan context.Context, 1)
		le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock:            lock,
			LeaseDuration:   m.cfg.LeaseDuration,
			RenewDeadline:   m.cfg.RenewDeadline,
			RetryPeriod:     m.cfg.RetryPeriod,
			ReleaseOnCancel: true,
			Name:            multicluster.LeaseName,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(lctx context.Context) { leadCh <- lctx },
				OnStoppedLeading: func() {},
			},
		})
		if err != nil {
			return fmt.Errorf("mirror: leader election: %w", err)
		}
		runDone := make(chan struct{})
		go func() {
			defer close(runDone)
			le.Run(ctx)
		}()
		select {
		case lctx := <-leadCh:
			m.lead(lctx)
		case <-runDone:
		}
		<-runDone
		if ctx.Err() == nil {
			m.log.Warn().Msg("lost the mirror Lease; campaigning again")
		}
	}
	return nil
}

// lead runs the controller while this replica holds the Lease.
func (m *Mirror) lead(ctx context.Context) {
	m.leading.Store(true)
	m.met.leader.Set(1)
	defer func() {
		m.leading.Store(false)
		m.met.leader.Set(0)
	}()
	m.log.Info().Str("identity", m.cfg.Identity).Msg("leading: writing mirrors")
	events, stop := startEvents(ctx, m)
	defer stop()
	if err := newController(m, events).run(ctx); err != nil {
		m.log.Error().Err(err).Msg("mirror controller stopped")
	}
}

// linkConfigs decodes the Links of the cache; invalid ones are left out.
func (m *Mirror) linkConfigs() []*multicluster.LinkConfig {
	var out []*multicluster.LinkConfig
	for _, o := range m.links.GetStore().List() {
		l, err := linkSpecFromUnstructured(o.(*unstructured.Unstructured))
		if err != nil {
			continue
		}
		c, err := l.Config()
		if err != nil {
			continue
		}
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b *multicluster.LinkConfig) int { return compareStrings(a.Name, b.Name) })
	return out
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (m *Mirror) probeTargets() []ProbeTarget {
	var out []ProbeTarget
	seen := map[string]bool{}
	for _, c := range m.linkConfigs() {
		if c.Probe.Path == "" || len(c.GatewayHosts) == 0 || seen[c.Cluster] {
			continue
		}
		seen[c.Cluster] = true
		t := ProbeTarget{Cluster: c.Cluster, Path: c.Probe.Path, Period: c.Probe.Period,
			Timeout: c.Probe.Timeout, FailureThreshold: c.Probe.FailureThreshold}
		for _, h := range c.GatewayHosts {
			t.Addresses = append(t.Addresses, net.JoinHostPort(h, strconv.Itoa(c.Probe.Port)))
		}
		out = append(out, t)
	}
	return out
}

// Egress is the set of egress listeners this gateway must run, read from
// the egress ports recorded on the mirror Services, so every replica
// listens on what the leader allocated.
func (m *Mirror) Egress() []EgressEntry {
	byCluster := map[string]*multicluster.LinkConfig{}
	for _, c := range m.linkConfigs() {
		if _, dup := byCluster[c.Cluster]; !dup && c.Mode == multicluster.ModeEgress && len(c.GatewayHosts) > 0 {
			byCluster[c.Cluster] = c
		}
	}
	var out []EgressEntry
	for _, o := range m.mirrors.GetStore().List() {
		s := o.(*corev1.Service)
		c := byCluster[s.Labels[multicluster.LabelClusterName]]
		if c == nil {
			continue
		}
		ports, err := ParseEgressPorts(s.Annotations[AnnotationEgressPorts])
		if err != nil {
			continue
		}
		fq := s.Annotations[multicluster.AnnotationRemoteFQName]
		if fq == "" {
			continue
		}
		gws := make([]string, len(c.GatewayHosts))
		for i, h := range c.GatewayHosts {
			gws[i] = net.JoinHostPort(h, strconv.Itoa(c.GatewayPort))
		}
		for sp, ep := range ports {
			if !m.cfg.EgressPorts.contains(int(ep)) {
				continue
			}
			out = append(out, EgressEntry{Port: int(ep), Cluster: c.Cluster, GatewayAddresses: gws,
				GatewayIdentity: c.GatewayIdentity, Target: net.JoinHostPort(fq, strconv.Itoa(int(sp)))})
		}
	}
	slices.SortFunc(out, func(a, b EgressEntry) int { return a.Port - b.Port })
	// Two mirrors claiming one port can only come from a hand edit; the
	// leader reassigns one of them, meanwhile keep the first.
	return slices.CompactFunc(out, func(a, b EgressEntry) bool { return a.Port == b.Port })
}

// localAddresses are the addresses mirrored EndpointSlices point at in
// egress mode.
func (m *Mirror) localAddresses() []string {
	if len(m.cfg.AdvertiseAddresses) > 0 {
		return m.cfg.AdvertiseAddresses
	}
	objs, _ := m.slices.GetIndexer().ByIndex(indexByService, m.cfg.Namespace+"/"+m.cfg.GatewayService)
	var out []string
	for _, o := range objs {
		for _, e := range o.(*discoveryv1.EndpointSlice).Endpoints {
			if e.Conditions.Ready == nil || *e.Conditions.Ready {
				out = append(out, e.Addresses...)
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// noFilter lists everything (NewFilteredListWatchFromClient needs a func).
func noFilter(*metav1.ListOptions) {}
