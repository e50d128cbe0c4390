// Package static reads the gateway's static configuration file: the
// exported services of this cluster (the ingress route table, standing in
// for the Kubernetes mirror) and the egress listeners.
//
//	services:
//	- name: api
//	  namespace: production
//	  ports:
//	  - port: 8080
//	    endpoints: ["127.0.0.1:18080"]
//	egress:
//	- listen: 127.0.0.3:14200
//	  gatewayAddress: 127.0.0.2:4143
//	  gatewayIdentity: linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local
//	  target: api.production.svc.cluster.local:8080
package static

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"

	"go.yaml.in/yaml/v3"

	"github.com/mcgate/mcgate/proxy"
)

// Config is a parsed, validated static file.
type Config struct {
	Services []Service `yaml:"services"`
	Egress   []Egress  `yaml:"egress"`
}

// Service is one exported service of this cluster.
type Service struct {
	Name      string `yaml:"name"`
	Namespace string `yaml:"namespace"`
	Ports     []Port `yaml:"ports"`
	line      int
}

// Port is one exported port and its ready endpoints ("ip:port").
type Port struct {
	Port      int      `yaml:"port"`
	Endpoints []string `yaml:"endpoints"`
	line      int
}

// Egress is one local listener tunnelled to a remote gateway.
type Egress struct {
	Listen string `yaml:"listen"`
	// Cluster names the remote cluster in metrics (default "remote").
	Cluster          string   `yaml:"cluster"`
	GatewayAddress   string   `yaml:"gatewayAddress"`
	GatewayAddresses []string `yaml:"gatewayAddresses"`
	GatewayIdentity  string   `yaml:"gatewayIdentity"`
	Target           string   `yaml:"target"`
	// Mode is "sni" (default: the target in the SNI) or "transport-header"
	// (Linkerd's header, for a stock Linkerd gateway).
	Mode string `yaml:"mode"`
	line int
}

// Addresses returns the gateway addresses of e, single and list forms merged.
func (e Egress) Addresses() []string {
	if e.GatewayAddress == "" {
		return e.GatewayAddresses
	}
	return append([]string{e.GatewayAddress}, e.GatewayAddresses...)
}

// Load reads and validates the file at path.
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("static config: %w", err)
	}
	defer f.Close()
	c, err := Parse(f)
	if err != nil {
		return nil, fmt.Errorf("static config %s: %w", path, err)
	}
	return c, nil
}

// Parse reads and validates a static config. Errors name the line.
func Parse(r io.Reader) (*Config, error) {
	data, err := io.ReadAll(io.LimitReader(r, 16<<20))
	if err != nil {
		return nil, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var c Config
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	c.recordLines(&doc)
	if err := c.validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// recordLines copies the line of each list entry from the parsed node tree
// into c, for validation errors. (A custom UnmarshalYAML would do it too,
// but node.Decode loses the decoder's KnownFields check.)
func (c *Config) recordLines(doc *yaml.Node) {
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return
	}
	root := doc.Content[0]
	for i, n := range entries(root, "services") {
		if i < len(c.Services) {
			c.Services[i].line = n.Line
			for j, p := range entries(n, "ports") {
				if j < len(c.Services[i].Ports) {
					c.Services[i].Ports[j].line = p.Line
				}
			}
		}
	}
	for i, n := range entries(root, "egress") {
		if i < len(c.Egress) {
			c.Egress[i].line = n.Line
		}
	}
}

// entries returns the items of the sequence under key in mapping m.
func entries(m *yaml.Node, key string) []*yaml.Node {
	if m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key && m.Content[i+1].Kind == yaml.SequenceNode {
			return m.Content[i+1].Content
		}
	}
	return nil
}

func (c *Config) validate() error {
	var errs []error
	bad := func(line int, format string, args ...any) {
		errs = append(errs, fmt.Errorf("line %d: %s", line, fmt.Sprintf(format, args...)))
	}
	seen := map[string]int{}
	for _, s := range c.Services {
		if _, err := proxy.ParseServiceName(s.Name+"."+s.Namespace+".svc.x", "x"); err != nil {
			bad(s.line, "service %q in namespace %q: name and namespace must be DNS labels", s.Name, s.Namespace)
		}
		key := s.Namespace + "/" + s.Name
		if prev, dup := seen[key]; dup {
			bad(s.line, "service %s repeats the one at line %d", key, prev)
		}
		seen[key] = s.line
		if len(s.Ports) == 0 {
			bad(s.line, "service %s has no ports", key)
		}
		ports := map[int]bool{}
		for _, p := range s.Ports {
			if p.Port < 1 || p.Port > 65535 {
				bad(p.line, "service %s: port %d out of range 1-65535", key, p.Port)
			}
			if ports[p.Port] {
				bad(p.line, "service %s: port %d listed twice", key, p.Port)
			}
			ports[p.Port] = true
			for _, ep := range p.Endpoints {
				if _, err := netip.ParseAddrPort(ep); err != nil {
					bad(p.line, "service %s port %d: endpoint %q: want ip:port", key, p.Port, ep)
				}
			}
		}
	}
	listens := map[string]int{}
	for _, e := range c.Egress {
		if _, _, err := net.SplitHostPort(e.Listen); err != nil {
			bad(e.line, "egress listen %q: %v", e.Listen, err)
		}
		if prev, dup := listens[e.Listen]; dup {
			bad(e.line, "egress listen %q repeats the one at line %d", e.Listen, prev)
		}
		listens[e.Listen] = e.line
		if len(e.Addresses()) == 0 {
			bad(e.line, "egress %s: gatewayAddress is required", e.Listen)
		}
		for _, a := range e.Addresses() {
			if _, p, err := net.SplitHostPort(a); err != nil {
				bad(e.line, "egress %s: gateway address %q: %v", e.Listen, a, err)
			} else if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
				bad(e.line, "egress %s: gateway address %q: bad port", e.Listen, a)
			}
		}
		if e.GatewayIdentity == "" {
			bad(e.line, "egress %s: gatewayIdentity is required (the remote gateway's identity is always verified)", e.Listen)
		}
		if _, err := proxy.ParseAuthority(e.Target, domainOf(e.Target)); err != nil || !hasPort(e.Target) {
			bad(e.line, "egress %s: target %q: want <svc>.<ns>.svc.<domain>:<port>", e.Listen, e.Target)
		}
		if e.Mode != "" && e.Mode != "sni" && e.Mode != "transport-header" {
			bad(e.line, "egress %s: mode %q: want sni or transport-header", e.Listen, e.Mode)
		}
	}
	return errors.Join(errs...)
}

// domainOf returns what follows ".svc." in a target, so that targets in
// any remote cluster domain validate.
func domainOf(target string) string {
	host, _, _ := net.SplitHostPort(target)
	if i := bytes.Index([]byte(host), []byte(".svc.")); i >= 0 {
		return host[i+len(".svc."):]
	}
	return "invalid."
}

func hasPort(target string) bool {
	_, p, err := net.SplitHostPort(target)
	return err == nil && p != ""
}

// Table is the static route table; it satisfies proxy.Router.
type Table struct {
	routes map[string]map[int][]string // "ns/name" → port → endpoints
}

// Table builds the route table of c's services.
func (c *Config) Table() *Table {
	t := &Table{routes: map[string]map[int][]string{}}
	for _, s := range c.Services {
		ports := map[int][]string{}
		for _, p := range s.Ports {
			ports[p.Port] = p.Endpoints
		}
		t.routes[s.Namespace+"/"+s.Name] = ports
	}
	return t
}

// Route implements proxy.Router.
func (t *Table) Route(d proxy.Destination) ([]string, error) {
	ports, ok := t.routes[d.Namespace+"/"+d.Service]
	if !ok {
		return nil, proxy.ErrNotExported
	}
	var eps []string
	switch {
	case d.Port != 0:
		if eps, ok = ports[d.Port]; !ok {
			return nil, proxy.ErrUnknownPort
		}
	case len(ports) == 1:
		for _, e := range ports {
			eps = e
		}
	default:
		return nil, fmt.Errorf("%w: service has %d ports; name one", proxy.ErrUnknownPort, len(ports))
	}
	if len(eps) == 0 {
		return nil, proxy.ErrNoEndpoints
	}
	return eps, nil
}
