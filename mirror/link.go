// Package mirror is the service mirror built into the gateway: it watches
// Links, mirrors the Services other clusters export into this cluster, keeps
// their EndpointSlices, allocates egress ports, writes Link status, and serves
// the Kubernetes-backed route table for ingress.
//
// The Link resource, its labels, annotations and status keep the shape of
// Linkerd's multicluster extension so its users can switch without rewriting
// manifests (see shared/reference/linkerd-multicluster.md §1, §2).
//
// What mcgate adds or changes, all visible in the cluster:
//   - One writer per gateway Deployment, elected on the Lease LeaseName
//     ("mcgate-service-mirror-write") in the Links' namespace; every replica
//     serves ingress routes, egress listeners and probes from its caches.
//   - Mirrors are written with server-side apply (field manager
//     "mcgate-mirror") and carry mcgate.io/desired-hash, so unchanged
//     objects are never written again.
//   - EndpointSlices (not Endpoints), named like the mirror Service, owned
//     by it, labelled endpointslice.kubernetes.io/managed-by=mcgate.
//   - Egress mode (default): the slice points at this cluster's gateway on
//     an egress port per service port, recorded on the mirror Service as
//     mcgate.io/egress-ports ("80=4200,443=4201"). Direct mode (Link
//     annotation mcgate.io/endpoint-mode=direct) points at the remote
//     gateway as Linkerd does.
//   - Link status gains conditions Valid (a bad field, named), Credentials
//     and GatewayAlive; events are recorded on the Link.
//   - Deleting a Link deletes its mirrors; a Secret change takes effect
//     without a restart, and bad credentials keep the running watcher.
package mirror

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation"
)

// LinkGVR is the resource the mirror reads and writes. v1alpha3 is the
// storage version; v1alpha1/v1alpha2 objects are served through it unchanged
// because every version is structurally compatible (no conversion webhook).
var LinkGVR = schema.GroupVersionResource{Group: "multicluster.linkerd.io", Version: "v1alpha3", Resource: "links"}

// Link is a multicluster.linkerd.io Link. The types are written by hand
// (no code generator here) and decoded from the dynamic client's
// unstructured objects, which keeps the mirror free of a generated clientset.
type Link struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              LinkSpec   `json:"spec,omitempty"`
	Status            LinkStatus `json:"status,omitempty"`
}

// LinkSpec is v1alpha3's spec. Numbers and durations are strings, as in
// Linkerd, so manifests written for Linkerd apply unchanged.
type LinkSpec struct {
	TargetClusterName             string                `json:"targetClusterName,omitempty"`
	TargetClusterDomain           string                `json:"targetClusterDomain,omitempty"`
	TargetClusterLinkerdNamespace string                `json:"targetClusterLinkerdNamespace,omitempty"`
	ClusterCredentialsSecret      string                `json:"clusterCredentialsSecret,omitempty"`
	GatewayAddress                string                `json:"gatewayAddress,omitempty"`
	GatewayPort                   string                `json:"gatewayPort,omitempty"`
	GatewayIdentity               string                `json:"gatewayIdentity,omitempty"`
	ProbeSpec                     ProbeSpec             `json:"probeSpec,omitempty"`
	Selector                      *metav1.LabelSelector `json:"selector,omitempty"`
	RemoteDiscoverySelector       *metav1.LabelSelector `json:"remoteDiscoverySelector,omitempty"`
	FederatedServiceSelector      *metav1.LabelSelector `json:"federatedServiceSelector,omitempty"`
	ExcludedAnnotations           []string              `json:"excludedAnnotations,omitempty"`
	ExcludedLabels                []string              `json:"excludedLabels,omitempty"`
}

// ProbeSpec says how to probe the remote gateway.
type ProbeSpec struct {
	Path             string `json:"path,omitempty"`
	Port             string `json:"port,omitempty"`
	Period           string `json:"period,omitempty"`
	Timeout          string `json:"timeout,omitempty"`
	FailureThreshold string `json:"failureThreshold,omitempty"`
}

// LinkStatus keeps Linkerd's per-service entries and adds Link-level
// conditions (Valid, Credentials, GatewayAlive) that Linkerd lacks: they are
// where a bad field, bad credentials or a dead gateway show up.
type LinkStatus struct {
	Conditions        []metav1.Condition `json:"conditions,omitempty"`
	MirrorServices    []ServiceStatus    `json:"mirrorServices,omitempty"`
	FederatedServices []ServiceStatus    `json:"federatedServices,omitempty"`
}

// ServiceStatus is one remote service's mirroring state.
type ServiceStatus struct {
	ControllerName string          `json:"controllerName,omitempty"`
	RemoteRef      ObjectRef       `json:"remoteRef"`
	Conditions     []LinkCondition `json:"conditions,omitempty"`
}

// LinkCondition is Linkerd's condition shape (with localRef), not
// metav1.Condition: Linkerd tooling reads these fields.
type LinkCondition struct {
	Type               string                 `json:"type"`
	Status             metav1.ConditionStatus `json:"status"`
	Reason             string                 `json:"reason,omitempty"`
	Message            string                 `json:"message,omitempty"`
	LastTransitionTime metav1.Time            `json:"lastTransitionTime,omitempty"`
	LocalRef           *ObjectRef             `json:"localRef,omitempty"`
}

// ObjectRef names a Service in one of the clusters.
type ObjectRef struct {
	Group     string `json:"group"`
	Kind      string `json:"kind"`
	Name      string `json:"name"`
	Namespace string `json:"namespace,omitempty"`
}

// Link-level condition types and the per-service condition vocabulary.
const (
	ControllerName = "linkerd.io/service-mirror"

	ConditionValid        = "Valid"
	ConditionCredentials  = "Credentials"
	ConditionGatewayAlive = "GatewayAlive"
	ConditionMirrored     = "Mirrored"

	ReasonMirrored         = "Mirrored"
	ReasonInvalidService   = "InvalidService"
	ReasonError            = "Error"
	ReasonMissingNamespace = "MissingNamespace"
)

// LinkFromUnstructured decodes a Link served at any version.
func LinkFromUnstructured(u *unstructured.Unstructured) (*Link, error) {
	var l Link
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &l); err != nil {
		return nil, fmt.Errorf("decode link %s/%s: %w", u.GetNamespace(), u.GetName(), err)
	}
	return &l, nil
}

// linkSpecFromUnstructured decodes a Link without its status: the status
// holds an entry per mirrored service, and converting it by reflection on
// every Link event would cost more than all the mirroring.
func linkSpecFromUnstructured(u *unstructured.Unstructured) (*Link, error) {
	obj := make(map[string]any, len(u.Object))
	for k, v := range u.Object {
		if k != "status" {
			obj[k] = v
		}
	}
	return LinkFromUnstructured(&unstructured.Unstructured{Object: obj})
}

// Endpoint modes of a Link, chosen with AnnotationEndpointMode on the Link.
// An annotation rather than a spec field keeps the Linkerd schema intact, so
// Links rendered by Linkerd's CLI stay valid.
const (
	AnnotationEndpointMode = "mcgate.io/endpoint-mode"
	// ModeEgress points mirror endpoints at this cluster's gateway on an
	// allocated egress port: clients need no mesh. The default.
	ModeEgress = "egress"
	// ModeDirect points mirror endpoints at the remote gateway, as Linkerd
	// does, for meshed clients that do their own mTLS.
	ModeDirect = "direct"
)

// LinkConfig is a validated Link with its strings parsed.
type LinkConfig struct {
	Name      string // the Link's metadata.name
	Namespace string
	Cluster   string // targetClusterName
	Domain    string // targetClusterDomain
	Secret    string
	// GatewayHosts are the gatewayAddress entries, unresolved (IPs or DNS names).
	GatewayHosts    []string
	GatewayPort     int
	GatewayIdentity string
	Probe           ProbeConfig
	Selector        labels.Selector
	ExcludedAnns    []string
	ExcludedLabels  []string
	Mode            string
}

// ProbeConfig is a parsed ProbeSpec. An empty Path disables probing.
type ProbeConfig struct {
	Path             string
	Port             int
	Period           time.Duration
	Timeout          time.Duration
	FailureThreshold int
}

// Defaults taken from Linkerd's CRD and CLI.
const (
	defaultProbePeriod    = 3 * time.Second
	defaultProbeTimeout   = 30 * time.Second
	defaultProbeThreshold = 3
	defaultProbePort      = 4191
	defaultGatewayPort    = 4143
	defaultClusterDomain  = "cluster.local"
)

// FieldError names the field of a Link that is wrong and why; its text is
// the message of the Link's Valid=False condition.
type FieldError struct {
	Field  string // JSON path, e.g. "spec.probeSpec.period"
	Value  string
	Reason string
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("%s: invalid value %q: %s", e.Field, e.Value, e.Reason)
}

// Config validates the Link and parses it. The first invalid field is
// returned as a *FieldError; fields are checked in a fixed order so the
// reported error is stable.
func (l *Link) Config() (*LinkConfig, error) {
	s := &l.Spec
	c := &LinkConfig{
		Name:            l.Name,
		Namespace:       l.Namespace,
		Cluster:         s.TargetClusterName,
		Domain:          s.TargetClusterDomain,
		Secret:          s.ClusterCredentialsSecret,
		GatewayIdentity: s.GatewayIdentity,
		ExcludedAnns:    s.ExcludedAnnotations,
		ExcludedLabels:  s.ExcludedLabels,
	}
	if c.Domain == "" {
		c.Domain = defaultClusterDomain
	}
	// The cluster name becomes a suffix of Service names and a label value.
	if errs := validation.IsDNS1123Label(c.Cluster); len(errs) > 0 {
		return nil, &FieldError{"spec.targetClusterName", c.Cluster, strings.Join(errs, "; ")}
	}
	if errs := validation.IsDNS1123Subdomain(c.Domain); len(errs) > 0 {
		return nil, &FieldError{"spec.targetClusterDomain", c.Domain, strings.Join(errs, "; ")}
	}
	if errs := validation.IsDNS1123Subdomain(c.Secret); len(errs) > 0 {
		return nil, &FieldError{"spec.clusterCredentialsSecret", c.Secret, strings.Join(errs, "; ")}
	}
	for _, h := range strings.Split(s.GatewayAddress, ",") {
		h = strings.TrimSpace(h)
		if h == "" {
			continue
		}
		if net.ParseIP(h) == nil {
			if errs := validation.IsDNS1123Subdomain(h); len(errs) > 0 {
				return nil, &FieldError{"spec.gatewayAddress", s.GatewayAddress, fmt.Sprintf("%q is neither an IP nor a DNS name", h)}
			}
		}
		c.GatewayHosts = append(c.GatewayHosts, h)
	}
	var err error
	if c.GatewayPort, err = parsePort(s.GatewayPort, defaultGatewayPort); err != nil {
		return nil, &FieldError{"spec.gatewayPort", s.GatewayPort, err.Error()}
	}
	if len(c.GatewayHosts) > 0 && c.GatewayIdentity == "" {
		return nil, &FieldError{"spec.gatewayIdentity", "", "required when gatewayAddress is set: the remote gateway's certificate is checked against it"}
	}
	p := &s.ProbeSpec
	c.Probe.Path = p.Path
	if p.Path != "" && !strings.HasPrefix(p.Path, "/") {
		return nil, &FieldError{"spec.probeSpec.path", p.Path, "must start with /"}
	}
	if c.Probe.Port, err = parsePort(p.Port, defaultProbePort); err != nil {
		return nil, &FieldError{"spec.probeSpec.port", p.Port, err.Error()}
	}
	if c.Probe.Period, err = parseDuration(p.Period, defaultProbePeriod); err != nil {
		return nil, &FieldError{"spec.probeSpec.period", p.Period, err.Error()}
	}
	if c.Probe.Timeout, err = parseDuration(p.Timeout, defaultProbeTimeout); err != nil {
		return nil, &FieldError{"spec.probeSpec.timeout", p.Timeout, err.Error()}
	}
	c.Probe.FailureThreshold = defaultProbeThreshold
	if p.FailureThreshold != "" {
		n, err := strconv.Atoi(p.FailureThreshold)
		if err != nil || n < 1 {
			return nil, &FieldError{"spec.probeSpec.failureThreshold", p.FailureThreshold, "must be an integer >= 1"}
		}
		c.Probe.FailureThreshold = n
	}
	// Linkerd: a nil or empty selector selects nothing (#11309), never everything.
	c.Selector = labels.Nothing()
	if s.Selector != nil && (len(s.Selector.MatchLabels) > 0 || len(s.Selector.MatchExpressions) > 0) {
		sel, err := metav1.LabelSelectorAsSelector(s.Selector)
		if err != nil {
			return nil, &FieldError{"spec.selector", metav1.FormatLabelSelector(s.Selector), err.Error()}
		}
		c.Selector = sel
	}
	c.Mode = ModeEgress
	if m, ok := l.Annotations[AnnotationEndpointMode]; ok {
		if m != ModeEgress && m != ModeDirect {
			return nil, &FieldError{"metadata.annotations[" + AnnotationEndpointMode + "]", m, "must be egress or direct"}
		}
		c.Mode = m
	}
	return c, nil
}

func parsePort(s string, def int) (int, error) {
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("must be a port number 1-65535")
	}
	return n, nil
}

// parseDuration accepts Go durations and, like Linkerd's CLI which turns the
// gateway annotation "3" into "3s", bare integers as seconds.
func parseDuration(s string, def time.Duration) (time.Duration, error) {
	if s == "" {
		return def, nil
	}
	if n, err := strconv.Atoi(s); err == nil {
		s = strconv.Itoa(n) + "s"
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("must be a positive duration such as 3s")
	}
	return d, nil
}
