package mirror

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"

	"github.com/mcgate/mcgate/mirror/multicluster"
)

// writeStatus patches the Link's status from the leader's state: Link-level
// conditions (Valid, Credentials, GatewayAlive) and one Mirrored condition
// per remote service. Nothing is written when nothing changed; transition
// times already on the Link are kept for unchanged conditions.
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
	next := multicluster.LinkStatus{Conditions: slices.Clone(cur.Status.Conditions)}
	gen := cur.Generation
	setCond := func(typ string, status metav1.ConditionStatus, reason, msg string) {
		meta.SetStatusCondition(&next.Conditions, metav1.Condition{Type: typ, Status: status, Reason: reason,
			Message: msg, ObservedGeneration: gen})
	}
	if st.invalid != nil {
		setCond(multicluster.ConditionValid, metav1.ConditionFalse, "InvalidField", st.invalid.Error())
	} else {
		setCond(multicluster.ConditionValid, metav1.ConditionTrue, "Valid", "")
	}
	switch {
	case st.invalid != nil:
		meta.RemoveStatusCondition(&next.Conditions, multicluster.ConditionCredentials)
	case st.credErr != nil && st.remote != nil:
		setCond(multicluster.ConditionCredentials, metav1.ConditionFalse, "Invalid", st.credErr.Error()+"; still watching with the previous credentials")
	case st.credErr != nil:
		setCond(multicluster.ConditionCredentials, metav1.ConditionFalse, "Invalid", st.credErr.Error())
	case st.remote != nil && st.remote.watchErr() != nil:
		// Unreachable: whether the credentials still work is unknown.
		setCond(multicluster.ConditionCredentials, metav1.ConditionUnknown, "WatchFailing",
			"cannot watch the cluster ("+st.remote.watchErr().Error()+"); keeping the existing mirrors")
	case st.remote != nil && st.connErr != nil:
		setCond(multicluster.ConditionCredentials, metav1.ConditionUnknown, "Unreachable",
			"cannot check the new credentials ("+st.connErr.Error()+"); still watching with the previous ones")
	case st.remote != nil:
		setCond(multicluster.ConditionCredentials, metav1.ConditionTrue, "Connected", "")
	case st.connErr != nil:
		setCond(multicluster.ConditionCredentials, metav1.ConditionUnknown, "Unreachable",
			"cannot reach the cluster ("+st.connErr.Error()+"); keeping the existing mirrors, retrying")
	}
	if st.cfg != nil && st.cfg.Probe.Path != "" && len(st.cfg.GatewayHosts) > 0 {
		if c.m.cfg.Health.Alive(st.cfg.Cluster) {
			setCond(multicluster.ConditionGatewayAlive, metav1.ConditionTrue, "ProbeSucceeded", "")
		} else {
			setCond(multicluster.ConditionGatewayAlive, metav1.ConditionFalse, "ProbeFailed",
				fmt.Sprintf("%d consecutive probes of %s failed", st.cfg.Probe.FailureThreshold, st.cfg.Probe.Path))
		}
	} else {
		meta.RemoveStatusCondition(&next.Conditions, multicluster.ConditionGatewayAlive)
	}
	keys := slices.Sorted(maps.Keys(st.services))
	for _, k := range keys {
		next.MirrorServices = append(next.MirrorServices, st.services[k])
	}
	c.mu.Unlock()
	// Keep the transition times the Link already shows for conditions
	// that did not change (e.g. written by a previous leader).
	prev := map[multicluster.ObjectRef]multicluster.LinkCondition{}
	for _, s := range cur.Status.MirrorServices {
		if len(s.Conditions) == 1 {
			prev[s.RemoteRef] = s.Conditions[0]
		}
	}
	for i, s := range next.MirrorServices {
		if p, ok := prev[s.RemoteRef]; ok && sameCondition(p, s.Conditions[0]) {
			next.MirrorServices[i].Conditions = []multicluster.LinkCondition{p}
		}
	}
	next.FederatedServices = cur.Status.FederatedServices
	a, _ := json.Marshal(cur.Status)
	b, _ := json.Marshal(next)
	if string(a) == string(b) {
		return nil
	}
	// Merge patch replaces each list wholesale, which is what we want: the
	// leader's view is complete.
	// Empty lists are omitted by omitempty; a merge patch must say null
	// to remove what the Link still shows.
	st2 := map[string]any{"conditions": next.Conditions, "mirrorServices": next.MirrorServices,
		"federatedServices": next.FederatedServices}
	for k, v := range map[string]int{"conditions": len(next.Conditions), "mirrorServices": len(next.MirrorServices),
		"federatedServices": len(next.FederatedServices)} {
		if v == 0 {
			st2[k] = nil
		}
	}
	body, err := json.Marshal(map[string]any{"status": st2})
	if err != nil {
		return fmt.Errorf("marshal link status: %w", err)
	}
	_, err = c.m.cfg.Dynamic.Resource(multicluster.LinkGVR).Namespace(c.m.cfg.Namespace).Patch(ctx, link, types.MergePatchType, body,
		metav1.PatchOptions{FieldManager: FieldManager}, "status")
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("patch link %s status: %w", link, err)
	}
	c.m.met.writes.WithLabelValues("link", "status").Inc()
	return nil
}
