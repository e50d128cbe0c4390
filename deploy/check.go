package deploy

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/mcgate/mcgate/internal/kubeconfig"
	"github.com/mcgate/mcgate/mirror/multicluster"
)

// CheckConfig is what `mcgate check` runs with, against the source cluster.
type CheckConfig struct {
	Client    kubernetes.Interface
	Dynamic   dynamic.Interface
	Namespace string // default linkerd-multicluster
	// IdentitySecret holds the gateways' ca.crt in every cluster (default
	// linkerd-gateway-identity).
	IdentitySecret string
	// Remote gives admin access to a linked cluster, to read its trust
	// anchors; nil or an error skips that comparison with a warning (the
	// Link's own credentials may not read Secrets, by design).
	Remote func(cluster string) (kubernetes.Interface, error)
	// GatewayReady asks the local gateway's /ready; nil checks the
	// Deployment's available replicas instead.
	GatewayReady func(ctx context.Context) error
	// LinkerdNamespace is where Linkerd's control plane would run (default
	// linkerd): its presence makes egress-mode Links a warning.
	LinkerdNamespace string
}

// CheckResult is one line of `mcgate check`.
type CheckResult struct {
	Name    string
	OK      bool
	Warning bool   // not OK, but not a failure
	Detail  string // why it failed, naming the object
	Hint    string // what to do
}

// Check runs every check in order; a check whose prerequisite failed is
// not run. It returns whether all passed (warnings pass).
func Check(ctx context.Context, cfg CheckConfig) ([]CheckResult, bool) {
	if cfg.Namespace == "" {
		cfg.Namespace = Namespace
	}
	if cfg.IdentitySecret == "" {
		cfg.IdentitySecret = IdentitySecretName
	}
	if cfg.LinkerdNamespace == "" {
		cfg.LinkerdNamespace = linkerdNamespace
	}
	c := &checker{cfg: cfg}
	c.run(ctx)
	ok := true
	for _, r := range c.results {
		ok = ok && (r.OK || r.Warning)
	}
	return c.results, ok
}

type checker struct {
	cfg     CheckConfig
	results []CheckResult
	links   []*multicluster.Link
	local   *localIdentity // nil until read
}

// localIdentity is the outcome of reading this cluster's identity Secret.
type localIdentity struct {
	secret *corev1.Secret
	err    error
}

func (c *checker) add(name string, err error, hint string) bool {
	r := CheckResult{Name: name, OK: err == nil}
	if err != nil {
		r.Detail, r.Hint = err.Error(), hint
	}
	c.results = append(c.results, r)
	return err == nil
}

func (c *checker) warn(name, detail, hint string) {
	c.results = append(c.results, CheckResult{Name: name, Warning: true, Detail: detail, Hint: hint})
}

// many joins one error per failing object.
func many(errs []string) error {
	if len(errs) == 0 {
		return nil
	}
	return errors.New(strings.Join(errs, "\n"))
}

func (c *checker) run(ctx context.Context) {
	ns := c.cfg.Namespace
	// Without this, an unreachable API server shows as "Link CRD missing".
	if !c.add("the Kubernetes API is reachable", apiReachable(c.cfg.Client),
		"check the kubeconfig's server and context (kubectl --context <ctx> version), the VPN or the tunnel to it") {
		return
	}
	list, err := c.cfg.Dynamic.Resource(multicluster.LinkGVR).Namespace(ns).List(ctx, metav1.ListOptions{})
	if !c.add("Link CRD exists", err, "install it: mcgate install | kubectl apply -f - (or kubectl apply -f deploy/crds)") {
		return
	}
	var bad []string
	for i := range list.Items {
		l, err := multicluster.LinkFromUnstructured(&list.Items[i])
		if err == nil {
			_, err = l.Config()
		}
		if err != nil {
			bad = append(bad, fmt.Sprintf("Link %s/%s: %v", list.Items[i].GetNamespace(), list.Items[i].GetName(), err))
			continue
		}
		c.links = append(c.links, l)
	}
	c.add("Link resources are valid", many(bad), "regenerate the Link: mcgate link --context <target> --cluster-name <name> | kubectl apply -f -")

	c.checkCredentials(ctx)
	c.checkAnchors(ctx)
	c.checkAlive()
	c.checkMirrors(ctx)
	c.checkFederated(ctx)
	c.checkMeshedClients(ctx)
	c.checkLocalGateway(ctx)
	c.checkLeafExpiry(ctx)
}

// apiReachable asks the API server for its version: any answer, even a
// refusal, means it is reachable; only a transport failure means it is not.
func apiReachable(client kubernetes.Interface) error {
	_, err := client.Discovery().ServerVersion()
	var status apierrors.APIStatus
	switch {
	case err == nil:
		return nil
	case errors.As(err, &status) && apierrors.IsUnauthorized(err):
		return fmt.Errorf("the API server rejects the kubeconfig's credentials: %w", err)
	case errors.As(err, &status):
		return nil // it answered
	}
	return fmt.Errorf("the API server is unreachable: %w", err)
}

func (c *checker) checkCredentials(ctx context.Context) {
	var bad []string
	for _, l := range c.links {
		if err := c.credentials(ctx, l); err != nil {
			bad = append(bad, fmt.Sprintf("Link %s: %v", l.Name, err))
		}
	}
	c.add("remote cluster access credentials are valid", many(bad),
		"re-link to get fresh credentials: mcgate link --context <target> --cluster-name <name> | kubectl apply -f -; "+
			"the remote-access ServiceAccount must exist in the target (mcgate install there)")
}

func (c *checker) credentials(ctx context.Context, l *multicluster.Link) error {
	s, err := c.cfg.Client.CoreV1().Secrets(l.Namespace).Get(ctx, l.Spec.ClusterCredentialsSecret, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("secret %s: %w", l.Spec.ClusterCredentialsSecret, err)
	}
	if s.Type != multicluster.SecretType {
		return fmt.Errorf("secret %s is of type %s, want %s", s.Name, s.Type, multicluster.SecretType)
	}
	// The Secret is data from a cluster: whoever may write it must not get a
	// command run (exec plugin) or a local file read (token or key paths) on
	// the operator's machine. The gateway loads it through the same loader.
	rc, err := kubeconfig.RESTConfig(s.Data[multicluster.SecretKey])
	if err != nil {
		return fmt.Errorf("secret %s: key %s is refused: %w", s.Name, multicluster.SecretKey, err)
	}
	rc.Timeout = 10 * time.Second
	remote, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	if _, err := remote.Discovery().ServerVersion(); err != nil {
		if apierrors.IsUnauthorized(err) {
			return fmt.Errorf("the target API server %s rejects the token (expired, or its ServiceAccount was re-created): %w", rc.Host, err)
		}
		return fmt.Errorf("cannot reach the target API server %s: %w", rc.Host, err)
	}
	for _, verb := range []string{"get", "list", "watch"} {
		for _, res := range []struct{ group, resource string }{{"", "services"}, {"discovery.k8s.io", "endpointslices"}} {
			r, err := remote.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authzv1.SelfSubjectAccessReview{
				Spec: authzv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authzv1.ResourceAttributes{
					Verb: verb, Group: res.group, Resource: res.resource}}}, metav1.CreateOptions{})
			if err != nil {
				return fmt.Errorf("access review on the target: %w", err)
			}
			if !r.Status.Allowed {
				return fmt.Errorf("the credentials may not %s %s in the target", verb, res.resource)
			}
		}
	}
	return nil
}

// checkAnchors compares the ca.crt of this cluster's identity Secret with
// each linked cluster's: a gateway accepts only peers under its anchors.
func (c *checker) checkAnchors(ctx context.Context) {
	const name = "clusters share trust anchors"
	s, err := c.localIdentity(ctx)
	var local []string
	if err == nil {
		local, err = anchorsOf(s)
	}
	if err != nil {
		c.add(name, fmt.Errorf("this cluster: %w", err), "create it: kubectl -n "+c.cfg.Namespace+" create secret generic "+c.cfg.IdentitySecret+" --from-file=<dir of mcgate identity leaf>")
		return
	}
	var bad, skipped []string
	for _, l := range c.links {
		var client kubernetes.Interface
		if c.cfg.Remote != nil {
			client, err = c.cfg.Remote(l.Spec.TargetClusterName)
		} else {
			err = errors.New("no access configured")
		}
		if err != nil {
			skipped = append(skipped, fmt.Sprintf("%s (%v)", l.Spec.TargetClusterName, err))
			continue
		}
		s, err := c.identitySecret(ctx, client)
		var remote []string
		if err == nil {
			remote, err = anchorsOf(s)
		}
		switch {
		case err != nil:
			bad = append(bad, fmt.Sprintf("cluster %s: %v", l.Spec.TargetClusterName, err))
		case !slices.Equal(local, remote):
			bad = append(bad, fmt.Sprintf("cluster %s: ca.crt of %s/%s differs from this cluster's", l.Spec.TargetClusterName, c.cfg.Namespace, c.cfg.IdentitySecret))
		}
	}
	if len(bad) == 0 && len(skipped) > 0 {
		c.warn(name, "not compared for "+strings.Join(skipped, ", "), "name a kubeconfig context after the linked cluster to compare its anchors")
		return
	}
	c.add(name, many(bad), "issue every cluster's gateway identity under the same trust anchor (mcgate identity issuer/leaf with the shared ca.crt)")
}

// identitySecret reads the identity Secret of the cluster of client.
func (c *checker) identitySecret(ctx context.Context, client kubernetes.Interface) (*corev1.Secret, error) {
	s, err := client.CoreV1().Secrets(c.cfg.Namespace).Get(ctx, c.cfg.IdentitySecret, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("identity secret %s/%s: %w", c.cfg.Namespace, c.cfg.IdentitySecret, err)
	}
	return s, nil
}

// localIdentity is this cluster's identity Secret, read once per run: the
// anchor and the leaf checks both look at it.
func (c *checker) localIdentity(ctx context.Context) (*corev1.Secret, error) {
	if c.local == nil {
		s, err := c.identitySecret(ctx, c.cfg.Client)
		c.local = &localIdentity{s, err}
	}
	return c.local.secret, c.local.err
}

// anchorsOf returns the sorted DER certificates of an identity Secret's ca.crt.
func anchorsOf(s *corev1.Secret) ([]string, error) {
	rest := s.Data["ca.crt"]
	var out []string
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if _, err := x509.ParseCertificate(b.Bytes); err != nil {
			return nil, fmt.Errorf("identity secret %s: ca.crt: %w", s.Name, err)
		}
		out = append(out, string(b.Bytes))
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("identity secret %s has no certificate in ca.crt", s.Name)
	}
	slices.Sort(out)
	return out, nil
}

// checkAlive reads the GatewayAlive condition the leading gateway writes
// on each Link from its probes.
func (c *checker) checkAlive() {
	var bad []string
	for _, l := range c.links {
		if l.Spec.GatewayAddress == "" || l.Spec.ProbeSpec.Path == "" {
			continue
		}
		cond := meta.FindStatusCondition(l.Status.Conditions, multicluster.ConditionGatewayAlive)
		switch {
		case cond == nil:
			bad = append(bad, fmt.Sprintf("Link %s: no gateway has probed %s yet (is this cluster's gateway running?)", l.Name, l.Spec.GatewayAddress))
		case cond.Status != metav1.ConditionTrue:
			bad = append(bad, fmt.Sprintf("Link %s: gateway %s:%s is not alive: %s", l.Name, l.Spec.GatewayAddress, l.Spec.ProbeSpec.Port, cond.Message))
		}
	}
	c.add("gateways of all Links are alive", many(bad),
		"from the operator's machine: curl http://<gateway>:<probe port>/ready and nc -zv <gateway> <gateway port> (the Link's spec); "+
			"in the target: kubectl -n linkerd-multicluster logs deploy/linkerd-gateway, and its refusals: "+
			"kubectl get --raw /api/v1/namespaces/linkerd-multicluster/pods/<gateway pod>:4191/proxy/metrics | grep refused")
}

func (c *checker) checkMirrors(ctx context.Context) {
	svcs, err := c.cfg.Client.CoreV1().Services("").List(ctx, metav1.ListOptions{LabelSelector: multicluster.LabelMirroredService + "=true"})
	if !c.add("mirror services can be listed", err, "kubectl auth can-i list services --all-namespaces") {
		return
	}
	linked := map[string]bool{}
	for _, l := range c.links {
		linked[l.Spec.TargetClusterName] = true
	}
	var empty, orphans []string
	for _, s := range svcs.Items {
		cluster := s.Labels[multicluster.LabelClusterName]
		if !linked[cluster] {
			orphans = append(orphans, fmt.Sprintf("%s/%s (cluster %q)", s.Namespace, s.Name, cluster))
			continue
		}
		n, err := readyEndpoints(ctx, c.cfg.Client, &s)
		if err != nil {
			empty = append(empty, fmt.Sprintf("%s/%s: %v", s.Namespace, s.Name, err))
			continue
		}
		if n == 0 {
			empty = append(empty, fmt.Sprintf("%s/%s has no ready endpoints", s.Namespace, s.Name))
		}
	}
	c.add("all mirror services have endpoints", many(empty),
		"the remote service has no ready pods, or its cluster's gateway is dead (see above); check in the target: kubectl get endpointslices -l kubernetes.io/service-name=<svc>")
	c.add("all mirror services are part of a Link", many(orphans),
		"delete them (kubectl delete svc), or re-create their Link; a running gateway removes orphans when it starts")
}

func readyEndpoints(ctx context.Context, client kubernetes.Interface, s *corev1.Service) (int, error) {
	list, err := client.DiscoveryV1().EndpointSlices(s.Namespace).List(ctx, metav1.ListOptions{LabelSelector: "kubernetes.io/service-name=" + s.Name})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, sl := range list.Items {
		for _, e := range sl.Endpoints {
			if e.Conditions.Ready == nil || *e.Conditions.Ready {
				n++
			}
		}
	}
	return n, nil
}

func (c *checker) checkLocalGateway(ctx context.Context) {
	const name = "the local gateway is ready"
	if c.cfg.GatewayReady != nil {
		c.add(name, c.cfg.GatewayReady(ctx), "kubectl -n "+c.cfg.Namespace+" logs deploy/linkerd-gateway; "+
			"kubectl get --raw /api/v1/namespaces/"+c.cfg.Namespace+"/pods/<gateway pod>:4191/proxy/ready")
		return
	}
	d, err := c.cfg.Client.AppsV1().Deployments(c.cfg.Namespace).Get(ctx, GatewayName, metav1.GetOptions{})
	if err == nil && d.Status.AvailableReplicas < 1 {
		err = fmt.Errorf("deployment %s/%s has no available replica (%d desired)", c.cfg.Namespace, GatewayName, d.Status.Replicas)
	} else if apierrors.IsNotFound(err) {
		err = fmt.Errorf("deployment %s/%s not found", c.cfg.Namespace, GatewayName)
	}
	c.add(name, err, "mcgate install | kubectl apply -f -; then kubectl -n "+c.cfg.Namespace+" describe deploy/linkerd-gateway and logs")
}

// WriteCheck prints results as `linkerd check` does: √, × or ‼ per line,
// the detail and a hint under a failure.
func WriteCheck(w io.Writer, results []CheckResult) error {
	var b bytes.Buffer
	b.WriteString("mcgate multicluster\n-------------------\n")
	for _, r := range results {
		mark := "√"
		switch {
		case r.Warning:
			mark = "‼"
		case !r.OK:
			mark = "×"
		}
		fmt.Fprintf(&b, "%s %s\n", mark, r.Name)
		if r.Detail != "" {
			for _, line := range strings.Split(r.Detail, "\n") {
				fmt.Fprintf(&b, "    %s\n", line)
			}
			fmt.Fprintf(&b, "    hint: %s\n", r.Hint)
		}
	}
	_, err := w.Write(b.Bytes())
	return err
}

// RemoteFromKubeconfig gives Remote for CheckConfig: a linked cluster is
// reached through the kubeconfig context of the same name, if any.
func RemoteFromKubeconfig(loader clientcmd.ClientConfig, rules *clientcmd.ClientConfigLoadingRules) func(string) (kubernetes.Interface, error) {
	return func(cluster string) (kubernetes.Interface, error) {
		raw, err := loader.RawConfig()
		if err != nil {
			return nil, err
		}
		if _, ok := raw.Contexts[cluster]; !ok {
			return nil, fmt.Errorf("no kubeconfig context %q", cluster)
		}
		rc, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: cluster}).ClientConfig()
		if err != nil {
			return nil, err
		}
		return kubernetes.NewForConfig(rc)
	}
}
