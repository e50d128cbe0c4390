package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/mcgate/mcgate/deploy"
)

func newCheckCmd() *cobra.Command {
	var (
		k         kubeFlags
		cfg       deploy.CheckConfig
		adminAddr string
		output    string
		wait      time.Duration
	)
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Check the multicluster setup of this (source) cluster: Links, credentials, anchors, gateways, mirrors",
		Long: `Checks, in order, with a hint under each failure, and exits non-zero if one fails:
the Link CRD, every Link valid, each Link's credentials reach its cluster and may
get/list/watch services and endpointslices, trust anchors equal (identity Secret ca.crt,
compared with each linked cluster reached through the kubeconfig context of its name),
each Link's gateway alive, every mirror service with ready endpoints, no orphan mirrors,
Links in egress mode where Linkerd's control plane runs (its meshed clients cannot use
those mirrors: README, Meshed clients), the gateway's leaf certificate not ending within
30 days (the leaf in use, from the gateway's metrics, and the one in its identity Secret),
and the local gateway ready (its Deployment, or --admin-addr's /ready). The API server is asked first: unreachable, nothing else runs.

--wait retries the checks until all pass or the duration has passed (Linkerd's default
is 5m; mcgate reports at once unless given). -o short prints only what did not pass,
-o json the shape of linkerd check -o json.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != deploy.CheckTable && output != deploy.CheckShort && output != deploy.CheckJSON {
				return fmt.Errorf("output format %q: want table, short or json", output)
			}
			_, client, dyn, err := k.clients()
			if err != nil {
				return err
			}
			loader, rules := k.loader()
			cfg.Client, cfg.Dynamic, cfg.Remote = client, dyn, deploy.RemoteFromKubeconfig(loader, rules)
			if adminAddr != "" {
				cfg.GatewayReady = func(ctx context.Context) error { return deploy.AdminReady(ctx, adminAddr) }
			}
			var results []deploy.CheckResult
			ok := deploy.Retry(cmd.Context(), wait, deploy.RetryInterval, func(ctx context.Context) bool {
				var ok bool
				results, ok = deploy.Check(ctx, cfg)
				return ok
			})
			if err := deploy.WriteCheckAs(cmd.OutOrStdout(), results, ok, output); err != nil {
				return err
			}
			if !ok {
				return errors.New("check failed")
			}
			return nil
		},
	}
	f := cmd.Flags()
	k.register(f)
	f.StringVar(&cfg.Namespace, "namespace", deploy.Namespace, "namespace of the Links and the gateway")
	f.StringVar(&cfg.IdentitySecret, "identity-secret", deploy.IdentitySecretName, "the gateways' identity Secret (its ca.crt holds the trust anchors)")
	f.StringVar(&adminAddr, "admin-addr", "", "the local gateway's admin address (host:port) to ask /ready, instead of its Deployment's status")
	f.StringVarP(&output, "output", "o", deploy.CheckTable, "table, short or json")
	f.DurationVar(&wait, "wait", 0, "retry failing checks for this long before reporting")
	f.StringVarP(&cfg.LinkerdNamespace, "linkerd-namespace", "L", "linkerd", "namespace of Linkerd's control plane, if it runs here")
	k.registerImpersonation(f)
	linkerdExtensionFlags(f)
	return cmd
}

// linkerdExtensionFlags accepts, and ignores, the flags of `linkerd check`
// that it passes to a linkerd-multicluster executable on the PATH
// (linkerd2 cli/cmd/check.go getExtensionCheckFlags, beside --output=json,
// --wait, --context, --kubeconfig, --as, --as-group and --linkerd-namespace,
// which check has): mcgate linked as linkerd-multicluster answers
// `linkerd check` with its own checks. --api-addr is Linkerd's control
// plane API, which mcgate does not use.
func linkerdExtensionFlags(f *pflag.FlagSet) {
	for _, name := range []string{"verbose", "proxy"} {
		f.Bool(name, false, "ignored: passed by linkerd check")
		_ = f.MarkHidden(name)
	}
	f.String("api-addr", "", "ignored: passed by linkerd check")
	_ = f.MarkHidden("api-addr")
}
