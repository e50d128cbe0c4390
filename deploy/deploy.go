// Package deploy holds mcgate's Kubernetes manifests and renders them for
// `mcgate install`, `mcgate allow` and `mcgate uninstall`.
//
// The manifests are plain YAML in a kustomize base (deploy/base, plus the
// CRD from deploy/crds at deploy/kustomization.yaml) so `kubectl apply -k`
// works without this binary; Render starts from the same embedded bytes and
// applies the install options to typed objects, the way the overlays in
// deploy/overlays patch them. Tests check that the two agree.
package deploy

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/mcgate/mcgate/deploy/crds"
	"github.com/mcgate/mcgate/mirror/multicluster"
)

//go:embed base/*.yaml
var baseFS embed.FS

// Names shared with the CLI and the gateway's defaults.
const (
	Namespace          = "linkerd-multicluster"
	GatewayName        = "linkerd-gateway" // Deployment, Service, ServiceAccount, RBAC
	RemoteAccessName   = "linkerd-service-mirror-remote-access-default"
	IdentitySecretName = "linkerd-gateway-identity"

	PortNameGateway = "mc-gateway"
	PortNameProbe   = "mc-probe"

	AnnotationGatewayIdentity = "mirror.linkerd.io/gateway-identity"
	AnnotationProbePath       = "mirror.linkerd.io/probe-path"
	AnnotationProbePeriod     = "mirror.linkerd.io/probe-period"
	// AnnotationClusterDomain publishes the gateway's --cluster-domain, for
	// `mcgate link` and the mirror of linked clusters.
	AnnotationClusterDomain = multicluster.AnnotationClusterDomain

	// DefaultClusterDomain is Kubernetes' default cluster domain.
	DefaultClusterDomain = "cluster.local"

	// LabelExtension is on every object mcgate installs (as Linkerd's
	// extension does), so uninstall and check can find them.
	LabelExtension = "linkerd.io/extension"
	ExtensionName  = "multicluster"

	containerName = "mcgate"
)

// Options are the install choices. The zero value renders the defaults.
type Options struct {
	// ServiceType of the linkerd-gateway Service: LoadBalancer (default),
	// NodePort or ClusterIP.
	ServiceType corev1.ServiceType
	// NodePort and ProbeNodePort pin mc-gateway's and mc-probe's node ports
	// (NodePort and LoadBalancer only; 0 lets the cluster choose).
	NodePort, ProbeNodePort int32
	// ProbePort is mc-probe's Service port (default 4191); it always
	// targets the container's probe port (/ready and /live only).
	ProbePort int32
	// HA runs three replicas that must not share a node.
	HA bool
	// IdentitySecret is the Secret with tls.crt, tls.key and ca.crt mounted
	// at /var/run/mcgate/identity (default linkerd-gateway-identity).
	IdentitySecret string
	// Image of the mcgate container (default: the base manifest's).
	Image string
	// TrustDomain forms the gateway identity annotation (default cluster.local).
	TrustDomain string
	// ClusterDomain is the cluster's DNS domain (default cluster.local): the
	// gateway's --cluster-domain, published on its Service as
	// AnnotationClusterDomain.
	ClusterDomain string
	// AllowIdentities become the gateway's --allow-identity flags; none
	// lets any identity issued under the trust anchor connect.
	AllowIdentities []string
	// ServiceAnnotations are added to the linkerd-gateway Service, e.g. a
	// cloud's load-balancer settings. The annotations install sets itself
	// cannot be given here.
	ServiceAnnotations map[string]string
	// LoadBalancerSourceRanges are the CIDRs a LoadBalancer Service admits
	// (none: any source).
	LoadBalancerSourceRanges []string
	// ExternalTrafficPolicy of the Service; empty leaves the API server's
	// default (Cluster). Local keeps client source addresses, which the
	// gateway's per-source handshake limit needs (SECURITY.md).
	ExternalTrafficPolicy corev1.ServiceExternalTrafficPolicy
	// NodePortRange is the cluster's service node port range, which
	// NodePort and ProbeNodePort must fall in (zero: 30000-32767, the API
	// server's default).
	NodePortRange PortRange
}

// files in the order of deploy/base/kustomization.yaml, with the CRD after
// the namespace as in deploy/kustomization.yaml.
var files = []string{"namespace.yaml", "", "gateway-rbac.yaml", "remote-access.yaml", "gateway.yaml"}

// GatewayIdentity is the DNS-form identity of the gateway's ServiceAccount.
func GatewayIdentity(trustDomain string) string {
	if trustDomain == "" {
		trustDomain = "cluster.local"
	}
	return fmt.Sprintf("%s.%s.serviceaccount.identity.linkerd.%s", GatewayName, Namespace, trustDomain)
}

// Render returns every object of an install with options o, in apply order.
func Render(o Options) ([]*unstructured.Unstructured, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	var out []*unstructured.Unstructured
	for _, f := range files {
		var (
			objs []*unstructured.Unstructured
			err  error
		)
		if f == "" {
			objs, err = CRDs()
		} else {
			objs, err = decodeFile(baseFS, "base/"+f)
		}
		if err != nil {
			return nil, err
		}
		out = append(out, objs...)
	}
	for _, u := range out {
		var err error
		switch u.GetKind() {
		case "Deployment":
			err = edit(u, o.deployment)
		case "Service":
			err = edit(u, o.service)
		}
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// GatewayObjects returns the gateway's Deployment and Service among objs
// (an install as Render returns it, or as an API server echoes it back),
// typed, for whoever checks what an install sets.
func GatewayObjects(objs []*unstructured.Unstructured) (*appsv1.Deployment, *corev1.Service, error) {
	var (
		dep *appsv1.Deployment
		svc *corev1.Service
	)
	for _, u := range objs {
		var err error
		switch {
		case u.GetKind() == "Deployment" && u.GetName() == GatewayName:
			dep = new(appsv1.Deployment)
			err = runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, dep)
		case u.GetKind() == "Service" && u.GetName() == GatewayName:
			svc = new(corev1.Service)
			err = runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, svc)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("decode %s: %w", Key(u), err)
		}
	}
	if dep == nil || svc == nil {
		return nil, nil, fmt.Errorf("no %s Deployment and Service among the objects", GatewayName)
	}
	return dep, svc, nil
}

// CRDs returns the CustomResourceDefinitions of deploy/crds.
func CRDs() ([]*unstructured.Unstructured, error) {
	names, err := fs.Glob(crds.FS, "*.*.yaml")
	if err != nil {
		return nil, fmt.Errorf("crds: %w", err)
	}
	var out []*unstructured.Unstructured
	for _, n := range names {
		objs, err := decodeFile(crds.FS, n)
		if err != nil {
			return nil, err
		}
		out = append(out, objs...)
	}
	return out, nil
}

func (o *Options) validate() error {
	if err := o.validateService(); err != nil {
		return err
	}
	if o.ProbePort == 0 {
		o.ProbePort = 4191
	}
	if o.ProbePort < 1 || o.ProbePort > 65535 {
		return fmt.Errorf("gateway probe port %d: want 1-65535", o.ProbePort)
	}
	if o.IdentitySecret == "" {
		o.IdentitySecret = IdentitySecretName
	}
	if o.ClusterDomain == "" {
		o.ClusterDomain = DefaultClusterDomain
	}
	if errs := validation.IsDNS1123Subdomain(o.ClusterDomain); len(errs) > 0 {
		return fmt.Errorf("cluster domain %q: %s", o.ClusterDomain, strings.Join(errs, "; "))
	}
	return nil
}

func (o *Options) deployment(d *appsv1.Deployment) error {
	spec := &d.Spec.Template.Spec
	c := container(spec)
	if o.Image != "" {
		c.Image = o.Image
	}
	setArg(c, "--cluster-domain", o.ClusterDomain)
	for _, p := range o.AllowIdentities {
		c.Args = append(c.Args, "--allow-identity="+p)
	}
	for i := range spec.Volumes {
		if spec.Volumes[i].Secret != nil && spec.Volumes[i].Name == "identity" {
			spec.Volumes[i].Secret.SecretName = o.IdentitySecret
		}
	}
	if o.HA {
		// The same as deploy/overlays/ha.
		replicas := int32(3)
		d.Spec.Replicas = &replicas
		sel := &metav1.LabelSelector{MatchLabels: d.Spec.Selector.MatchLabels}
		spec.Affinity = &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{
			RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{
				{LabelSelector: sel, TopologyKey: corev1.LabelHostname},
			},
			PreferredDuringSchedulingIgnoredDuringExecution: []corev1.WeightedPodAffinityTerm{
				{Weight: 100, PodAffinityTerm: corev1.PodAffinityTerm{LabelSelector: sel, TopologyKey: corev1.LabelTopologyZone}},
			},
		}}
	}
	return nil
}

// setArg sets the container's --flag=value argument, in place when the
// base manifest has it.
func setArg(c *corev1.Container, flag, value string) {
	for i, a := range c.Args {
		if strings.HasPrefix(a, flag+"=") {
			c.Args[i] = flag + "=" + value
			return
		}
	}
	c.Args = append(c.Args, flag+"="+value)
}

func container(spec *corev1.PodSpec) *corev1.Container {
	for i := range spec.Containers {
		if spec.Containers[i].Name == containerName {
			return &spec.Containers[i]
		}
	}
	return &spec.Containers[0]
}

func (o *Options) service(s *corev1.Service) error {
	if s.Name != GatewayName {
		return nil
	}
	s.Spec.Type = o.ServiceType
	s.Annotations[AnnotationGatewayIdentity] = GatewayIdentity(o.TrustDomain)
	s.Annotations[AnnotationClusterDomain] = o.ClusterDomain
	for k, v := range o.ServiceAnnotations {
		s.Annotations[k] = v
	}
	s.Spec.LoadBalancerSourceRanges = o.LoadBalancerSourceRanges
	s.Spec.ExternalTrafficPolicy = o.ExternalTrafficPolicy
	for i := range s.Spec.Ports {
		p := &s.Spec.Ports[i]
		switch p.Name {
		case PortNameGateway:
			p.NodePort = o.NodePort
		case PortNameProbe:
			p.Port, p.NodePort = o.ProbePort, o.ProbeNodePort
			p.TargetPort = intstr.FromString("probe")
		}
	}
	return nil
}

// edit converts u to T, applies f and converts back, so options are set on
// typed fields rather than on untyped maps.
func edit[T any](u *unstructured.Unstructured, f func(*T) error) error {
	var obj T
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &obj); err != nil {
		return fmt.Errorf("decode %s %s: %w", u.GetKind(), u.GetName(), err)
	}
	if err := f(&obj); err != nil {
		return err
	}
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&obj)
	if err != nil {
		return fmt.Errorf("encode %s %s: %w", u.GetKind(), u.GetName(), err)
	}
	// Typed objects bring empty status and a null creationTimestamp: noise
	// in printed manifests.
	delete(m, "status")
	if md, ok := m["metadata"].(map[string]any); ok {
		delete(md, "creationTimestamp")
	}
	if tpl, found, _ := unstructured.NestedMap(m, "spec", "template", "metadata"); found {
		delete(tpl, "creationTimestamp")
		_ = unstructured.SetNestedMap(m, tpl, "spec", "template", "metadata")
	}
	u.Object = m
	return nil
}

func decodeFile(fsys fs.FS, name string) ([]*unstructured.Unstructured, error) {
	b, err := fs.ReadFile(fsys, name)
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", name, err)
	}
	objs, err := Decode(b)
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", name, err)
	}
	return objs, nil
}

// Decode parses a multi-document YAML (or JSON) stream; a v1 List is
// flattened into its items.
func Decode(b []byte) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
	var out []*unstructured.Unstructured
	for {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return nil, err
		}
		if len(m) == 0 {
			continue
		}
		u := &unstructured.Unstructured{Object: m}
		if u.IsList() {
			l, err := u.ToList()
			if err != nil {
				return nil, err
			}
			for i := range l.Items {
				out = append(out, &l.Items[i])
			}
			continue
		}
		out = append(out, u)
	}
}

// Write prints objs as YAML documents separated by "---", or as one JSON
// v1 List; both are what kubectl apply -f - takes.
func Write(w io.Writer, objs []*unstructured.Unstructured, format string) error {
	switch format {
	case "yaml", "":
		var buf bytes.Buffer
		for i, u := range objs {
			b, err := yaml.Marshal(u.Object)
			if err != nil {
				return fmt.Errorf("yaml %s %s: %w", u.GetKind(), u.GetName(), err)
			}
			if i > 0 {
				buf.WriteString("---\n")
			}
			buf.Write(b)
		}
		_, err := w.Write(buf.Bytes())
		return err
	case "json":
		items := make([]any, len(objs))
		for i, u := range objs {
			items[i] = u.Object
		}
		b, err := json.MarshalIndent(map[string]any{"apiVersion": "v1", "kind": "List", "items": items}, "", "  ")
		if err != nil {
			return fmt.Errorf("json: %w", err)
		}
		_, err = w.Write(append(b, '\n'))
		return err
	default:
		return fmt.Errorf("output format %q: want yaml or json", format)
	}
}

// Key names an object for messages and comparisons: Kind/namespace/name.
func Key(u *unstructured.Unstructured) string {
	return strings.Join([]string{u.GetKind(), u.GetNamespace(), u.GetName()}, "/")
}
