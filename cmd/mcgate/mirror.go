package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/spf13/pflag"
	"golang.org/x/sync/errgroup"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/mcgate/mcgate/mirror"
	"github.com/mcgate/mcgate/probe"
	"github.com/mcgate/mcgate/proxy"
)

// mirrorFlags are the Kubernetes-mode flags of `mcgate gateway`.
type mirrorFlags struct {
	kubeconfig     string
	namespace      string
	advertise      []string
	gatewayService string
	egressPorts    string
	egressHost     string
	exportSelector string
	qps            float32
	burst          int
}

func (f *mirrorFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig of this cluster (default: in-cluster config)")
	fs.StringVar(&f.namespace, "namespace", "linkerd-multicluster", "namespace of Links, their credential Secrets and the mirror Lease")
	fs.StringSliceVar(&f.advertise, "advertise-address", nil, "this gateway's address(es) for mirrored EndpointSlices (default $POD_IP; with several replicas leave empty and set --gateway-service)")
	fs.StringVar(&f.gatewayService, "gateway-service", "linkerd-gateway", "this gateway's own Service in --namespace: its ready endpoints are advertised when --advertise-address is empty")
	fs.StringVar(&f.egressPorts, "egress-ports", "4200-5199", "port range of egress listeners for mirrored services")
	fs.StringVar(&f.egressHost, "egress-host", "", "address egress listeners bind (default: all)")
	fs.StringVar(&f.exportSelector, "export-selector", "mirror.linkerd.io/exported=true", "label selector of this cluster's Services reachable through the ingress")
	// Cold start of 2,000 mirrors is about 4,000 applies: at the client-go
	// default of 5 QPS that is 13 minutes; 500 makes it seconds while
	// staying far below the API server's default in-flight limits.
	fs.Float32Var(&f.qps, "kube-api-qps", 500, "queries per second to this cluster's API server")
	fs.IntVar(&f.burst, "kube-api-burst", 1000, "burst of queries to this cluster's API server")
}

// mirrorRuntime is the Kubernetes side of the gateway: the mirror and the
// probes of remote gateways.
type mirrorRuntime struct {
	m      *mirror.Mirror
	probes *probe.Workers
	host   string
}

// newMirror builds the mirror; runMirror runs it.
func newMirror(f mirrorFlags, clusterDomain string, log zerolog.Logger, reg prometheus.Registerer) (*mirrorRuntime, error) {
	rc, err := kubeConfig(f.kubeconfig)
	if err != nil {
		return nil, err
	}
	rc.QPS, rc.Burst, rc.UserAgent = f.qps, f.burst, "mcgate/"+version
	// Protobuf for built-in types: cheaper to decode for informers over
	// thousands of Services and EndpointSlices (the dynamic client for
	// Links switches back to JSON by itself).
	rc.ContentType = "application/vnd.kubernetes.protobuf"
	rc.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kubernetes dynamic client: %w", err)
	}
	sel, err := labels.Parse(f.exportSelector)
	if err != nil {
		return nil, fmt.Errorf("--export-selector: %w", err)
	}
	pr, err := mirror.ParsePortRange(f.egressPorts)
	if err != nil {
		return nil, fmt.Errorf("--egress-ports: %w", err)
	}
	adv := f.advertise
	if len(adv) == 0 && os.Getenv("POD_IP") != "" && f.gatewayService == "" {
		adv = []string{os.Getenv("POD_IP")}
	}
	probes, err := probe.NewWorkers(probe.WorkersConfig{Log: log.With().Str("component", "probe").Logger(), Registerer: reg})
	if err != nil {
		return nil, err
	}
	m, err := mirror.New(mirror.Config{
		Client: client, Dynamic: dyn, Namespace: f.namespace, ExportSelector: sel, EgressPorts: pr,
		AdvertiseAddresses: adv, GatewayService: f.gatewayService, Health: probes,
		Identity: os.Getenv("POD_NAME"), Log: log.With().Str("component", "mirror").Logger(), Registerer: reg,
	})
	if err != nil {
		return nil, err
	}
	_ = clusterDomain // the ingress matches names against it; the mirror needs the remote domains only
	return &mirrorRuntime{m: m, probes: probes, host: f.egressHost}, nil
}

func kubeConfig(path string) (*rest.Config, error) {
	if path == "" {
		rc, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("no --kubeconfig and not in a cluster: %w", err)
		}
		return rc, nil
	}
	rc, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return nil, fmt.Errorf("--kubeconfig: %w", err)
	}
	return rc, nil
}

// Router is the ingress route table for proxy.IngressConfig.Router.
func (r *mirrorRuntime) Router() proxy.Router { return routerAdapter{r.m.Routes()} }

// run runs the probes and the mirror in g until ctx ends, and keeps the
// egress listeners equal to the mirror's egress set.
func (r *mirrorRuntime) run(ctx context.Context, g *errgroup.Group, tlsFor *egressTLS, egress *proxy.EgressSet, log zerolog.Logger) {
	g.Go(func() error { return r.probes.Run(ctx) })
	g.Go(func() error { return r.m.Run(ctx) })
	g.Go(func() error {
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-r.m.EgressChanged():
			}
			routes, err := mirrorEgressRoutes(tlsFor, r.m.Egress(), r.host)
			if err == nil {
				err = egress.Update(routes)
			}
			if err != nil {
				// One bad Link must not stop the others' listeners: log and
				// wait for the next change.
				log.Error().Err(err).Msg("update egress listeners")
			}
		}
	})
}

// mirrorEgressRoutes turns the mirror's egress set into proxy routes. An
// entry with a bad identity is left out (and reported); the others stand.
func mirrorEgressRoutes(tlsFor *egressTLS, entries []mirror.EgressEntry, host string) ([]proxy.EgressRoute, error) {
	var routes []proxy.EgressRoute
	var errs []error
	for _, e := range entries {
		c, _, err := tlsFor.config(e.GatewayIdentity, e.GatewayAddresses)
		if err != nil {
			errs = append(errs, fmt.Errorf("egress port %d (cluster %s): gateway identity: %w", e.Port, e.Cluster, err))
			continue
		}
		routes = append(routes, proxy.EgressRoute{
			Listen: net.JoinHostPort(host, strconv.Itoa(e.Port)), Cluster: e.Cluster,
			GatewayAddresses: e.GatewayAddresses, Target: e.Target, TLS: c,
		})
	}
	return routes, errors.Join(errs...)
}

// routerAdapter gives the mirror's route table the proxy's Router shape and
// error values (mirror does not import proxy).
type routerAdapter struct{ r *mirror.Routes }

func (a routerAdapter) Route(d proxy.Destination) ([]string, error) {
	eps, err := a.r.Route(d.Service, d.Namespace, d.Port)
	switch {
	case err == nil:
		return eps, nil
	case errors.Is(err, mirror.ErrNotExported):
		return nil, proxy.ErrNotExported
	case errors.Is(err, mirror.ErrUnknownPort):
		return nil, proxy.ErrUnknownPort
	case errors.Is(err, mirror.ErrNoEndpoints):
		return nil, proxy.ErrNoEndpoints
	}
	return nil, err
}
