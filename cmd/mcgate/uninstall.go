package main

import (
	"github.com/spf13/cobra"

	"github.com/mcgate/mcgate/deploy"
)

func newUninstallCmd() *cobra.Command {
	var (
		k      kubeFlags
		output string
	)
	cmd := &cobra.Command{
		Use:   "uninstall",
		Short: "Print everything mcgate install created, for kubectl delete; refuses while Links exist",
		Long: `mcgate uninstall | kubectl delete -f -

Refuses while any Link exists (unlink first). The gateway's identity Secret, which you
created, goes with the namespace.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, _, dyn, err := k.clients()
			if err != nil {
				return err
			}
			objs, err := deploy.Uninstall(cmd.Context(), dyn)
			if err != nil {
				return err
			}
			return deploy.Write(cmd.OutOrStdout(), objs, output)
		},
	}
	k.register(cmd.Flags())
	cmd.Flags().StringVarP(&output, "output", "o", "yaml", "yaml or json")
	return cmd
}
