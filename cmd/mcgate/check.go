package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/mcgate/mcgate/deploy"
)

func newCheckCmd() *cobra.Command {
	var (
		k         kubeFlags
		cfg       deploy.CheckConfig
		adminAddr string
	)
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Check the multicluster setup of this (source) cluster: Links, credentials, anchors, gateways, mirrors",
		Long: `Checks, in order, with a hint under each failure, and exits non-zero if one fails:
the Link CRD, every Link valid, each Link's credentials reach its cluster and may
get/list/watch services and endpointslices, trust anchors equal (identity Secret ca.crt,
compared with each linked cluster reached through the kubeconfig context of its name),
each Link's gateway alive, every mirror service with ready endpoints, no orphan mirrors,
and the local gateway ready (its Deployment, or --admin-addr's /ready).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, client, dyn, err := k.clients()
			if err != nil {
				return err
			}
			loader, rules := k.loader()
			cfg.Client, cfg.Dynamic, cfg.Remote = client, dyn, deploy.RemoteFromKubeconfig(loader, rules)
			if adminAddr != "" {
				cfg.GatewayReady = func(ctx context.Context) error { return deploy.AdminReady(ctx, adminAddr) }
			}
			results, ok := deploy.Check(cmd.Context(), cfg)
			if err := deploy.WriteCheck(cmd.OutOrStdout(), results); err != nil {
				return err
			}
			if !ok {
				return errors.New("check failed")
			}
			fmt.Fprintln(cmd.OutOrStdout(), "\nStatus check results are √")
			return nil
		},
	}
	f := cmd.Flags()
	k.register(f)
	f.StringVar(&cfg.Namespace, "namespace", deploy.Namespace, "namespace of the Links and the gateway")
	f.StringVar(&cfg.IdentitySecret, "identity-secret", deploy.IdentitySecretName, "the gateways' identity Secret (its ca.crt holds the trust anchors)")
	f.StringVar(&adminAddr, "admin-addr", "", "the local gateway's admin address (host:port) to ask /ready, instead of its Deployment's status")
	return cmd
}
