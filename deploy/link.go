package deploy

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/mcgate/mcgate/mirror/multicluster"
)

// LinkOptions are the flags of `mcgate link`, run against the target
// cluster. Empty gateway fields are read from the target's gateway Service.
type LinkOptions struct {
	ClusterName      string // required: the Link's name and the mirrors' suffix
	Namespace        string // of the remote-access ServiceAccount, and of the Link and Secret in the source (default linkerd-multicluster)
	ServiceAccount   string // remote-access ServiceAccount (default RemoteAccessName)
	GatewayName      string // default linkerd-gateway
	GatewayNamespace string // default Namespace
	GatewayAddresses string // comma list of IPs or DNS names
	GatewayPort      int32
	GatewayIdentity  string
	Selector         string // default mirror.linkerd.io/exported=true
	APIServerAddress string // replaces the kubeconfig's server, as seen from the source cluster
	ClusterDomain    string // target's cluster domain (default: what its gateway Service publishes, else cluster.local; see clusterDomain)
	TokenDuration    time.Duration
	CreatedBy        string // linkerd.io/created-by annotation value
	// ExcludedLabels and ExcludedAnnotations are the Link's excludedLabels
	// and excludedAnnotations: remote Service labels and annotations the
	// mirror does not copy ("prefix/*" matches a prefix), as Linkerd's flags.
	ExcludedLabels      []string
	ExcludedAnnotations []string
	// EndpointMode, when set, is the Link's mcgate.io/endpoint-mode
	// annotation (egress or direct; the mirror's default is egress), so
	// that re-linking keeps the mode instead of a hand annotation that
	// `kubectl apply` of a fresh Link would drop.
	EndpointMode string
}

// DefaultTokenDuration is asked of TokenRequest: Linkerd's token Secrets
// never expire, and re-linking to rotate is a deliberate act. The API
// server may cap it (--service-account-max-token-expiration); Link then
// returns a warning with the real expiry.
const DefaultTokenDuration = 10 * 365 * 24 * time.Hour

// LinkResult is what `mcgate link` prints, with warnings for stderr.
type LinkResult struct {
	Objects  []*unstructured.Unstructured // the credentials Secret, then the Link
	Warnings []string
}

// CredentialsSecretName is the Secret a Link for cluster uses.
func CredentialsSecretName(cluster string) string { return "cluster-credentials-" + cluster }

// Link builds the credentials Secret and the Link for the target cluster
// that client and cfg reach (cfg gives the server and CA put in the
// generated kubeconfig).
func Link(ctx context.Context, client kubernetes.Interface, cfg *rest.Config, o LinkOptions) (*LinkResult, error) {
	if errs := validation.IsDNS1123Label(o.ClusterName); len(errs) > 0 {
		return nil, fmt.Errorf("--cluster-name %q: %s", o.ClusterName, strings.Join(errs, "; "))
	}
	o.setDefaults()
	sel, err := metav1.ParseToLabelSelector(o.Selector)
	if err != nil {
		return nil, fmt.Errorf("--selector %q: %w", o.Selector, err)
	}
	res := &LinkResult{}
	spec, err := gatewaySpec(ctx, client, o)
	if err != nil {
		return nil, err
	}
	spec.TargetClusterName = o.ClusterName
	spec.TargetClusterLinkerdNamespace = "linkerd"
	spec.ClusterCredentialsSecret = CredentialsSecretName(o.ClusterName)
	spec.Selector = sel
	spec.ExcludedLabels, spec.ExcludedAnnotations = o.ExcludedLabels, o.ExcludedAnnotations

	token, warn, err := remoteToken(ctx, client, o)
	if err != nil {
		return nil, err
	}
	if warn != "" {
		res.Warnings = append(res.Warnings, warn)
	}
	kubeconfig, err := remoteKubeconfig(cfg, o, token)
	if err != nil {
		return nil, err
	}
	secret := &corev1.Secret{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{Name: spec.ClusterCredentialsSecret, Namespace: o.Namespace, Labels: map[string]string{LabelExtension: ExtensionName, multicluster.LabelClusterName: o.ClusterName}},
		Type:       multicluster.SecretType,
		Data:       map[string][]byte{multicluster.SecretKey: kubeconfig},
	}
	link := &multicluster.Link{
		TypeMeta: metav1.TypeMeta{APIVersion: multicluster.LinkGVR.GroupVersion().String(), Kind: "Link"},
		ObjectMeta: metav1.ObjectMeta{Name: o.ClusterName, Namespace: o.Namespace,
			Labels:      map[string]string{LabelExtension: ExtensionName},
			Annotations: map[string]string{"linkerd.io/created-by": o.CreatedBy}},
		Spec: *spec,
	}
	if o.EndpointMode != "" {
		link.Annotations[multicluster.AnnotationEndpointMode] = o.EndpointMode
	}
	// The mirror is the judge of a valid Link; failing here beats a Link
	// that applies and then sits with Valid=False.
	if _, err := link.Config(); err != nil {
		return nil, fmt.Errorf("the Link would be invalid: %w", err)
	}
	if res.Objects, err = manifests(secret, link); err != nil {
		return nil, err
	}
	return res, nil
}

// setDefaults fills what the flags left empty.
func (o *LinkOptions) setDefaults() {
	def := func(v *string, d string) {
		if *v == "" {
			*v = d
		}
	}
	def(&o.Namespace, Namespace)
	def(&o.ServiceAccount, RemoteAccessName)
	def(&o.GatewayName, GatewayName)
	def(&o.GatewayNamespace, o.Namespace)
	def(&o.Selector, "mirror.linkerd.io/exported=true")
	if o.TokenDuration == 0 {
		o.TokenDuration = DefaultTokenDuration
	}
}

// manifests encodes objs as they are printed for kubectl apply: no status
// and no creation timestamp, which the API server sets.
func manifests(objs ...any) ([]*unstructured.Unstructured, error) {
	var out []*unstructured.Unstructured
	for _, obj := range objs {
		m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
		if err != nil {
			return nil, fmt.Errorf("encode link: %w", err)
		}
		delete(m, "status")
		if md, ok := m["metadata"].(map[string]any); ok {
			delete(md, "creationTimestamp")
		}
		out = append(out, &unstructured.Unstructured{Object: m})
	}
	return out, nil
}

// gatewaySpec fills the gateway and probe fields from the flags, and from
// the target's gateway Service for what the flags leave out.
func gatewaySpec(ctx context.Context, client kubernetes.Interface, o LinkOptions) (*multicluster.LinkSpec, error) {
	spec := &multicluster.LinkSpec{
		GatewayAddress:  o.GatewayAddresses,
		GatewayIdentity: o.GatewayIdentity,
		ProbeSpec:       multicluster.ProbeSpec{Path: "/ready", Port: "4191", Period: "3s"},
	}
	if o.GatewayPort != 0 {
		spec.GatewayPort = strconv.Itoa(int(o.GatewayPort))
	}
	where := o.GatewayNamespace + "/" + o.GatewayName
	svc, err := client.CoreV1().Services(o.GatewayNamespace).Get(ctx, o.GatewayName, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		if spec.GatewayAddress == "" || spec.GatewayIdentity == "" {
			return nil, fmt.Errorf("gateway Service %s not found in the target cluster: install the gateway there (mcgate install | kubectl apply -f -), "+
				"or give --gateway-addresses and --gateway-identity (and --gateway-port if not 4143)", where)
		}
		if spec.GatewayPort == "" {
			spec.GatewayPort = "4143"
		}
		spec.TargetClusterDomain, _ = clusterDomain(nil, where, o.ClusterDomain)
		return spec, nil
	case err != nil:
		return nil, fmt.Errorf("read gateway Service %s: %w", where, err)
	}
	if spec.TargetClusterDomain, err = clusterDomain(svc, where, o.ClusterDomain); err != nil {
		return nil, err
	}
	if spec.GatewayAddress == "" {
		if spec.GatewayAddress, err = ingressAddresses(svc, where); err != nil {
			return nil, err
		}
	}
	if spec.GatewayPort == "" {
		if spec.GatewayPort, err = servicePort(svc, where, PortNameGateway); err != nil {
			return nil, fmt.Errorf("%w (--gateway-port)", err)
		}
	}
	if spec.ProbeSpec.Port, err = servicePort(svc, where, PortNameProbe); err != nil {
		return nil, err
	}
	if spec.GatewayIdentity == "" {
		if spec.GatewayIdentity = svc.Annotations[AnnotationGatewayIdentity]; spec.GatewayIdentity == "" {
			return nil, fmt.Errorf("gateway Service %s has no %s annotation: add it, or give --gateway-identity", where, AnnotationGatewayIdentity)
		}
	}
	if err := probeAnnotations(svc, where, &spec.ProbeSpec); err != nil {
		return nil, err
	}
	return spec, nil
}

// clusterDomain is the Link's targetClusterDomain: given (--cluster-domain),
// else what the gateway Service svc (nil: none) publishes, else
// cluster.local. A given domain the Service contradicts is refused: the
// target's gateway would refuse every connection named in it.
func clusterDomain(svc *corev1.Service, where, given string) (string, error) {
	var annotations map[string]string
	if svc != nil {
		annotations = svc.Annotations
	}
	published, ok := multicluster.GatewayClusterDomain(annotations)
	switch {
	case given == "" && ok:
		return published, nil
	case given == "":
		return DefaultClusterDomain, nil
	case !ok:
		return given, nil
	case !multicluster.SameClusterDomain(given, published):
		return "", fmt.Errorf("--cluster-domain %q disagrees with the target's gateway: Service %s publishes cluster domain %q (annotation %s), "+
			"the only one it serves, so it would refuse every connection of the Link; leave out --cluster-domain to use %q, "+
			"or reinstall the target's gateway with mcgate install --cluster-domain %s",
			given, where, published, AnnotationClusterDomain, published, given)
	}
	return published, nil // the same domain, in its canonical form
}

// ingressAddresses are the load balancer addresses of the gateway Service,
// comma-separated as the Link's gatewayAddress wants them.
func ingressAddresses(svc *corev1.Service, where string) (string, error) {
	var addrs []string
	for _, in := range svc.Status.LoadBalancer.Ingress {
		if in.IP != "" {
			addrs = append(addrs, in.IP)
		} else if in.Hostname != "" {
			addrs = append(addrs, in.Hostname)
		}
	}
	if len(addrs) == 0 {
		hint := "its load balancer has no ingress address yet: wait for one, or give --gateway-addresses"
		if svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
			hint = fmt.Sprintf("it is of type %s: give --gateway-addresses (addresses of nodes or of a load balancer that the source cluster reaches)", svc.Spec.Type)
		}
		return "", fmt.Errorf("gateway Service %s has no ingress addresses: %s", where, hint)
	}
	return strings.Join(addrs, ","), nil
}

// servicePort is the port named name of the gateway Service as the source
// cluster reaches it: a NodePort Service on its node ports, the probe
// included (the probe port of the Link is the mc-probe node port, Linkerd
// #14451).
func servicePort(svc *corev1.Service, where, name string) (string, error) {
	for _, p := range svc.Spec.Ports {
		if p.Name != name {
			continue
		}
		if svc.Spec.Type == corev1.ServiceTypeNodePort {
			if p.NodePort == 0 {
				return "", fmt.Errorf("gateway Service %s: port %s has no node port yet", where, name)
			}
			return strconv.Itoa(int(p.NodePort)), nil
		}
		return strconv.Itoa(int(p.Port)), nil
	}
	return "", fmt.Errorf("gateway Service %s has no port named %s: reinstall it with mcgate install, or give the port with a flag", where, name)
}

// probeAnnotations takes the probe path and period from Linkerd's
// annotations on the gateway Service, where set.
func probeAnnotations(svc *corev1.Service, where string, probe *multicluster.ProbeSpec) error {
	if p := svc.Annotations[AnnotationProbePath]; p != "" {
		probe.Path = p
	}
	if p := svc.Annotations[AnnotationProbePeriod]; p != "" {
		// Linkerd's annotation is in seconds ("3"); the Link wants a duration.
		if _, err := strconv.Atoi(p); err == nil {
			p += "s"
		}
		if _, err := time.ParseDuration(p); err != nil {
			return fmt.Errorf("gateway Service %s: annotation %s=%q is not a number of seconds", where, AnnotationProbePeriod, svc.Annotations[AnnotationProbePeriod])
		}
		probe.Period = p
	}
	return nil
}

// remoteToken asks TokenRequest for a token of the remote-access
// ServiceAccount, falling back to its legacy token Secret.
func remoteToken(ctx context.Context, client kubernetes.Interface, o LinkOptions) (token, warning string, err error) {
	where := o.Namespace + "/" + o.ServiceAccount
	if _, err := client.CoreV1().ServiceAccounts(o.Namespace).Get(ctx, o.ServiceAccount, metav1.GetOptions{}); err != nil {
		if apierrors.IsNotFound(err) {
			return "", "", fmt.Errorf("remote-access ServiceAccount %s not found in the target cluster: run `mcgate install | kubectl apply -f -` there "+
				"(or `mcgate allow --service-account-name %s | kubectl apply -f -`)", where, o.ServiceAccount)
		}
		return "", "", fmt.Errorf("read ServiceAccount %s: %w", where, err)
	}
	secs := int64(o.TokenDuration / time.Second)
	tr, err := client.CoreV1().ServiceAccounts(o.Namespace).CreateToken(ctx, o.ServiceAccount,
		&authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{ExpirationSeconds: &secs}}, metav1.CreateOptions{})
	if err != nil {
		return "", "", fmt.Errorf("request a token for ServiceAccount %s (needs create on serviceaccounts/token): %w", where, err)
	}
	if exp := tr.Status.ExpirationTimestamp.Time; time.Until(exp) < o.TokenDuration-time.Hour {
		warning = fmt.Sprintf("the target's API server limits tokens: the credentials expire at %s; run mcgate link again before then", exp.UTC().Format(time.RFC3339))
	}
	return tr.Status.Token, warning, nil
}

// remoteKubeconfig is a kubeconfig with one context: the target's server
// and CA, authenticated by token.
func remoteKubeconfig(cfg *rest.Config, o LinkOptions, token string) ([]byte, error) {
	server := cfg.Host
	if o.APIServerAddress != "" {
		server = o.APIServerAddress
	}
	if server == "" {
		return nil, errors.New("the target kubeconfig has no server: give --api-server-address")
	}
	ca := cfg.CAData
	if len(ca) == 0 && cfg.CAFile != "" {
		b, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read the target's CA: %w", err)
		}
		ca = b
	}
	c := clientcmdapi.NewConfig()
	c.Clusters[o.ClusterName] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: ca,
		InsecureSkipTLSVerify: cfg.Insecure, TLSServerName: cfg.ServerName}
	c.AuthInfos[o.ServiceAccount] = &clientcmdapi.AuthInfo{Token: token}
	c.Contexts[o.ClusterName] = &clientcmdapi.Context{Cluster: o.ClusterName, AuthInfo: o.ServiceAccount}
	c.CurrentContext = o.ClusterName
	b, err := clientcmd.Write(*c)
	if err != nil {
		return nil, fmt.Errorf("write kubeconfig: %w", err)
	}
	return b, nil
}
