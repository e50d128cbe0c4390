package mirror

// The cluster domain check: a Link's targetClusterDomain against the
// domain its cluster's gateway serves, which the gateway Service publishes
// (multicluster.AnnotationClusterDomain). When they disagree the remote
// gateway refuses every connection (bad_target_name), so the mirror says so
// on the Link (Valid=False, reason ClusterDomainMismatch), in an Event, a
// log line and mirror_link_cluster_domain_mismatch, and writes no mirrors
// for the Link until they agree. Existing mirrors are left as they are, as
// with refused credentials: nothing is lost by a mistake that is fixed.

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/mcgate/mcgate/mirror/multicluster"
)

// ReasonClusterDomainMismatch is the reason of a Link's Valid=False
// condition when its targetClusterDomain is not the domain its cluster's
// gateway serves.
const ReasonClusterDomainMismatch = "ClusterDomainMismatch"

// domainMismatch: a Link's targetClusterDomain is not the domain its
// cluster's gateway publishes. Its text is the Valid condition's message.
type domainMismatch struct {
	link, gateway string // the two domains
	cluster       string // targetClusterName
	service       string // "<ns>/<name>" of the gateway Service there
}

func (e *domainMismatch) Error() string {
	return fmt.Sprintf("spec.targetClusterDomain is %q but the gateway of cluster %s serves names in %q (annotation %s of Service %s there), "+
		"so it would refuse every connection: set spec.targetClusterDomain to %q (mcgate link reads it from that Service), "+
		"or, if that cluster's domain is %[1]q, reinstall its gateway with mcgate install --cluster-domain=%[1]s. "+
		"Existing mirrors are kept; no new ones are written until the domains agree",
		e.link, e.cluster, e.gateway, multicluster.AnnotationClusterDomain, e.service, e.gateway)
}

// checkDomain compares a Link's domain with what its cluster's gateway
// Service gw (nil: none found) publishes. It returns the mismatch, or nil
// when they agree or when the Service does not say; unknown then says why
// the check could not be made.
func checkDomain(cfg *multicluster.LinkConfig, gw *corev1.Service, service string) (mismatch *domainMismatch, unknown string) {
	if gw == nil {
		return nil, "no gateway Service " + service + " in the linked cluster"
	}
	published, ok := multicluster.GatewayClusterDomain(gw.Annotations)
	switch {
	case !ok:
		return nil, "gateway Service " + service + " has no " + multicluster.AnnotationClusterDomain + " annotation (Linkerd's gateway, or an older mcgate)"
	case multicluster.SameClusterDomain(cfg.Domain, published):
		return nil, ""
	}
	return &domainMismatch{link: cfg.Domain, gateway: published, cluster: cfg.Cluster, service: service}, ""
}

// newGatewayInformer watches the one gateway Service of a linked cluster:
// its annotation may change (a reinstall) while the Link stays.
func newGatewayInformer(client kubernetes.Interface, namespace string) cache.SharedIndexInformer {
	return newInformer(cache.NewListWatchFromClient(client.CoreV1().RESTClient(), "services", namespace,
		fields.OneTermEqualSelector("metadata.name", multicluster.GatewayServiceName)), &corev1.Service{}, cache.Indexers{})
}

// gatewayService is the linked cluster's gateway Service, or nil.
func (r *remote) gatewayService() *corev1.Service {
	objs := r.gateway.GetStore().List()
	if len(objs) == 0 {
		return nil
	}
	return objs[0].(*corev1.Service)
}

// domainVerdict checks cfg against the gateway Service r watches; an
// unknown domain is no error (Linkerd's gateway does not publish one).
func (c *controller) domainVerdict(link string, cfg *multicluster.LinkConfig, r *remote) *domainMismatch {
	mm, unknown := checkDomain(cfg, r.gatewayService(), c.m.cfg.Namespace+"/"+multicluster.GatewayServiceName)
	if unknown != "" {
		c.m.log.Debug().Str("link", link).Str("cluster", cfg.Cluster).Str("why", unknown).
			Msg("cannot check the Link's targetClusterDomain against its gateway")
	}
	return mm
}

// recheckDomain records the verdict of the running watcher r's gateway
// Service on a Link whose watcher is not replaced. It reports whether
// mirroring was held back and no longer is, so the caller resyncs.
func (c *controller) recheckDomain(st *linkState, cfg *multicluster.LinkConfig, r *remote) bool {
	mm := c.domainVerdict(st.name, cfg, r)
	c.mu.Lock()
	if st.remote != r { // replaced meanwhile: startWatcher judged the new one
		c.mu.Unlock()
		return false
	}
	prev := st.domainErr
	st.domainErr = mm
	c.mu.Unlock()
	c.reportDomain(st.name, cfg.Cluster, prev, mm)
	return prev != nil && mm == nil
}

// reportDomain tells of a change of verdict: log line, Event, metric and
// the Link's status.
func (c *controller) reportDomain(link, cluster string, prev, next *domainMismatch) {
	mismatch := 0.0
	if next != nil {
		mismatch = 1
	}
	c.m.met.domainMismatch.WithLabelValues(cluster).Set(mismatch)
	switch {
	case next != nil && (prev == nil || *prev != *next):
		c.m.log.Error().Str("link", link).Str("cluster", cluster).Str("link_domain", next.link).Str("gateway_domain", next.gateway).
			Msg("Link's targetClusterDomain disagrees with its gateway's cluster domain: not writing new mirrors")
		c.event(link, corev1.EventTypeWarning, ReasonClusterDomainMismatch, next.Error())
	case next == nil && prev != nil:
		c.m.log.Info().Str("link", link).Str("cluster", cluster).Msg("Link's targetClusterDomain agrees with its gateway now: mirroring")
		c.event(link, corev1.EventTypeNormal, "ClusterDomainAgrees",
			"spec.targetClusterDomain agrees with the gateway of cluster "+cluster+": mirroring resumes")
	default:
		return
	}
	c.statusLater(link)
}

// heldBack reports whether the Link's mirrors must not be written: its
// domain disagrees with its gateway's.
func (c *controller) heldBack(link string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.links[link]
	return st != nil && st.domainErr != nil
}
