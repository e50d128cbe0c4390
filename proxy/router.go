package proxy

import "errors"

// Destination names the service port an ingress connection asks for, as
// parsed from the transport header, the SNI or the HTTP authority.
type Destination struct {
	Service   string
	Namespace string
	// Port is the service port. Zero means "the service's only port"
	// (SNI of the form <svc>.<ns>.svc.<domain>, or an authority without a port).
	Port int
}

// Router resolves a destination to the ready endpoints ("ip:port") of an
// exported service of this cluster. It is defined here, by its consumer;
// the static file (internal/static) and the Kubernetes mirror satisfy it.
// Route must be safe for concurrent use and must not block on I/O.
type Router interface {
	Route(d Destination) (endpoints []string, err error)
}

// Errors a Router returns; the proxy maps each to a refusal reason.
var (
	// ErrNotExported: no exported service of that name (deny by default).
	ErrNotExported = errors.New("service is not exported")
	// ErrUnknownPort: the service is exported but not on that port, or Port
	// was zero and the service has more than one port.
	ErrUnknownPort = errors.New("service port is not exported")
	// ErrNoEndpoints: exported, but no ready endpoint right now.
	ErrNoEndpoints = errors.New("service has no ready endpoints")
)
