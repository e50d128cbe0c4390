package mirror

// Link status: the leader records each remote service's condition as it
// reconciles, and writes a Link's status (batched) from what it knows of
// the Link: its validity, credentials, watcher and gateway probes.

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"

	"github.com/mcgate/mcgate/mirror/multicluster"
)

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

// linkView is what a Link's status says about it, copied out of the
// leader's linkState (under its lock) so that linkStatus is a pure function.
type linkView struct {
	invalid error // the Link is invalid: the field and why
	credErr error // the credentials were refused or unusable
	connErr error // the last watcher start could not reach the cluster
	// watching: a watcher of the cluster runs; watchErr: it fails to list
	// or watch.
	watching bool
	watchErr error
	probe    *probeView                   // nil when the Link's gateway is not probed
	services []multicluster.ServiceStatus // sorted by remote service

	// domainErr: the Link's targetClusterDomain is not the one its
	// cluster's gateway serves.
	domainErr error
}

// probeView is the verdict of a Link's gateway probes.
type probeView struct {
	alive     bool
	path      string
	threshold int
}

// statusView copies the status-relevant state of st; c.mu must be held.
func (c *controller) statusView(st *linkState) linkView {
	v := linkView{invalid: st.invalid, credErr: st.credErr, connErr: st.connErr, watching: st.remote != nil}
	if st.domainErr != nil { // a nil *domainMismatch must stay a nil error
		v.domainErr = st.domainErr
	}
	if st.remote != nil {
		v.watchErr = st.remote.watchErr()
	}
	if st.cfg != nil && st.cfg.Probe.Path != "" && len(st.cfg.GatewayHosts) > 0 {
		v.probe = &probeView{alive: c.m.cfg.Health.Alive(st.cfg.Cluster), path: st.cfg.Probe.Path, threshold: st.cfg.Probe.FailureThreshold}
	}
	for _, k := range slices.Sorted(maps.Keys(st.services)) {
		v.services = append(v.services, st.services[k])
	}
	return v
}

// linkStatus is the status a Link should show, given the status it shows
// (cur, of the Link's generation gen) and the leader's view: Link-level
// conditions (Valid, Credentials, GatewayAlive) and one Mirrored condition
// per remote service. Valid is False for a bad field, and for a
// targetClusterDomain that its cluster's gateway does not serve. Transition
// times already on the Link are kept for conditions that did not change
// (e.g. written by a previous leader).
func linkStatus(cur multicluster.LinkStatus, gen int64, v linkView) multicluster.LinkStatus {
	next := multicluster.LinkStatus{Conditions: slices.Clone(cur.Conditions), FederatedServices: cur.FederatedServices}
	set := func(typ string, status metav1.ConditionStatus, reason, msg string) {
		meta.SetStatusCondition(&next.Conditions, metav1.Condition{Type: typ, Status: status, Reason: reason,
			Message: msg, ObservedGeneration: gen})
	}
	switch {
	case v.invalid != nil:
		set(multicluster.ConditionValid, metav1.ConditionFalse, "InvalidField", v.invalid.Error())
	case v.domainErr != nil:
		// Valid as a resource, but not for the cluster it links to: the
		// condition users and `kubectl wait --for=condition=Valid` read.
		set(multicluster.ConditionValid, metav1.ConditionFalse, ReasonClusterDomainMismatch, v.domainErr.Error())
	default:
		set(multicluster.ConditionValid, metav1.ConditionTrue, "Valid", "")
	}
	if status, reason, msg, ok := credentialsCondition(v); ok {
		set(multicluster.ConditionCredentials, status, reason, msg)
	} else if v.invalid != nil {
		meta.RemoveStatusCondition(&next.Conditions, multicluster.ConditionCredentials)
	}
	switch {
	case v.probe == nil:
		meta.RemoveStatusCondition(&next.Conditions, multicluster.ConditionGatewayAlive)
	case v.probe.alive:
		set(multicluster.ConditionGatewayAlive, metav1.ConditionTrue, "ProbeSucceeded", "")
	default:
		set(multicluster.ConditionGatewayAlive, metav1.ConditionFalse, "ProbeFailed",
			fmt.Sprintf("%d consecutive probes of %s failed", v.probe.threshold, v.probe.path))
	}
	prev := map[multicluster.ObjectRef]multicluster.LinkCondition{}
	for _, s := range cur.MirrorServices {
		if len(s.Conditions) == 1 {
			prev[s.RemoteRef] = s.Conditions[0]
		}
	}
	for _, s := range v.services {
		if p, ok := prev[s.RemoteRef]; ok && sameCondition(p, s.Conditions[0]) {
			s.Conditions = []multicluster.LinkCondition{p}
		}
		next.MirrorServices = append(next.MirrorServices, s)
	}
	return next
}

// credentialsCondition is the Link's Credentials condition; ok is false
// when there is nothing to say (invalid Link, or nothing tried yet), which
// leaves the condition as it is on a valid Link.
func credentialsCondition(v linkView) (status metav1.ConditionStatus, reason, msg string, ok bool) {
	switch {
	case v.invalid != nil:
		return "", "", "", false
	case v.credErr != nil && v.watching:
		return metav1.ConditionFalse, "Invalid", v.credErr.Error() + "; still watching with the previous credentials", true
	case v.credErr != nil:
		return metav1.ConditionFalse, "Invalid", v.credErr.Error(), true
	case v.watching && v.watchErr != nil:
		// Unreachable: whether the credentials still work is unknown.
		return metav1.ConditionUnknown, "WatchFailing",
			"cannot watch the cluster (" + v.watchErr.Error() + "); keeping the existing mirrors", true
	case v.watching && v.connErr != nil:
		return metav1.ConditionUnknown, "Unreachable",
			"cannot check the new credentials (" + v.connErr.Error() + "); still watching with the previous ones", true
	case v.watching:
		return metav1.ConditionTrue, "Connected", "", true
	case v.connErr != nil:
		return metav1.ConditionUnknown, "Unreachable",
			"cannot reach the cluster (" + v.connErr.Error() + "); keeping the existing mirrors, retrying", true
	}
	return "", "", "", false
}

// writeStatus patches the Link's status from the leader's state; nothing
// is written when nothing changed.
func (c *controller) writeStatus(ctx context.Context, link string) error {
	o, ok, _ := c.m.links.GetStore().GetByKey(c.m.cfg.Namespace + "/" + link)
	if !ok {
		return nil
	}
	cur, err := multicluster.LinkFromUnstructured(o.(*unstructured.Unstructured))
	if err != nil {
		return nil // not decodable: Valid=False is all we could say, and we cannot
	}
	c.mu.Lock()
	st := c.links[link]
	if st == nil {
		c.mu.Unlock()
		return nil
	}
	v := c.statusView(st)
	c.mu.Unlock()
	next := linkStatus(cur.Status, cur.Generation, v)
	a, _ := json.Marshal(cur.Status)
	b, _ := json.Marshal(next)
	if string(a) == string(b) {
		return nil
	}
	return c.patchStatus(ctx, link, next)
}

// patchStatus replaces the Link's status lists with a merge patch, which
// replaces each list wholesale: the leader's view is complete.
func (c *controller) patchStatus(ctx context.Context, link string, next multicluster.LinkStatus) error {
	status := map[string]any{"conditions": next.Conditions, "mirrorServices": next.MirrorServices,
		"federatedServices": next.FederatedServices}
	// Empty lists are omitted by omitempty; a merge patch must say null
	// to remove what the Link still shows.
	for k, n := range map[string]int{"conditions": len(next.Conditions), "mirrorServices": len(next.MirrorServices),
		"federatedServices": len(next.FederatedServices)} {
		if n == 0 {
			status[k] = nil
		}
	}
	body, err := json.Marshal(map[string]any{"status": status})
	if err != nil {
		return fmt.Errorf("marshal link status: %w", err)
	}
	_, err = c.m.cfg.Dynamic.Resource(multicluster.LinkGVR).Namespace(c.m.cfg.Namespace).Patch(ctx, link, types.MergePatchType, body,
		metav1.PatchOptions{FieldManager: fieldManager}, "status")
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("patch link %s status: %w", link, err)
	}
	c.m.met.writes.WithLabelValues("link", "status").Inc()
	return nil
}
