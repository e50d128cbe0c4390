package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"

	"github.com/mcgate/mcgate/deploy"
	"github.com/mcgate/mcgate/identity"
)

// installFlags are install's flags as given, before they become
// deploy.Options.
type installFlags struct {
	o                     deploy.Options
	serviceType           string
	externalTrafficPolicy string
	nodePortRange         string
	annotations           []string
	output                string
	kubeconfig, context   string
}

func newInstallCmd() *cobra.Command {
	var fl installFlags
	cmd := &cobra.Command{
		Use:   "install",
		Short: "Print the manifests of the gateway (mcgate install | kubectl apply -f -)",
		Long: `Print everything the gateway needs in a cluster: namespace linkerd-multicluster,
the Link CRD, the gateway's ServiceAccount and RBAC, the remote-access ServiceAccount
linkerd-service-mirror-remote-access-default that other clusters' links use, and the
linkerd-gateway Deployment, PodDisruptionBudget and Service.

The gateway's identity is the Secret --identity-secret (tls.crt, tls.key, ca.crt), e.g.
  mcgate identity leaf --ca issuer.crt --ca-key issuer.key --anchor ca.crt --out-dir id/
  kubectl -n linkerd-multicluster create secret generic linkerd-gateway-identity --from-file=id/

The image is ` + deploy.ImageRepository + `:<version of this binary>, published for
releases only. A development build warns and needs --image: build and push one with
  make image-push IMAGE_REPO=registry.example/mcgate
  mcgate install --image registry.example/mcgate:<tag>

install prints manifests and does not contact a cluster: --context and --kubeconfig are
accepted, as other commands take them, but choose nothing; give them to kubectl apply.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o, err := fl.options(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			objs, err := deploy.Render(o)
			if err != nil {
				return err
			}
			return deploy.Write(cmd.OutOrStdout(), objs, fl.output)
		},
	}
	f := cmd.Flags()
	o := &fl.o
	f.StringVar(&fl.serviceType, "gateway-service-type", "LoadBalancer", "type of the linkerd-gateway Service: LoadBalancer, NodePort or ClusterIP")
	f.Int32Var(&o.NodePort, "gateway-node-port", 0, "node port of mc-gateway (4143) (NodePort/LoadBalancer; default: the cluster picks)")
	f.Int32Var(&o.ProbeNodePort, "gateway-probe-node-port", 0, "node port of mc-probe (default: the cluster picks); links to a NodePort gateway probe it there")
	f.Int32Var(&o.ProbePort, "gateway-probe-port", 4191, "Service port of mc-probe (the gateway's /ready)")
	f.StringVar(&fl.nodePortRange, "service-node-port-range", deploy.DefaultNodePortRange.String(), "the cluster's kube-apiserver --service-node-port-range, which the node ports must fall in")
	f.StringArrayVar(&fl.annotations, "gateway-service-annotation", nil, "key=value annotation of the linkerd-gateway Service, e.g. a cloud load balancer's settings (repeatable; the value may hold commas)")
	f.StringSliceVar(&o.LoadBalancerSourceRanges, "gateway-load-balancer-source-ranges", nil, "CIDRs the LoadBalancer admits, comma-separated: the linked clusters' egress addresses (default: any source; see SECURITY.md)")
	f.StringVar(&fl.externalTrafficPolicy, "gateway-external-traffic-policy", "", "Cluster or Local (default: the API server's, Cluster). Local keeps client addresses, which the per-source handshake limit needs (SECURITY.md)")
	f.StringArrayVar(&o.AllowIdentities, "allow-identity", nil, "the gateway's --allow-identity: client identity allowed to connect, exact or with a trailing * (repeatable; default: any identity issued under the trust anchor)")
	f.BoolVar(&o.HA, "ha", false, "three replicas on different nodes")
	f.StringVar(&o.IdentitySecret, "identity-secret", deploy.IdentitySecretName, "Secret with the gateway's tls.crt, tls.key and ca.crt")
	f.StringVar(&o.Image, "image", "", "mcgate image (default "+deploy.ImageRepository+":<version>, published for releases only)")
	f.StringVar(&o.TrustDomain, "trust-domain", "cluster.local", "trust domain of the gateway identity advertised on the Service")
	f.StringVar(&o.ClusterDomain, "cluster-domain", deploy.DefaultClusterDomain, "this cluster's DNS domain: the gateway's --cluster-domain, published on its Service (mcgate.io/cluster-domain) for mcgate link and linked clusters' mirrors")
	f.StringVarP(&fl.output, "output", "o", "yaml", "yaml or json")
	f.StringVar(&fl.kubeconfig, "kubeconfig", "", "accepted and unused: install contacts no cluster (give it to kubectl apply)")
	f.StringVar(&fl.context, "context", "", "accepted and unused: install contacts no cluster (give it to kubectl apply)")
	return cmd
}

// options turns the flags into deploy.Options, writing to stderr what the
// user must know: that --context chose nothing, that a development build
// has no published image.
func (fl *installFlags) options(stderr io.Writer) (deploy.Options, error) {
	o := fl.o
	o.ServiceType = corev1.ServiceType(fl.serviceType)
	o.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicy(fl.externalTrafficPolicy)
	var err error
	if o.NodePortRange, err = deploy.ParsePortRange(fl.nodePortRange); err != nil {
		return o, fmt.Errorf("--service-node-port-range: %w", err)
	}
	if o.ServiceAnnotations, err = parseAnnotations(fl.annotations); err != nil {
		return o, err
	}
	// The gateway refuses bad patterns at start; refusing them here keeps
	// the mistake out of a crash-looping pod.
	if _, err := identity.NewAuthorizer(o.AllowIdentities); err != nil {
		return o, fmt.Errorf("--allow-identity: %w", err)
	}
	if fl.kubeconfig != "" || fl.context != "" {
		fmt.Fprintln(stderr, "note: install contacts no cluster, so --context and --kubeconfig choose nothing here; "+
			"give them to kubectl: mcgate install ... | kubectl --context <context> apply -f -")
	}
	if o.Image == "" {
		if o.Image, err = defaultImage(stderr); err != nil {
			return o, err
		}
	}
	return o, nil
}

// parseAnnotations reads key=value pairs, splitting at the first "=" only:
// load-balancer annotation values often hold "=" and ",".
func parseAnnotations(pairs []string) (map[string]string, error) {
	if len(pairs) == 0 {
		return nil, nil
	}
	m := make(map[string]string, len(pairs))
	for _, p := range pairs {
		k, v, ok := strings.Cut(p, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--gateway-service-annotation %q: want key=value", p)
		}
		if old, dup := m[k]; dup && old != v {
			return nil, fmt.Errorf("--gateway-service-annotation %s given twice, as %q and %q", k, old, v)
		}
		m[k] = v
	}
	return m, nil
}

// defaultImage is this binary's own image (deploy.ImageFor). Only releases
// are published, so a development build says so: the pods would sit in
// ImagePullBackOff.
func defaultImage(stderr io.Writer) (string, error) {
	img, err := deploy.ImageFor(version)
	if err != nil {
		return "", fmt.Errorf("no default image for this build: %w; build and push one (make image-push) and give it with --image", err)
	}
	if !deploy.IsRelease(version) {
		fmt.Fprintf(stderr, "warning: mcgate %s is a development build and no image %s is published: "+
			"the gateway pods would not start. Build and push one (make image-push IMAGE_REPO=<registry>/mcgate) "+
			"and pass it with --image <registry>/mcgate:<tag>\n", version, img)
	}
	return img, nil
}
