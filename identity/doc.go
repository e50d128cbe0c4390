// Package identity is mcgate's mTLS identity: the gateway's leaf certificate
// and trust anchors read from files, the TLS 1.3 configs built on them, the
// names of identities, the authorization of client identities, and the
// generation of anchors, issuers and leaves for `mcgate identity`.
//
// An identity is a Kubernetes service account in a trust domain, spelled as
// a SPIFFE ID (spiffe://cluster.local/ns/linkerd-multicluster/sa/linkerd-gateway)
// or in Linkerd's DNS form
// (linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local).
// Leaves made here carry both; leaves that carry only the DNS form, as stock
// Linkerd ones do, are accepted too.
//
// Usage:
//
//	src, err := identity.NewFileSource(identity.FileSourceConfig{Dir: dir, Log: log, Metrics: reg})
//	...
//	go src.Run(ctx) // reloads rotated files; joined by the caller
//	authz, err := identity.NewAuthorizer([]string{"spiffe://cluster.local/ns/linkerd-multicluster/sa/*"})
//	ln := tls.NewListener(tcp, identity.ServerTLSConfig(src))
//	... after each handshake: peer, err := authz.Authorize(conn.ConnectionState())
//
//	gw, _ := identity.ParseName("linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local")
//	cfg := identity.ClientTLSConfig(src, gw).Clone()
//	cfg.ServerName = "outbound_.8080_._.api.production.svc.cluster.local" // SNI; not what is verified
//
// The TLS configs are built once and read the FileSource at every
// handshake: a rotation of the files applies to the next handshake and
// leaves open connections alone. Peer chains are verified against the
// anchors in VerifyConnection, which Go calls on resumed handshakes as well,
// so session resumption never outlives a certificate's validity or an
// anchor's removal.
package identity
