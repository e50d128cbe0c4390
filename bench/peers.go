package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
)

// The peers, each with a config written here: mTLS required, client chains
// verified against the same ca.crt (depth ≥ 2: the client sends leaf+issuer),
// TLS 1.3 only, SNI routing where the peer can do it. On the egress side a
// peer that cannot send one SNI and verify another name (nginx, ghostunnel,
// caddy, HAProxy) sends the gateway identity as SNI and is routed by port.

func writeConfig(e *env, name, content string) (string, error) {
	path := filepath.Join(e.work, name)
	return path, os.WriteFile(path, []byte(content), 0o644)
}

const portRouted = "egress sends SNI = gateway identity (verified), ingress routes by port"

func port(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

// startCfg writes a peer's config and starts it with args then the config's
// path, ready once addrs accept connections.
func startCfg(e *env, name, bin, file, cfg string, args []string, addrs ...string) ([]*proc, error) {
	path, err := writeConfig(e, file, cfg)
	if err != nil {
		return nil, err
	}
	return ready(e.start(name, bin, nil, append(args, path)...))(addrs...)
}

func lookBin(name string) error {
	_, err := exec.LookPath(name)
	return err
}

func haproxySystem() *system {
	in, inEcho, inDiscard := ingressAddr(5201), ingressAddr(5202), ingressAddr(5203)
	global := func(e *env) string {
		return fmt.Sprintf(`global
  maxconn %d
  nbthread %d
  ssl-default-bind-ciphersuites TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256
  ssl-default-server-ciphersuites TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256
defaults
  mode tcp
  timeout connect 5s
  timeout client 1h
  timeout server 1h
`, maxIdleConns(e.nofile), e.threads)
	}
	ingress := func(e *env) ([]*proc, error) {
		bind := fmt.Sprintf("ssl crt %s ca-file %s verify required ssl-min-ver TLSv1.3 curves X25519", e.pki.Gateway.Bundle, e.pki.Gateway.CA)
		cfg := global(e) + fmt.Sprintf(`frontend gw
  bind %s %s
  bind %s %s
  bind %s %s
  use_backend echo if { ssl_fc_sni -i %s } || { dst_port %s }
  use_backend discard if { ssl_fc_sni -i %s } || { dst_port %s }
backend echo
  server s %s
backend discard
  server s %s
`, in, bind, inEcho, bind, inDiscard, bind, echoSNI, port(inEcho), discardSNI, port(inDiscard), echoAddr(), discardAddr())
		return startCfg(e, "haproxy", "haproxy", "haproxy.cfg", cfg, []string{"-db", "-f"}, in, inEcho, inDiscard)
	}
	egress := haproxyEgress(global, inEcho, inDiscard)
	return &system{
		name:    "haproxy",
		check:   func(*env) error { return lookBin("haproxy") },
		ingress: func(e *env) (*instance, error) { return sniInstance(in)(ingress(e)) },
		tunnel: func(e *env) (*instance, error) {
			return pair(e, ingress, egress, egressAddr(5301), egressAddr(5302), portRouted)
		},
	}
}

func haproxyEgress(global func(*env) string, inEcho, inDiscard string) func(*env) ([]*proc, error) {
	return func(e *env) ([]*proc, error) {
		// HAProxy verifies the server against the SNI it sends (verifyhost
		// applies only without SNI), so it sends the gateway's name.
		cfg := global(e)
		for i, s := range [][2]string{{egressAddr(5301), inEcho}, {egressAddr(5302), inDiscard}} {
			cfg += fmt.Sprintf(`frontend eg%d
  bind %s
  default_backend gw%d
backend gw%d
  server gw %s ssl crt %s ca-file %s verify required sni str(%s) ssl-min-ver TLSv1.3
`, i, s[0], i, i, s[1], e.pki.Client.Bundle, e.pki.Client.CA, gwIdentity)
		}
		return startCfg(e, "haproxy-egress", "haproxy", "haproxy-egress.cfg", cfg, []string{"-db", "-f"}, egressAddr(5301), egressAddr(5302))
	}
}

const nginxStreamModule = "/usr/lib/nginx/modules/ngx_stream_module.so"

func nginxSystem() *system {
	in, inEcho, inDiscard := ingressAddr(5401), ingressAddr(5402), ingressAddr(5403)
	run := func(e *env, name, servers string, addrs ...string) ([]*proc, error) {
		cfg := fmt.Sprintf(`load_module %s;
daemon off;
master_process on;
worker_processes %d;
worker_rlimit_nofile %d;
pid %s/%s.pid;
error_log %s/%s.err warn;
events { worker_connections %d; multi_accept on; }
stream {
%s}
`, nginxStreamModule, e.threads, e.nofile, e.work, name, e.work, name, e.nofile-64, servers)
		return startCfg(e, name, "nginx", name+".conf", cfg, []string{"-p", e.work, "-e", filepath.Join(e.work, name+".err"), "-c"}, addrs...)
	}
	tlsIn := fmt.Sprintf(`    ssl_certificate %s;
    ssl_certificate_key %s;
    ssl_client_certificate %s;
    ssl_verify_client on;
    ssl_verify_depth 3;
    ssl_protocols TLSv1.3;
    ssl_ecdh_curve X25519;
    ssl_session_cache shared:bench:20m;
    ssl_session_tickets on;
`, "%[1]s", "%[2]s", "%[3]s")
	ingress := func(e *env) ([]*proc, error) {
		t := fmt.Sprintf(tlsIn, e.pki.Gateway.Cert, e.pki.Gateway.Key, e.pki.Gateway.CA)
		servers := fmt.Sprintf(`  map $ssl_server_name $up { %s %s; %s %s; default 127.0.0.1:1; }
  server { listen %s ssl;
%s    proxy_pass $up; }
  server { listen %s ssl;
%s    proxy_pass %s; }
  server { listen %s ssl;
%s    proxy_pass %s; }
`, echoSNI, echoAddr(), discardSNI, discardAddr(), in, t, inEcho, t, echoAddr(), inDiscard, t, discardAddr())
		return run(e, "nginx", servers, in, inEcho, inDiscard)
	}
	egress := func(e *env) ([]*proc, error) {
		var servers string
		for _, s := range [][2]string{{egressAddr(5501), inEcho}, {egressAddr(5502), inDiscard}} {
			servers += fmt.Sprintf(`  server { listen %s; proxy_pass %s;
    proxy_ssl on; proxy_ssl_protocols TLSv1.3; proxy_ssl_certificate %s; proxy_ssl_certificate_key %s;
    proxy_ssl_trusted_certificate %s; proxy_ssl_verify on; proxy_ssl_verify_depth 3;
    proxy_ssl_name %s; proxy_ssl_server_name on; proxy_ssl_session_reuse on; }
`, s[0], s[1], e.pki.Client.Cert, e.pki.Client.Key, e.pki.Client.CA, gwIdentity)
		}
		return run(e, "nginx-egress", servers, egressAddr(5501), egressAddr(5502))
	}
	return &system{
		name: "nginx",
		check: func(*env) error {
			if err := lookBin("nginx"); err != nil {
				return err
			}
			_, err := os.Stat(nginxStreamModule)
			return err
		},
		ingress: func(e *env) (*instance, error) { return sniInstance(in)(ingress(e)) },
		tunnel: func(e *env) (*instance, error) {
			return pair(e, ingress, egress, egressAddr(5501), egressAddr(5502), portRouted)
		},
	}
}

func ghostunnelSystem() *system {
	inEcho, inDiscard := ingressAddr(5601), ingressAddr(5602)
	bin := func(e *env) string { return filepath.Join(e.cache, "ghostunnel") }
	// ghostunnel has no SNI routing: one server process per backend.
	ingress := func(e *env) ([]*proc, error) {
		var ps []*proc
		for _, s := range [][2]string{{inEcho, echoAddr()}, {inDiscard, discardAddr()}} {
			p, err := ready(e.start("ghostunnel", bin(e), nil, "server", "--listen", s[0], "--target", s[1],
				"--cert", e.pki.Gateway.Cert, "--key", e.pki.Gateway.Key, "--cacert", e.pki.Gateway.CA,
				"--allow-all", "--quiet=all", "--unsafe-target"))(s[0])
			if ps = append(ps, p...); err != nil {
				return ps, err
			}
		}
		return ps, nil
	}
	egress := func(e *env) ([]*proc, error) {
		var ps []*proc
		for _, s := range [][2]string{{egressAddr(5701), inEcho}, {egressAddr(5702), inDiscard}} {
			p, err := ready(e.start("ghostunnel-client", bin(e), nil, "client", "--listen", s[0], "--target", s[1],
				"--cert", e.pki.Client.Cert, "--key", e.pki.Client.Key, "--cacert", e.pki.Client.CA,
				"--override-server-name", gwIdentity, "--verify-dns", gwIdentity, "--quiet=all", "--unsafe-listen"))(s[0])
			if ps = append(ps, p...); err != nil {
				return ps, err
			}
		}
		return ps, nil
	}
	return &system{
		name: "ghostunnel",
		check: func(e *env) error {
			_, err := os.Stat(bin(e))
			return err
		},
		ingress: func(e *env) (*instance, error) {
			ps, err := ingress(e)
			return &instance{echo: target{inEcho, echoSNI, true}, discard: target{inDiscard, discardSNI, true}, procs: ps,
				note: "one process per backend (no SNI routing)"}, err
		},
		tunnel: func(e *env) (*instance, error) {
			return pair(e, ingress, egress, egressAddr(5701), egressAddr(5702), "one process per backend and direction; "+portRouted)
		},
	}
}

func caddySystem() *system {
	in, inEcho, inDiscard := ingressAddr(5801), ingressAddr(5802), ingressAddr(5803)
	bin := func(e *env) string { return filepath.Join(e.cache, "caddy") }
	type obj = map[string]any
	tlsHandler := func(e *env) obj {
		return obj{"handler": "tls", "connection_policies": []obj{{
			"certificate_selection": obj{"any_tag": []string{"gw"}},
			"protocol_min":          "tls1.3",
			"curves":                []string{"x25519"},
			"client_authentication": obj{"trusted_ca_certs_pem_files": []string{e.pki.Gateway.CA}, "mode": "require_and_verify"},
		}}}
	}
	proxyTo := func(addr string) obj { return obj{"handler": "proxy", "upstreams": []obj{{"dial": []string{addr}}}} }
	run := func(e *env, name string, servers obj, certs bool, addrs ...string) ([]*proc, error) {
		apps := obj{"layer4": obj{"servers": servers}}
		if certs {
			apps["tls"] = obj{"certificates": obj{"load_files": []obj{{"certificate": e.pki.Gateway.Cert, "key": e.pki.Gateway.Key, "tags": []string{"gw"}}}}}
		}
		b, err := json.MarshalIndent(obj{"admin": obj{"disabled": true}, "logging": obj{"logs": obj{"default": obj{"level": "WARN"}}}, "apps": apps}, "", " ")
		if err != nil {
			return nil, err
		}
		return startCfg(e, name, bin(e), name+".json", string(b), []string{"run", "--config"}, addrs...)
	}
	ingress := func(e *env) ([]*proc, error) {
		route := func(sni, addr string) obj {
			return obj{"match": []obj{{"tls": obj{"sni": []string{sni}}}}, "handle": []any{tlsHandler(e), proxyTo(addr)}}
		}
		plain := func(addr string) obj { return obj{"handle": []any{tlsHandler(e), proxyTo(addr)}} }
		servers := obj{
			"sni":     obj{"listen": []string{in}, "routes": []obj{route(echoSNI, echoAddr()), route(discardSNI, discardAddr())}},
			"echo":    obj{"listen": []string{inEcho}, "routes": []obj{plain(echoAddr())}},
			"discard": obj{"listen": []string{inDiscard}, "routes": []obj{plain(discardAddr())}},
		}
		return run(e, "caddy", servers, true, in, inEcho, inDiscard)
	}
	egress := func(e *env) ([]*proc, error) {
		servers := obj{}
		for i, s := range [][2]string{{egressAddr(5901), inEcho}, {egressAddr(5902), inDiscard}} {
			up := obj{"dial": []string{s[1]}, "tls": obj{
				"root_ca_pem_files":           []string{e.pki.Client.CA},
				"client_certificate_file":     e.pki.Client.Cert,
				"client_certificate_key_file": e.pki.Client.Key,
				"server_name":                 gwIdentity,
			}}
			servers["eg"+strconv.Itoa(i)] = obj{"listen": []string{s[0]},
				"routes": []obj{{"handle": []any{obj{"handler": "proxy", "upstreams": []obj{up}}}}}}
		}
		return run(e, "caddy-egress", servers, false, egressAddr(5901), egressAddr(5902))
	}
	return &system{
		name: "caddy-l4",
		check: func(e *env) error {
			_, err := os.Stat(bin(e))
			return err
		},
		ingress: func(e *env) (*instance, error) { return sniInstance(in)(ingress(e)) },
		tunnel: func(e *env) (*instance, error) {
			return pair(e, ingress, egress, egressAddr(5901), egressAddr(5902), portRouted)
		},
	}
}
