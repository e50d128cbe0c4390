// Package multicluster is the Link resource (multicluster.linkerd.io) and
// the names around it that other tools read: the Link's types, decoding and
// validation, the credentials Secret, the mirror labels and the mirror
// Lease. It is what `mcgate link`, `check` and `gateways` (package deploy)
// share with the mirror, without the mirror's controller.
package multicluster

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// LeaseName is the Lease (in the Links' namespace) that elects the one
// gateway replica allowed to write mirrors. One Lease per gateway
// Deployment rather than Linkerd's one per Link: every Link is served by
// the same process. The name contains "service-mirror-write" so tools that
// look for Linkerd's service-mirror-write-* holders find ours.
const LeaseName = "mcgate-service-mirror-write"

// SecretType and SecretKey locate a Link's remote kubeconfig (Linkerd's).
const (
	SecretType = "mirror.linkerd.io/remote-kubeconfig"
	SecretKey  = "kubeconfig"
)

// Labels and annotations of mirror Services shared with Linkerd
// (pkg/k8s/labels.go there).
const (
	LabelMirroredService    = "mirror.linkerd.io/mirrored-service"
	LabelClusterName        = "mirror.linkerd.io/cluster-name"
	AnnotationRemoteFQName  = "mirror.linkerd.io/remote-svc-fq-name"
	AnnotationRemoteVersion = "mirror.linkerd.io/remote-resource-version"
	AnnotationRemoteSvcName = "mirror.linkerd.io/remote-svc-name"
	AnnotationGatewayID     = "mirror.linkerd.io/remote-gateway-identity"
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

// HolderIdentity is the identity a gateway replica holds the Lease under:
// its pod (or host) name, for people to read, and a part random per
// process, so that two replicas of one name (a host name shared by
// processes, a pod name reused) never both believe the Lease is theirs.
// Pod and host names hold no "_", which separates the two parts.
func HolderIdentity(name string) (string, error) {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("lease holder identity: %w", err)
	}
	return name + "_" + hex.EncodeToString(b), nil
}

// HolderName is the pod or host name part of a Lease holder identity (all
// of it when it has no random part, e.g. written by an older gateway).
func HolderName(identity string) string {
	if i := strings.LastIndexByte(identity, '_'); i >= 0 {
		return identity[:i]
	}
	return identity
}
