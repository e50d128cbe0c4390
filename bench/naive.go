package main

import (
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
)

// roleEnv makes the harness binary (or the test binary) act as the naive
// proxy, so it runs as its own process, pinned like every other proxy.
const roleEnv = "MCGATE_BENCH_ROLE"

// naiveMain is the floor any Go gateway must beat: crypto/tls with
// RequireAndVerifyClientCert, SNI lookup, two io.Copy calls per connection.
// With -upstream it is the egress side: plain TCP in, mTLS out.
func naiveMain(args []string) error {
	fs := flag.NewFlagSet("naive", flag.ContinueOnError)
	listen := fs.String("listen", "", "listen address")
	dir := fs.String("identity-dir", "", "tls.crt, tls.key, ca.crt")
	routes := fs.String("routes", "", "ingress: sni=addr,sni=addr")
	upstream := fs.String("upstream", "", "egress: gateway address")
	sni := fs.String("sni", "", "egress: SNI to send")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cert, err := tls.LoadX509KeyPair(*dir+"/tls.crt", *dir+"/tls.key")
	if err != nil {
		return err
	}
	caPEM, err := os.ReadFile(*dir + "/ca.crt")
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	table := map[string]string{}
	for _, r := range strings.Split(*routes, ",") {
		if k, v, ok := strings.Cut(r, "="); ok {
			table[k] = v
		}
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	if *upstream == "" {
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13,
			ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: roots})
	}
	out := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13, RootCAs: roots,
		ServerName: *sni, CurvePreferences: []tls.CurveID{tls.X25519}, ClientSessionCache: tls.NewLRUClientSessionCache(16),
		InsecureSkipVerify: true, VerifyConnection: func(cs tls.ConnectionState) error {
			return verifyChain(cs.PeerCertificates, roots, gwIdentity, x509.ExtKeyUsageServerAuth)
		}}
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			var up net.Conn
			var err error
			if tc, ok := c.(*tls.Conn); ok {
				if err = tc.Handshake(); err != nil {
					return
				}
				addr, ok := table[tc.ConnectionState().ServerName]
				if !ok {
					return
				}
				up, err = net.Dial("tcp", addr)
			} else {
				up, err = tls.Dial("tcp", *upstream, out)
			}
			if err != nil {
				fmt.Fprintln(os.Stderr, "naive:", err)
				return
			}
			defer up.Close()
			done := make(chan struct{})
			go func() { _, _ = io.Copy(up, c); closeWrite(up); close(done) }()
			_, _ = io.Copy(c, up)
			closeWrite(c)
			<-done
		}()
	}
}
