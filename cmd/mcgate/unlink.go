package main

import (
	"errors"

	"github.com/spf13/cobra"

	"github.com/mcgate/mcgate/deploy"
)

func newUnlinkCmd() *cobra.Command {
	var (
		k                  kubeFlags
		cluster, namespace string
		output             string
	)
	cmd := &cobra.Command{
		Use:   "unlink",
		Short: "Print the Link, its Secret and its mirror Services for kubectl delete (run against the source)",
		Long: `Run against the SOURCE cluster:

  mcgate unlink --context west --cluster-name east | kubectl --context west delete -f -`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cluster == "" {
				return errors.New("--cluster-name is required")
			}
			_, client, dyn, err := k.clients()
			if err != nil {
				return err
			}
			objs, err := deploy.Unlink(cmd.Context(), client, dyn, namespace, cluster)
			if err != nil {
				return err
			}
			return deploy.Write(cmd.OutOrStdout(), objs, output)
		},
	}
	f := cmd.Flags()
	k.register(f)
	f.StringVar(&cluster, "cluster-name", "", "the linked cluster to remove (required)")
	f.StringVar(&namespace, "namespace", deploy.Namespace, "namespace of the Link and its Secret")
	f.StringVarP(&output, "output", "o", "yaml", "yaml or json")
	return cmd
}
