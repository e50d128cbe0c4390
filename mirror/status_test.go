package mirror

import (
	"errors"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/mcgate/mcgate/mirror/multicluster"
)

func TestLinkStatus(t *testing.T) {
	refused := errors.New("connection refused")
	badToken := errors.New("Unauthorized")
	old := metav1.NewTime(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	mirrored := func(name string, at metav1.Time) multicluster.ServiceStatus {
		return multicluster.ServiceStatus{ControllerName: multicluster.ControllerName,
			RemoteRef: multicluster.ObjectRef{Kind: "Service", Name: name, Namespace: "prod"},
			Conditions: []multicluster.LinkCondition{{Type: multicluster.ConditionMirrored, Status: metav1.ConditionTrue,
				Reason: multicluster.ReasonMirrored, LastTransitionTime: at}}}
	}
	// A status as a previous leader left it.
	prev := multicluster.LinkStatus{
		Conditions: []metav1.Condition{
			{Type: multicluster.ConditionCredentials, Status: metav1.ConditionTrue, Reason: "Connected", LastTransitionTime: old},
			{Type: multicluster.ConditionGatewayAlive, Status: metav1.ConditionTrue, Reason: "ProbeSucceeded", LastTransitionTime: old},
		},
		MirrorServices:    []multicluster.ServiceStatus{mirrored("api", old)},
		FederatedServices: []multicluster.ServiceStatus{mirrored("fed", old)},
	}
	type cond struct {
		status metav1.ConditionStatus // "" when the condition is absent
		reason string
	}
	for _, tc := range []struct {
		name                string
		view                linkView
		valid, creds, alive cond
		credMsg             string // a part of the Credentials message
	}{
		{"invalid", linkView{invalid: errors.New("spec.gatewayPort: bad")},
			cond{"False", "InvalidField"}, cond{}, cond{}, ""},
		{"refused, still watching", linkView{credErr: badToken, watching: true},
			cond{"True", "Valid"}, cond{"False", "Invalid"}, cond{}, "still watching with the previous credentials"},
		{"refused", linkView{credErr: badToken},
			cond{"True", "Valid"}, cond{"False", "Invalid"}, cond{}, "Unauthorized"},
		{"watch failing", linkView{watching: true, watchErr: refused},
			cond{"True", "Valid"}, cond{"Unknown", "WatchFailing"}, cond{}, "keeping the existing mirrors"},
		{"new credentials unreachable", linkView{watching: true, connErr: refused},
			cond{"True", "Valid"}, cond{"Unknown", "Unreachable"}, cond{}, "still watching with the previous ones"},
		{"unreachable", linkView{connErr: refused},
			cond{"True", "Valid"}, cond{"Unknown", "Unreachable"}, cond{}, "retrying"},
		{"connected, gateway alive", linkView{watching: true, probe: &probeView{alive: true, path: "/ready", threshold: 3}},
			cond{"True", "Valid"}, cond{"True", "Connected"}, cond{"True", "ProbeSucceeded"}, ""},
		{"connected, gateway dead", linkView{watching: true, probe: &probeView{path: "/ready", threshold: 3}},
			cond{"True", "Valid"}, cond{"True", "Connected"}, cond{"False", "ProbeFailed"}, ""},
		{"domain disagrees with the gateway's", linkView{watching: true, domainErr: errors.New(`spec.targetClusterDomain is "a"`)},
			cond{"False", ReasonClusterDomainMismatch}, cond{"True", "Connected"}, cond{}, ""},
		{"invalid field first", linkView{invalid: errors.New("spec.gatewayPort: bad"), domainErr: errors.New("mismatch")},
			cond{"False", "InvalidField"}, cond{}, cond{}, ""},
		{"nothing tried yet: credentials as they were", linkView{},
			cond{"True", "Valid"}, cond{"True", "Connected"}, cond{}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			next := linkStatus(prev, 7, tc.view)
			for _, c := range []struct {
				typ  string
				want cond
			}{{multicluster.ConditionValid, tc.valid}, {multicluster.ConditionCredentials, tc.creds}, {multicluster.ConditionGatewayAlive, tc.alive}} {
				got := meta.FindStatusCondition(next.Conditions, c.typ)
				switch {
				case c.want.status == "" && got != nil:
					t.Errorf("%s = %+v, want none", c.typ, got)
				case c.want.status != "" && (got == nil || got.Status != c.want.status || got.Reason != c.want.reason):
					t.Errorf("%s = %+v, want %s/%s", c.typ, got, c.want.status, c.want.reason)
				}
			}
			if c := meta.FindStatusCondition(next.Conditions, multicluster.ConditionCredentials); tc.credMsg != "" &&
				(c == nil || !strings.Contains(c.Message, tc.credMsg)) {
				t.Errorf("Credentials message %+v lacks %q", c, tc.credMsg)
			}
			if len(next.FederatedServices) != 1 {
				t.Errorf("federated services %+v, want them kept", next.FederatedServices)
			}
			if len(next.MirrorServices) != 0 {
				t.Errorf("mirror services %+v, want none (the view has none)", next.MirrorServices)
			}
		})
	}

	// Conditions that did not change keep their transition time; changed
	// and new ones take the view's.
	now := metav1.NewTime(old.Add(time.Hour))
	changed := mirrored("db", now)
	changed.Conditions[0].Status = metav1.ConditionFalse
	next := linkStatus(prev, 7, linkView{watching: true, services: []multicluster.ServiceStatus{mirrored("api", now), changed}})
	if len(next.MirrorServices) != 2 || !next.MirrorServices[0].Conditions[0].LastTransitionTime.Equal(&old) ||
		!next.MirrorServices[1].Conditions[0].LastTransitionTime.Equal(&now) {
		t.Fatalf("mirror services %+v", next.MirrorServices)
	}
	if c := meta.FindStatusCondition(next.Conditions, multicluster.ConditionCredentials); !c.LastTransitionTime.Equal(&old) ||
		c.ObservedGeneration != 7 {
		t.Fatalf("unchanged Credentials condition %+v: want its old transition time and generation 7", c)
	}
}
