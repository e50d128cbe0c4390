package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/mcgate/mcgate/deploy"
)

func newGatewaysCmd() *cobra.Command {
	var (
		k                            kubeFlags
		namespace, adminAddr, output string
	)
	cmd := &cobra.Command{
		Use:   "gateways",
		Short: "Show each linked cluster's gateway: alive, mirrored services, probe latency",
		Long: `Run against the SOURCE cluster. Prints CLUSTER ALIVE NUM_SVC LATENCY_P50 LATENCY_P95 LATENCY_P99
from this cluster's Links and mirror Services and its gateway's metrics (gateway_alive,
gateway_probe_latency_ms), read through the API server's pod proxy from the gateway pod
that holds the mirror Lease, or from --admin-addr.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "table" && output != "json" {
				return fmt.Errorf("output format %q: want table or json", output)
			}
			_, client, dyn, err := k.clients()
			if err != nil {
				return err
			}
			var metrics []byte
			if adminAddr != "" {
				metrics, err = deploy.ScrapeAdmin(cmd.Context(), adminAddr)
			} else {
				metrics, _, err = deploy.ScrapePod(cmd.Context(), client, namespace)
			}
			if err != nil {
				return err
			}
			rows, err := deploy.Gateways(cmd.Context(), client, dyn, namespace, metrics)
			if err != nil {
				return err
			}
			if output == "table" {
				return deploy.WriteGateways(cmd.OutOrStdout(), rows)
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
	return cmd
}
