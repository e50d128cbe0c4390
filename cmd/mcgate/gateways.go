package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/mcgate/mcgate/deploy"
)

func newGatewaysCmd() *cobra.Command {
	var (
		k                            kubeFlags
		namespace, adminAddr, output string
		clusterName                  string
		wait                         time.Duration
	)
	cmd := &cobra.Command{
		Use:   "gateways",
		Short: "Show each linked cluster's gateway: alive, mirrored services, probe latency",
		Long: `Run against the SOURCE cluster. Prints CLUSTER ALIVE NUM_SVC LATENCY_P50 LATENCY_P95 LATENCY_P99
from this cluster's Links and mirror Services and its gateway's metrics (gateway_alive,
gateway_probe_latency_ms), read through the API server's pod proxy from the gateway pod
that holds the mirror Lease, or from --admin-addr. --cluster-name shows one linked
cluster; --wait is the time allowed to fetch them (retried until then, as Linkerd's).
Two columns follow Linkerd's: FEDERATED (this cluster's federated Services the linked
cluster is a member of) and EJECTED (its gateway addresses that outlier detection has
taken out of the choice for now); the table output then lists the federated Services
with their member clusters, weights and egress ports.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "table" && output != "json" {
				return fmt.Errorf("output format %q: want table or json", output)
			}
			_, client, dyn, err := k.clients()
			if err != nil {
				return err
			}
			var rows []deploy.GatewayStatus
			deploy.Retry(cmd.Context(), wait, deploy.RetryInterval, func(ctx context.Context) bool {
				rows, err = gateways(ctx, client, dyn, namespace, adminAddr)
				return err == nil
			})
			if err != nil {
				return err
			}
			if rows, err = deploy.FilterGateways(rows, clusterName); err != nil {
				return err
			}
			if output == "table" {
				if err := deploy.WriteGateways(cmd.OutOrStdout(), rows); err != nil {
					return err
				}
				fed, err := deploy.FederatedServices(cmd.Context(), client)
				if err != nil {
					return err
				}
				return deploy.WriteFederated(cmd.OutOrStdout(), fed)
			}
			if rows == nil {
				rows = []deploy.GatewayStatus{}
			}
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent("", "  ")
			return enc.Encode(rows)
		},
	}
	f := cmd.Flags()
	k.register(f)
	f.StringVar(&namespace, "namespace", deploy.Namespace, "namespace of the Links and the gateway")
	f.StringVar(&adminAddr, "admin-addr", "", "read metrics from this gateway admin address (host:port) instead of the pod proxy")
	f.StringVarP(&output, "output", "o", "table", "table or json")
	f.StringVar(&clusterName, "cluster-name", "", "show only the gateway of this linked cluster")
	f.DurationVarP(&wait, "wait", "w", 30*time.Second, "time allowed to fetch the metrics and mirrors (Linkerd's default)")
	return cmd
}

// gateways reads the gateway metrics (pod proxy, or adminAddr) and joins
// them with the Links and mirrors.
func gateways(ctx context.Context, client kubernetes.Interface, dyn dynamic.Interface, namespace, adminAddr string) ([]deploy.GatewayStatus, error) {
	var (
		metrics []byte
		err     error
	)
	if adminAddr != "" {
		metrics, err = deploy.ScrapeAdmin(ctx, adminAddr)
	} else {
		metrics, _, err = deploy.ScrapePod(ctx, client, namespace)
	}
	if err != nil {
		return nil, err
	}
	return deploy.Gateways(ctx, client, dyn, namespace, metrics)
}
