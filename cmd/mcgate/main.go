// Command mcgate is the multicluster gateway (mcgate gateway) and its CLI.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// version is set at build time (-ldflags "-X main.version=…").
var version = "dev"

func main() {
	reexecForSysmon(os.Args[1:], os.Stderr) // see sysmon.go; returns if it does not
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes the CLI and returns the process exit code. SIGTERM and
// SIGINT cancel the context, which makes the gateway drain and exit 0.
func run(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	root := newRootCmd(stdout, stderr)
	root.SetArgs(args)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(stderr, "mcgate:", err)
		return 1
	}
	return 0
}

func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "mcgate",
		Short:         "Layer-4 mTLS multicluster gateway for Kubernetes, with the service mirror built in",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(newGatewayCmd(), newIdentityCmd(), newInstallCmd(), newLinkCmd(), newUnlinkCmd(), newAllowCmd(), newUninstallCmd(), newCheckCmd(), newGatewaysCmd(), &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), "mcgate", version)
		},
	})
	return root
}
