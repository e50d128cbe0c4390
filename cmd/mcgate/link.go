package main

import (
	"fmt"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/mcgate/mcgate/deploy"
)

// kubeFlags are kubectl's --kubeconfig and --context, for the CLI commands
// that talk to a cluster (the gateway daemon has its own --kubeconfig).
type kubeFlags struct {
	kubeconfig, context string
	// as and asGroups impersonate (kubectl's --as, --as-group); only the
	// commands that call registerImpersonation have them.
	as       string
	asGroups []string
}

func (k *kubeFlags) register(f *pflag.FlagSet) {
	f.StringVar(&k.kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
	f.StringVar(&k.context, "context", "", "kubeconfig context (default: the current one)")
}

func (k *kubeFlags) registerImpersonation(f *pflag.FlagSet) {
	f.StringVar(&k.as, "as", "", "username to impersonate")
	f.StringArrayVar(&k.asGroups, "as-group", nil, "group to impersonate (repeatable)")
}

// loader finds the kubeconfig the way kubectl does.
func (k *kubeFlags) loader() (clientcmd.ClientConfig, *clientcmd.ClientConfigLoadingRules) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = k.kubeconfig
	o := &clientcmd.ConfigOverrides{CurrentContext: k.context}
	o.AuthInfo.Impersonate = k.as
	for _, g := range k.asGroups {
		// `linkerd check` passes an empty --as-group to its extensions as
		// the text "[]".
		if g != "" && g != "[]" {
			o.AuthInfo.ImpersonateGroups = append(o.AuthInfo.ImpersonateGroups, g)
		}
	}
	return clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, o), rules
}

// config loads the client config the way kubectl does.
func (k *kubeFlags) config() (*rest.Config, error) {
	l, _ := k.loader()
	cfg, err := l.ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	cfg.UserAgent = "mcgate/" + version
	return cfg, nil
}

func (k *kubeFlags) clients() (*rest.Config, kubernetes.Interface, dynamic.Interface, error) {
	cfg, err := k.config()
	if err != nil {
		return nil, nil, nil, err
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("kubernetes client: %w", err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("kubernetes dynamic client: %w", err)
	}
	return cfg, client, dyn, nil
}

func newLinkCmd() *cobra.Command {
	var (
		k      kubeFlags
		o      deploy.LinkOptions
		output string
	)
	cmd := &cobra.Command{
		Use:     "link",
		Aliases: []string{"link-gen"}, // Linkerd's current name for it
		Short:   "Print the credentials Secret and Link of a target cluster (run against the target, apply to the source)",
		Long: `Run against the TARGET cluster (the one exporting services); apply the output to the SOURCE:

  mcgate link --context east --cluster-name east | kubectl --context west apply -f -

It asks the target for a token of the remote-access ServiceAccount (TokenRequest),
builds a kubeconfig with that token and the target's CA, and prints the Secret
cluster-credentials-<cluster-name> and the Link. Gateway address, port, identity,
probe settings and cluster domain come from the target's linkerd-gateway Service unless
given; with a NodePort Service the gateway and probe ports are its node ports. A
--cluster-domain that the Service's mcgate.io/cluster-domain contradicts is refused.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.ClusterName == "" {
				return fmt.Errorf("--cluster-name is required: the name the source cluster gives the target (mirrors are <svc>-<cluster-name>)")
			}
			cfg, client, _, err := k.clients()
			if err != nil {
				return err
			}
			o.CreatedBy = "mcgate " + version
			o.ClusterDomain = explicitFlag(cmd.Flags(), "cluster-domain")
			res, err := deploy.Link(cmd.Context(), client, cfg, o)
			if err != nil {
				return err
			}
			for _, w := range res.Warnings {
				fmt.Fprintln(cmd.ErrOrStderr(), "warning:", w)
			}
			return deploy.Write(cmd.OutOrStdout(), res.Objects, output)
		},
	}
	f := cmd.Flags()
	k.register(f)
	f.StringVar(&o.ClusterName, "cluster-name", "", "name of the target cluster (required)")
	f.StringVar(&o.Namespace, "namespace", deploy.Namespace, "namespace of the remote-access ServiceAccount, the Link and the Secret")
	f.StringVar(&o.ServiceAccount, "service-account-name", deploy.RemoteAccessName, "remote-access ServiceAccount in the target")
	f.StringVar(&o.GatewayName, "gateway-name", deploy.GatewayName, "gateway Service in the target")
	f.StringVar(&o.GatewayNamespace, "gateway-namespace", "", "namespace of the gateway Service (default --namespace)")
	f.StringVar(&o.GatewayAddresses, "gateway-addresses", "", "comma-separated gateway IPs or DNS names (default: the gateway Service's load balancer)")
	f.Int32Var(&o.GatewayPort, "gateway-port", 0, "gateway port (default: the Service's mc-gateway port, its node port for NodePort)")
	f.StringVar(&o.GatewayIdentity, "gateway-identity", "", "gateway identity (default: the Service's mirror.linkerd.io/gateway-identity)")
	f.StringVarP(&o.Selector, "selector", "l", "mirror.linkerd.io/exported=true", "label selector of the target's Services to mirror")
	f.StringVar(&o.APIServerAddress, "api-server-address", "", "target API server URL as the source cluster reaches it (default: the kubeconfig's)")
	f.StringVar(&o.ClusterDomain, "cluster-domain", "cluster.local", "the target's cluster domain (when not given: the gateway Service's mcgate.io/cluster-domain, else cluster.local)")
	f.DurationVar(&o.TokenDuration, "token-duration", deploy.DefaultTokenDuration, "requested lifetime of the credentials' token")
	f.StringSliceVar(&o.ExcludedLabels, "excluded-labels", nil, "labels of the target's Services not copied to their mirrors (comma-separated; \"prefix/*\" matches a prefix)")
	f.StringSliceVar(&o.ExcludedAnnotations, "excluded-annotations", nil, "annotations of the target's Services not copied to their mirrors (comma-separated; \"prefix/*\" matches a prefix)")
	f.StringVar(&o.EndpointMode, "endpoint-mode", "", "the Link's mcgate.io/endpoint-mode: egress (mirrors point at this gateway, for unmeshed clients; the default) or direct (at the remote gateway, for Linkerd-meshed clients)")
	f.StringVarP(&output, "output", "o", "yaml", "yaml or json")
	return cmd
}

// explicitFlag is the value of the named flag when the user gave it, else
// "": the default shown in help applies only when the cluster says nothing
// better.
func explicitFlag(f *pflag.FlagSet, name string) string {
	if !f.Changed(name) {
		return ""
	}
	return f.Lookup(name).Value.String()
}
