package identity

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
)

// clientSessionCacheSize bounds the TLS sessions a client config remembers.
// Its keys are server names (SNI), so one entry per remote target.
const clientSessionCacheSize = 1024

// ServerTLSConfig returns the config of a TLS 1.3 server that presents src's
// current leaf and chain and requires a client certificate that chains to
// src's current anchors, naming an identity in either form (SPIFFE URI SAN, or
// only the Linkerd DNS SAN as stock Linkerd leaves have). It does not decide
// which identities may connect: run an Authorizer on the ConnectionState.
//
// The config is built once and reads src at every handshake, so a rotation
// applies to the next handshake and never touches open connections. Session
// tickets stay on. Go does not call VerifyPeerCertificate on a resumed
// session, so the client's chain is checked in VerifyConnection instead,
// which runs on full and resumed handshakes alike: a session whose client
// certificate has since expired or whose anchor has been rotated out is
// refused. Such a session is not even resumed when its anchors were rotated
// out or its chain has expired: the handshake falls back to a full one (see
// session.go), so a peer that already has a new leaf gets through. Callers
// may Clone the config and set NextProtos or CurvePreferences.
func ServerTLSConfig(src *FileSource) *tls.Config {
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return src.cur.Load().cert, nil
		},
		// Ask for a certificate but leave its verification to
		// VerifyConnection: ClientCAs would pin the anchors of the moment the
		// config was built.
		ClientAuth: tls.RequireAnyClientCert,
		VerifyConnection: func(cs tls.ConnectionState) error {
			_, err := src.cur.Load().trust.verify(cs.PeerCertificates, x509.ExtKeyUsageClientAuth, src.now())
			return err
		},
		Time: src.now,
	}
	stampSessions(cfg, src)
	return cfg
}

// ClientTLSConfig returns the config of a TLS 1.3 client that presents src's
// current leaf and accepts only a server whose chain verifies against src's
// current anchors and whose identity is server (in either spelling).
//
// Verification does not look at ServerName: callers Clone the config and set
// ServerName to the SNI of each target, which is not the server's identity.
// Sessions are cached (keyed by ServerName) so repeated dials resume, and,
// as in ServerTLSConfig, VerifyConnection re-checks the server's chain and
// identity on resumed handshakes too; sessions made under anchors that have
// since been rotated are not offered.
func ClientTLSConfig(src *FileSource, server Name) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return src.cur.Load().cert, nil
		},
		// Go's own verification would check ServerName against the
		// certificate and pin RootCAs; VerifyConnection does the real check.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			got, err := src.cur.Load().trust.verify(cs.PeerCertificates, x509.ExtKeyUsageServerAuth, src.now())
			if err != nil {
				return err
			}
			if got != server {
				return fmt.Errorf("identity: server is %s, want %s", got, server)
			}
			return nil
		},
		ClientSessionCache: anchoredSessionCache{src, tls.NewLRUClientSessionCache(clientSessionCacheSize)},
		Time:               src.now,
	}
}
