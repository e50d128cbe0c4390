package mirror

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"net"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	discoveryac "k8s.io/client-go/applyconfigurations/discovery/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"

	"github.com/mcgate/mcgate/mirror/multicluster"
)

// Labels, annotations and names of mcgate's own, and Linkerd's ones that
// only the mirror uses.
const (
	annotationOpaquePorts    = "config.linkerd.io/opaque-ports"
	linkerdPrefix            = "mirror.linkerd.io"
	LabelManagedBy           = discoveryv1.LabelManagedBy
	ManagedByValue           = "mcgate"
	fieldManager             = "mcgate-mirror"
	mcgatePrefix             = "mcgate.io/"
	AnnotationEgressPorts    = "mcgate.io/egress-ports"
	annotationDesiredHash    = "mcgate.io/desired-hash"
	annotationTopologyHints  = "service.kubernetes.io/topology-aware-hints"
	annotationTopologyMode   = "service.kubernetes.io/topology-mode"
	endpointSliceServiceName = discoveryv1.LabelServiceName
)

// MirrorName is the local name of a remote Service: the value of
// mirror.linkerd.io/remote-svc-name when set, else <name>-<cluster>.
func mirrorName(remote *corev1.Service, cluster string) string {
	if n := remote.Annotations[multicluster.AnnotationRemoteSvcName]; n != "" {
		return n
	}
	return remote.Name + "-" + cluster
}

// FQName is the remote Service's DNS name in its own cluster.
func fqName(name, namespace, domain string) string {
	return name + "." + namespace + ".svc." + domain
}

// ParseFQName reverses FQName; ok is false for names not of that form.
func parseFQName(fq string) (name, namespace string, ok bool) {
	parts := strings.SplitN(fq, ".", 4)
	if len(parts) < 4 || parts[2] != "svc" || parts[0] == "" || parts[1] == "" {
		return "", "", false
	}
	return parts[0], parts[1], true
}

// excluded reports whether key matches an exclusion list entry; an entry
// ending in "/*" matches every key with that prefix (Linkerd's semantics).
func excluded(key string, list []string) bool {
	for _, e := range list {
		if p, ok := strings.CutSuffix(e, "/*"); ok {
			if strings.HasPrefix(key, p+"/") {
				return true
			}
		} else if key == e {
			return true
		}
	}
	return false
}

// mirrorLabels are the remote labels to copy plus the two mirror labels.
func mirrorLabels(link *multicluster.LinkConfig, remote map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range remote {
		// Mirror labels of the remote (it may itself hold mirrors) would
		// make ours ambiguous; Linkerd drops the whole prefix too.
		if strings.HasPrefix(k, linkerdPrefix) || excluded(k, link.ExcludedLabels) {
			continue
		}
		out[k] = v
	}
	out[multicluster.LabelMirroredService] = "true"
	out[multicluster.LabelClusterName] = link.Cluster
	return out
}

// mirrorAnnotations copies remote annotations as Linkerd does: topology
// hints make no sense across clusters, opaque-ports is kept even when
// excluded (it changes how meshed clients speak to the mirror), and our own
// mcgate.io/ bookkeeping is never taken from the remote.
func mirrorAnnotations(link *multicluster.LinkConfig, remote *corev1.Service) map[string]string {
	out := map[string]string{}
	for k, v := range remote.Annotations {
		switch {
		case k == annotationOpaquePorts:
		case k == annotationTopologyHints, k == annotationTopologyMode,
			strings.HasPrefix(k, mcgatePrefix), excluded(k, link.ExcludedAnns):
			continue
		}
		out[k] = v
	}
	out[multicluster.AnnotationRemoteFQName] = fqName(remote.Name, remote.Namespace, link.Domain)
	out[multicluster.AnnotationRemoteVersion] = remote.ResourceVersion
	return out
}

// DesiredService is the mirror of remote. egress maps each service port to
// its allocated egress port (egress mode); it is recorded on the mirror so
// the allocation survives restarts and every replica listens on the same
// ports.
func desiredService(link *multicluster.LinkConfig, remote *corev1.Service, egress map[int32]int32) *corev1ac.ServiceApplyConfiguration {
	ann := mirrorAnnotations(link, remote)
	if link.Mode == multicluster.ModeEgress && len(egress) > 0 {
		ann[AnnotationEgressPorts] = formatEgressPorts(egress)
	}
	spec := corev1ac.ServiceSpec().WithType(corev1.ServiceTypeClusterIP)
	for _, p := range remote.Spec.Ports {
		// NodePort is dropped (it belongs to the remote cluster); appProtocol
		// is kept, unlike Linkerd, so protocol-aware clients still know it.
		sp := corev1ac.ServicePort().WithName(p.Name).WithProtocol(protocolOf(p.Protocol)).WithPort(p.Port)
		if p.TargetPort.String() != "0" && p.TargetPort.String() != "" {
			sp.WithTargetPort(p.TargetPort)
		}
		if p.AppProtocol != nil {
			sp.WithAppProtocol(*p.AppProtocol)
		}
		spec.WithPorts(sp)
	}
	svc := corev1ac.Service(mirrorName(remote, link.Cluster), remote.Namespace).
		WithLabels(mirrorLabels(link, remote.Labels)).
		WithSpec(spec)
	svc.WithAnnotations(ann)
	svc.WithAnnotations(map[string]string{annotationDesiredHash: hashOf(svc)})
	return svc
}

func protocolOf(p corev1.Protocol) corev1.Protocol {
	if p == "" {
		return corev1.ProtocolTCP
	}
	return p
}

// SliceState is what the endpoints of a mirror depend on besides the mirror
// Service itself.
type sliceState struct {
	// Addresses: the local gateway's addresses (egress mode) or the remote
	// gateway's resolved IPs (direct mode).
	Addresses []string
	// Alive is the remote gateway's probed liveness; dead → not ready.
	Alive bool
	// Empty: the remote service has no ready endpoints (Linkerd: no subsets).
	Empty bool
}

// DesiredSlice is the EndpointSlice of a mirror Service (as read back from
// the API, for its UID and egress annotation). It is owned by the mirror so
// it goes with it.
func desiredSlice(link *multicluster.LinkConfig, mirror *corev1.Service, st sliceState) (*discoveryac.EndpointSliceApplyConfiguration, error) {
	family, addrs := addressFamily(st.Addresses)
	var egress map[int32]int32
	if link.Mode == multicluster.ModeEgress {
		var err error
		if egress, err = ParseEgressPorts(mirror.Annotations[AnnotationEgressPorts]); err != nil {
			return nil, err
		}
	}
	ls := map[string]string{}
	for k, v := range mirror.Labels {
		ls[k] = v
	}
	ls[endpointSliceServiceName] = mirror.Name
	ls[LabelManagedBy] = ManagedByValue
	ann := map[string]string{multicluster.AnnotationRemoteFQName: mirror.Annotations[multicluster.AnnotationRemoteFQName]}
	if link.GatewayIdentity != "" {
		ann[multicluster.AnnotationGatewayID] = link.GatewayIdentity
	}
	s := discoveryac.EndpointSlice(mirror.Name, mirror.Namespace).
		WithLabels(ls).
		WithAnnotations(ann).
		WithOwnerReferences(metav1ac.OwnerReference().
			WithAPIVersion("v1").WithKind("Service").WithName(mirror.Name).WithUID(mirror.UID).
			// No blockOwnerDeletion: it would need update on services/finalizers.
			WithController(true)).
		WithAddressType(family)
	for _, p := range mirror.Spec.Ports {
		port := int32(link.GatewayPort)
		if link.Mode == multicluster.ModeEgress {
			e, ok := egress[p.Port]
			if !ok {
				return nil, fmt.Errorf("mirror %s/%s: no egress port for service port %d", mirror.Namespace, mirror.Name, p.Port)
			}
			port = e
		}
		ep := discoveryac.EndpointPort().WithName(p.Name).WithProtocol(protocolOf(p.Protocol)).WithPort(port)
		if p.AppProtocol != nil {
			ep.WithAppProtocol(*p.AppProtocol)
		}
		s.WithPorts(ep)
	}
	if !st.Empty {
		for _, a := range addrs {
			s.WithEndpoints(discoveryac.Endpoint().WithAddresses(a).WithConditions(
				discoveryac.EndpointConditions().WithReady(st.Alive).WithServing(st.Alive).WithTerminating(false)))
		}
	}
	if s.Endpoints == nil {
		// Apply with no endpoints key would leave the old ones in place
		// (absent ≠ empty for a field we own): send an explicit empty list.
		s.Endpoints = []discoveryac.EndpointApplyConfiguration{}
	}
	s.WithAnnotations(map[string]string{annotationDesiredHash: hashOf(s)})
	return s, nil
}

// addressFamily picks the slice's address type: IPv4 unless only IPv6
// addresses exist (a slice holds one family). Addresses are sorted so the
// desired object, and hence its hash, does not depend on resolver order.
func addressFamily(addrs []string) (discoveryv1.AddressType, []string) {
	var v4, v6 []string
	for _, a := range addrs {
		ip := net.ParseIP(a)
		switch {
		case ip == nil:
		case ip.To4() != nil:
			v4 = append(v4, ip.String())
		default:
			v6 = append(v6, ip.String())
		}
	}
	if len(v4) == 0 && len(v6) > 0 {
		slices.Sort(v6)
		return discoveryv1.AddressTypeIPv6, slices.Compact(v6)
	}
	slices.Sort(v4)
	return discoveryv1.AddressTypeIPv4, slices.Compact(v4)
}

// hashOf fingerprints a desired object. Stored as an annotation, it lets the
// reconciler skip writes that would change nothing, including removals of
// labels we once set, which a subset comparison would miss.
func hashOf(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		// Apply configurations are plain data; Marshal cannot fail on them.
		panic(fmt.Sprintf("mirror: marshal desired object: %v", err))
	}
	h := fnv.New64a()
	h.Write(b)
	return fmt.Sprintf("%016x", h.Sum64())
}
