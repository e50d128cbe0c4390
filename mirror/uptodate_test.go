package mirror

import (
	"encoding/json"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/mcgate/mcgate/mirror/multicluster"
)

// asStored round-trips an apply configuration through JSON into the typed
// object, as the API server would store it before defaulting.
func asStored[T any](t *testing.T, ac any) *T {
	t.Helper()
	b, err := json.Marshal(ac)
	if err != nil {
		t.Fatal(err)
	}
	var out T
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return &out
}

func TestServiceUpToDate(t *testing.T) {
	l := testLink(multicluster.ModeEgress)
	remote := remoteService()
	remote.Spec.Ports[1].TargetPort = intstr.IntOrString{} // the mirror sets none: the server defaults it
	desired := desiredService(l, remote, map[int32]int32{8080: 4200, 9090: 4201})
	for _, tc := range []struct {
		name           string
		edit           func(s *corev1.Service)
		owned, foreign bool // serviceOwnedUpToDate, serviceHasForeignSpec
	}{
		{"as written", func(*corev1.Service) {}, true, false},
		{"defaulted by the API server", func(s *corev1.Service) {
			s.Spec.ClusterIP, s.Spec.ClusterIPs = "10.0.0.9", []string{"10.0.0.9"}
			s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol}
			s.Spec.IPFamilyPolicy = ptr.To(corev1.IPFamilyPolicySingleStack)
			s.Spec.SessionAffinity = corev1.ServiceAffinityNone
			s.Spec.InternalTrafficPolicy = ptr.To(corev1.ServiceInternalTrafficPolicyCluster)
			s.Spec.Ports[1].TargetPort = intstr.FromInt32(9090)
		}, true, false},
		{"label of someone else's", func(s *corev1.Service) { s.Labels["team"] = "b" }, true, false},
		{"our label edited", func(s *corev1.Service) { s.Labels["app"] = "other" }, false, false},
		{"desired changed (hash)", func(s *corev1.Service) { s.Annotations[annotationDesiredHash] = "0" }, false, false},
		{"type", func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeNodePort
			s.Spec.Ports[0].NodePort = 30080
		}, false, false},
		{"port number", func(s *corev1.Service) { s.Spec.Ports[0].Port = 9999 }, false, true},
		{"port name", func(s *corev1.Service) { s.Spec.Ports[0].Name = "web" }, false, false},
		{"port protocol", func(s *corev1.Service) { s.Spec.Ports[0].Protocol = corev1.ProtocolUDP }, false, true},
		{"target port we set", func(s *corev1.Service) { s.Spec.Ports[0].TargetPort = intstr.FromInt32(1) }, false, false},
		{"app protocol we set", func(s *corev1.Service) { s.Spec.Ports[0].AppProtocol = nil }, false, false},
		{"port removed", func(s *corev1.Service) { s.Spec.Ports = s.Spec.Ports[:1] }, false, false},
		{"port added", func(s *corev1.Service) {
			s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{Name: "x", Port: 1, Protocol: corev1.ProtocolTCP})
		}, true, true},
		{"selector", func(s *corev1.Service) { s.Spec.Selector = map[string]string{"app": "api"} }, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := asStored[corev1.Service](t, desired)
			tc.edit(s)
			if got := serviceOwnedUpToDate(s, desired); got != tc.owned {
				t.Errorf("serviceOwnedUpToDate = %v, want %v", got, tc.owned)
			}
			if got := serviceHasForeignSpec(s, desired); got != tc.foreign {
				t.Errorf("serviceHasForeignSpec = %v, want %v", got, tc.foreign)
			}
		})
	}
}

func TestSliceUpToDate(t *testing.T) {
	l := testLink(multicluster.ModeEgress)
	desired, err := desiredSlice(l, mirrorAsRead(t, l), sliceState{Addresses: []string{"198.18.0.10", "198.18.0.11"}, Alive: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		edit func(s *discoveryv1.EndpointSlice)
		want bool
	}{
		{"as written", func(*discoveryv1.EndpointSlice) {}, true},
		{"label of someone else's", func(s *discoveryv1.EndpointSlice) { s.Labels["team"] = "b" }, true},
		{"endpoint field we do not set", func(s *discoveryv1.EndpointSlice) { s.Endpoints[0].NodeName = ptr.To("n1") }, true},
		{"desired changed (hash)", func(s *discoveryv1.EndpointSlice) { s.Annotations[annotationDesiredHash] = "0" }, false},
		{"address", func(s *discoveryv1.EndpointSlice) { s.Endpoints[0].Addresses = []string{"198.18.0.99"} }, false},
		{"endpoint removed", func(s *discoveryv1.EndpointSlice) { s.Endpoints = s.Endpoints[:1] }, false},
		{"endpoint added", func(s *discoveryv1.EndpointSlice) {
			s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Addresses: []string{"198.18.0.99"}})
		}, false},
		{"not ready", func(s *discoveryv1.EndpointSlice) { s.Endpoints[1].Conditions.Ready = ptr.To(false) }, false},
		{"serving unset", func(s *discoveryv1.EndpointSlice) { s.Endpoints[0].Conditions.Serving = nil }, false},
		{"terminating", func(s *discoveryv1.EndpointSlice) { s.Endpoints[0].Conditions.Terminating = ptr.To(true) }, false},
		{"port number", func(s *discoveryv1.EndpointSlice) { s.Ports[0].Port = ptr.To[int32](1) }, false},
		{"port name", func(s *discoveryv1.EndpointSlice) { s.Ports[1].Name = ptr.To("x") }, false},
		{"port app protocol", func(s *discoveryv1.EndpointSlice) { s.Ports[0].AppProtocol = nil }, false},
		{"port removed", func(s *discoveryv1.EndpointSlice) { s.Ports = s.Ports[:1] }, false},
		{"owner removed", func(s *discoveryv1.EndpointSlice) { s.OwnerReferences = nil }, false},
		{"address type", func(s *discoveryv1.EndpointSlice) { s.AddressType = discoveryv1.AddressTypeFQDN }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := asStored[discoveryv1.EndpointSlice](t, desired)
			tc.edit(s)
			if got := sliceUpToDate(s, desired); got != tc.want {
				t.Errorf("sliceUpToDate = %v, want %v", got, tc.want)
			}
		})
	}
}
