package mirror

// Reconciling Links: validation, the watcher of each linked cluster (started
// again when its credentials or selector change), gateway resolution, and
// the teardown of a deleted Link's mirrors.

import (
	"context"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/mcgate/mcgate/mirror/multicluster"
)

// reconcileLink validates a Link and (re)starts its cluster watcher when
// its selector or credentials changed. New credentials replace the running
// watcher only once they work: bad ones leave the existing watcher and
// mirrors as they are.
func (c *controller) reconcileLink(ctx context.Context, name string) error {
	obj, ok, _ := c.m.links.GetStore().GetByKey(c.m.cfg.Namespace + "/" + name)
	if !ok {
		return c.teardownLink(ctx, name)
	}
	st := c.stateOf(name)
	cfg, err := c.parseLink(name, obj.(*unstructured.Unstructured))
	if err != nil {
		c.invalidLink(st, err)
		return nil
	}
	cfgChanged, running := c.setConfig(ctx, st, cfg)
	sobj, ok, _ := c.m.secrets.GetStore().GetByKey(c.m.cfg.Namespace + "/" + cfg.Secret)
	if !ok {
		c.credentialsFailed(name, fmt.Errorf("secret %s/%s of type %s not found", c.m.cfg.Namespace, cfg.Secret, multicluster.SecretType))
		return nil // the Secret's arrival enqueues the Link again
	}
	secret := sobj.(*corev1.Secret)
	if running != nil && running.secretVersion == secret.ResourceVersion && running.selector == cfg.Selector.String() {
		c.statusLater(name)
		// The domain or the gateway Service may have changed (a gateway
		// Service event enqueues its Link).
		released := c.recheckDomain(st, cfg, running)
		if cfgChanged || released { // gateway, mode, exclusions or domain changed; status-only updates change nothing
			c.resync(name)
		}
		return nil
	}
	return c.startWatcher(ctx, st, cfg, secret)
}

// stateOf returns the leader's state of a Link, made on first use.
func (c *controller) stateOf(name string) *linkState {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.links[name]
	if st == nil {
		st = &linkState{name: name, services: map[string]multicluster.ServiceStatus{}}
		c.links[name] = st
	}
	return st
}

// parseLink decodes and validates a Link; a cluster already linked by
// another Link (the alphabetically first keeps it) makes it invalid.
func (c *controller) parseLink(name string, u *unstructured.Unstructured) (*multicluster.LinkConfig, error) {
	l, err := linkSpecFromUnstructured(u)
	if err != nil {
		return nil, err
	}
	cfg, err := l.Config()
	if err != nil {
		return nil, err
	}
	if owner := c.linkForCluster(cfg.Cluster); owner != name {
		return nil, &multicluster.FieldError{Field: "spec.targetClusterName", Value: cfg.Cluster, Reason: "already linked by Link " + owner}
	}
	return cfg, nil
}

// invalidLink stops watching the cluster of a Link that became invalid;
// its mirrors stay until the Link is fixed or deleted.
func (c *controller) invalidLink(st *linkState, err error) {
	c.m.log.Warn().Err(err).Str("link", st.name).Msg("invalid Link: not watching its cluster")
	c.mu.Lock()
	if st.remote != nil {
		st.remote.stop()
		st.remote = nil
	}
	st.cfg, st.invalid, st.cfgKey, st.domainErr = nil, err, "", nil // not watching: no verdict
	cluster := st.cluster
	c.mu.Unlock()
	c.m.met.domainMismatch.DeleteLabelValues(cluster)
	c.statusLater(st.name)
}

// setConfig records a valid Link's parsed spec and returns whether it
// changed and the running watcher, if any. Status writes update the Link
// too; only a real change of the parsed spec re-resolves the gateway and
// re-checks every mirror (the repair loop re-resolves periodically anyway).
func (c *controller) setConfig(ctx context.Context, st *linkState, cfg *multicluster.LinkConfig) (bool, *remote) {
	cfgKey := fmt.Sprintf("%+v|%s", *cfg, cfg.Selector)
	c.mu.Lock()
	changed := st.cfgKey != cfgKey
	c.mu.Unlock()
	var ips []string
	if changed {
		ips = c.resolve(ctx, cfg)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	st.cfg, st.invalid, st.cluster, st.cfgKey = cfg, nil, cfg.Cluster, cfgKey
	if changed {
		st.gatewayIPs = ips
	}
	return changed, st.remote
}

// startWatcher starts a watcher of the Link's cluster with the Secret's
// credentials and, once it has synced, replaces the running one.
func (c *controller) startWatcher(ctx context.Context, st *linkState, cfg *multicluster.LinkConfig, secret *corev1.Secret) error {
	name := st.name
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
	r, err := startRemote(ctx, rc, remoteWatch{
		selector: cfg.Selector, secretVersion: secret.ResourceVersion, gatewayNamespace: c.m.cfg.Namespace,
		onService: func(ns, n string) { c.q.Add(key{kind: kService, link: name, ns: ns, name: n}) },
		onGateway: func() { c.q.Add(key{kind: kLink, link: name}) },
		onHealth:  func(r *remote) { c.remoteHealthChanged(name, r) },
	})
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
	mismatch := c.domainVerdict(name, cfg, r) // before any mirror of r is written
	c.mu.Lock()
	old, prevMismatch := st.remote, st.domainErr
	st.remote, st.credErr, st.connErr, st.domainErr = r, nil, nil, mismatch
	c.mu.Unlock()
	if old != nil {
		old.stop()
	}
	c.m.met.connected.WithLabelValues(cfg.Cluster).Set(1)
	c.m.log.Info().Str("link", name).Str("cluster", cfg.Cluster).Msg("watching linked cluster")
	c.reportDomain(name, cfg.Cluster, prevMismatch, mismatch)
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
		c.m.met.domainMismatch.DeleteLabelValues(st.cluster)
	}
	c.mu.Lock()
	delete(c.links, name)
	c.mu.Unlock()
	c.m.log.Info().Str("link", name).Str("cluster", st.cluster).Msg("Link deleted: mirrors removed")
	return nil
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

// onSecret enqueues the Links whose credentials Secret changed.
func (c *controller) onSecret(o any) {
	s := o.(*corev1.Secret)
	for _, l := range c.m.links.GetStore().List() {
		u := l.(*unstructured.Unstructured)
		if n, _, _ := unstructured.NestedString(u.Object, "spec", "clusterCredentialsSecret"); n == s.Name {
			c.q.Add(key{kind: kLink, link: u.GetName()})
		}
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

// linkSpecFromUnstructured decodes a Link without its status: the status
// holds an entry per mirrored service, and converting it by reflection on
// every Link event would cost more than all the mirroring.
func linkSpecFromUnstructured(u *unstructured.Unstructured) (*multicluster.Link, error) {
	obj := make(map[string]any, len(u.Object))
	for k, v := range u.Object {
		if k != "status" {
			obj[k] = v
		}
	}
	return multicluster.LinkFromUnstructured(&unstructured.Unstructured{Object: obj})
}
