package main

import (
	"errors"

	"github.com/spf13/cobra"

	"github.com/mcgate/mcgate/deploy"
)

func newAllowCmd() *cobra.Command {
	var sa, output string
	cmd := &cobra.Command{
		Use:   "allow",
		Short: "Print read-only remote-access RBAC for another ServiceAccount (apply to the target cluster)",
		Long: `Print the namespace linkerd-multicluster and a ServiceAccount, ClusterRole and
ClusterRoleBinding with the remote-access rights of linkerd-service-mirror-remote-access-default
(get/list/watch services, endpoints, endpointslices, namespaces; create/patch events;
get the ConfigMap linkerd-config), for one source cluster to use its own credentials:
mcgate link --service-account-name <name>. Like linkerd multicluster allow, it also prints
the Secret <name>-token of type kubernetes.io/service-account-token, which the cluster's
token controller fills in and linkerd multicluster link-gen --service-account-name <name> reads.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if sa == "" {
				return errors.New("--service-account-name is required")
			}
			objs, err := deploy.RemoteAccess(sa)
			if err != nil {
				return err
			}
			return deploy.Write(cmd.OutOrStdout(), objs, output)
		},
	}
	cmd.Flags().StringVar(&sa, "service-account-name", "", "name of the ServiceAccount to create (required)")
	cmd.Flags().StringVarP(&output, "output", "o", "yaml", "yaml or json")
	return cmd
}
