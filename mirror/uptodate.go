package mirror

// Whether a mirror Service or EndpointSlice read back from the API still
// holds what the mirror wrote. Only what the mirror sets is compared, never
// what the API server fills in (clusterIP, ipFamilies, sessionAffinity,
// internalTrafficPolicy, a port's default targetPort), so a mirror is never
// written again only because the server defaulted it. Hand edits of what it
// sets (kubectl edit of ports, type or selector; of a slice's addresses,
// ports or conditions) are seen, and undone.

import (
	"slices"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	discoveryac "k8s.io/client-go/applyconfigurations/discovery/v1"
	"k8s.io/utils/ptr"
)

// serviceOwnedUpToDate reports whether the mirror holds the labels,
// annotations, type and port fields of desired; if not, applying desired
// (forced) sets them back. The desired-hash annotation makes any change of
// desired, including labels removed, a difference.
func serviceOwnedUpToDate(actual *corev1.Service, desired *corev1ac.ServiceApplyConfiguration) bool {
	if !subset(desired.Labels, actual.Labels) || !subset(desired.Annotations, actual.Annotations) ||
		actual.Spec.Type != ptr.Deref(desired.Spec.Type, "") {
		return false
	}
	for _, want := range desired.Spec.Ports {
		have, ok := servicePortByKey(actual.Spec.Ports, ptr.Deref(want.Port, 0), ptr.Deref(want.Protocol, ""))
		if !ok || have.Name != ptr.Deref(want.Name, "") ||
			(want.TargetPort != nil && have.TargetPort != *want.TargetPort) ||
			(want.AppProtocol != nil && ptr.Deref(have.AppProtocol, "") != *want.AppProtocol) {
			return false
		}
	}
	return true
}

// serviceHasForeignSpec reports whether the mirror's spec holds what
// someone else added and an apply of ours would leave in place: a selector
// (the mirror sets none; with one, the endpoint controller would write
// slices of its own) or a port desired does not have (by its key, port and
// protocol).
func serviceHasForeignSpec(actual *corev1.Service, desired *corev1ac.ServiceApplyConfiguration) bool {
	if len(actual.Spec.Selector) > 0 {
		return true
	}
	for _, p := range actual.Spec.Ports {
		if !slices.ContainsFunc(desired.Spec.Ports, func(want corev1ac.ServicePortApplyConfiguration) bool {
			return ptr.Deref(want.Port, 0) == p.Port && ptr.Deref(want.Protocol, "") == protocolOf(p.Protocol)
		}) {
			return true
		}
	}
	return false
}

// servicePortByKey finds a Service port by its key in the API (port and
// protocol).
func servicePortByKey(ports []corev1.ServicePort, port int32, proto corev1.Protocol) (corev1.ServicePort, bool) {
	for _, p := range ports {
		if p.Port == port && protocolOf(p.Protocol) == proto {
			return p, true
		}
	}
	return corev1.ServicePort{}, false
}

// sliceUpToDate reports whether the mirror's EndpointSlice holds desired's
// labels, annotations, owner, ports and endpoints (addresses and
// conditions). Both lists are atomic in the API: a forced apply of desired
// replaces them whole.
func sliceUpToDate(actual *discoveryv1.EndpointSlice, desired *discoveryac.EndpointSliceApplyConfiguration) bool {
	if !subset(desired.Labels, actual.Labels) || !subset(desired.Annotations, actual.Annotations) ||
		actual.AddressType != ptr.Deref(desired.AddressType, "") || !ownedBy(actual, desired) ||
		len(actual.Ports) != len(desired.Ports) || len(actual.Endpoints) != len(desired.Endpoints) {
		return false
	}
	for i, want := range desired.Ports {
		have := actual.Ports[i]
		if ptr.Deref(have.Name, "") != ptr.Deref(want.Name, "") || ptr.Deref(have.Protocol, "") != ptr.Deref(want.Protocol, "") ||
			ptr.Deref(have.Port, 0) != ptr.Deref(want.Port, 0) || !ptr.Equal(have.AppProtocol, want.AppProtocol) {
			return false
		}
	}
	for i, want := range desired.Endpoints {
		have := actual.Endpoints[i]
		if !slices.Equal(have.Addresses, want.Addresses) || want.Conditions == nil ||
			!ptr.Equal(have.Conditions.Ready, want.Conditions.Ready) || !ptr.Equal(have.Conditions.Serving, want.Conditions.Serving) ||
			!ptr.Equal(have.Conditions.Terminating, want.Conditions.Terminating) {
			return false
		}
	}
	return true
}

// ownedBy reports whether the slice carries desired's controller reference.
func ownedBy(actual *discoveryv1.EndpointSlice, desired *discoveryac.EndpointSliceApplyConfiguration) bool {
	for _, want := range desired.OwnerReferences {
		found := false
		for _, have := range actual.OwnerReferences {
			found = found || (have.UID == ptr.Deref(want.UID, "") && have.Name == ptr.Deref(want.Name, "") &&
				ptr.Deref(have.Controller, false) == ptr.Deref(want.Controller, false))
		}
		if !found {
			return false
		}
	}
	return true
}

// subset reports whether have holds every key of want with its value.
func subset(want, have map[string]string) bool {
	for k, v := range want {
		if hv, ok := have[k]; !ok || hv != v {
			return false
		}
	}
	return true
}
