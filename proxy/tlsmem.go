package proxy

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"reflect"
	"runtime"
	"slices"
	"unsafe"
)

// crypto/tls keeps a connection's raw input and its handshake messages in
// two bytes.Buffers that only ever grow (golang/go#43563; the fix upstream,
// golang/go#48229, is the same as ours and has not landed). Once a
// connection has carried bulk data its raw input holds 32 KiB, idle or not,
// for as long as the connection lives: with thousands of pooled connections
// that is most of a gateway's memory. HAProxy and nginx free their TLS
// buffers between reads (OpenSSL's SSL_MODE_RELEASE_BUFFERS); crypto/tls
// offers no such call, so a parked direction drops the buffers itself.
//
// The same goes for the client's certificate chain, which a server
// connection parses anew at each full handshake and keeps (5 KiB) although
// nothing reads it once the connection is authorized.
//
// This reaches into crypto/tls's unexported fields, so it runs only on the
// Go releases whose crypto/tls was read against what it assumes
// (reviewedGoVersions), and only where the fields are found by name and
// type; anywhere else connections keep what they hold, as crypto/tls would,
// and the gateway warns at start. TestTLSStateReviewedGoVersion fails on
// any other release, so that upgrading Go forces a review.
var (
	rawInputOffset       = tlsConnField("rawInput", reflect.TypeFor[bytes.Buffer]())
	handOffset           = tlsConnField("hand", reflect.TypeFor[bytes.Buffer]())
	peerCertsOffset      = tlsConnField("peerCertificates", reflect.TypeFor[[]*x509.Certificate]())
	verifiedChainsOffset = tlsConnField("verifiedChains", reflect.TypeFor[[][]*x509.Certificate]())

	tlsFieldsFound = rawInputOffset != 0 && handOffset != 0 && peerCertsOffset != 0 && verifiedChainsOffset != 0
	releasesTLS    = tlsFieldsFound && slices.Contains(reviewedGoVersions, runtime.Version())
)

// reviewedGoVersions are the releases, as runtime.Version names them (an
// exact match: another patch release, a GOEXPERIMENT build or a devel
// toolchain may have another crypto/tls), whose crypto/tls source was read
// and found to keep every assumption below. To add one, read crypto/tls of
// that release (conn.go, ticket.go, handshake_server*.go,
// handshake_client_tls13.go) against this list:
//
//   - rawInput and hand are read and written only under the input lock
//     (Conn.in): by Read, the handshake, readRecordOrCCS and the
//     post-handshake messages Read handles (handlePostHandshakeMessage,
//     setReadTrafficSecret); never by Write, CloseWrite or Close.
//   - Decrypted application data (Conn.input) points into rawInput's
//     memory, and readRecordOrCCS refuses to run while input is unread;
//     a Read that returned nothing has left input empty.
//   - A zero bytes.Buffer is a valid rawInput and hand: readFromUntil
//     grows rawInput, and hand is written with Write, as a record needs.
//   - A partial record (rawInput) or handshake message (hand) stays in
//     its buffer across a Read that fails with a timeout (a temporary
//     net.Error, which does not become the connection's error).
//   - After the handshake a server reads peerCertificates and
//     verifiedChains only in ConnectionState and VerifyHostname: its
//     session tickets (sessionState) are made during the handshake, and
//     later only through QUIC, which mcgate does not use. A client reads
//     them when a NewSessionTicket arrives (handleNewSessionTicket), so a
//     client connection keeps them.
var reviewedGoVersions = []string{"go1.26.8"}

// ReleasesTLSState reports whether this build releases the TLS state of
// idle connections; the gateway warns at start when it does not.
func ReleasesTLSState() bool { return releasesTLS }

// TLSStateReview says why this build does or does not release the TLS
// state of idle connections: the Go release it runs on, the releases whose
// crypto/tls was reviewed, and whether the fields were found.
func TLSStateReview() (goVersion string, reviewed []string, fieldsFound bool) {
	return runtime.Version(), slices.Clone(reviewedGoVersions), tlsFieldsFound
}

// tlsConnField is the offset of tls.Conn's field name if it has type t,
// else 0 (no field of interest is a Conn's first).
func tlsConnField(name string, t reflect.Type) uintptr {
	f, ok := reflect.TypeFor[tls.Conn]().FieldByName(name)
	if !ok || f.Type != t || f.Offset == 0 {
		return 0
	}
	return f.Offset
}

// tlsConnAt points at the field of tc at offset, or is nil for 0.
func tlsConnAt[T any](tc *tls.Conn, offset uintptr) *T {
	if offset == 0 {
		return nil
	}
	return (*T)(unsafe.Add(unsafe.Pointer(tc), offset))
}

// releaseTLSInput frees tc's input buffers where they hold no bytes; a
// buffer holding part of a record keeps it. crypto/tls allocates anew, at
// the size the next record needs, when it reads again.
//
// Only a parked direction may call it: crypto/tls guards these buffers
// with its input lock, which only its Read takes, and a direction parks
// only after its Read returned and before anyone may read again (the
// parker's hand-off orders this call before the next Read). Writes and
// Close do not touch them.
func releaseTLSInput(tc *tls.Conn) {
	if !releasesTLS {
		return
	}
	for _, off := range [...]uintptr{rawInputOffset, handOffset} {
		if b := tlsConnAt[bytes.Buffer](tc, off); b != nil && b.Len() == 0 {
			*b = bytes.Buffer{}
		}
	}
}

// forgetPeerChain drops the client's certificate chain from an authorized
// server connection: from then on its ConnectionState has no
// PeerCertificates or VerifiedChains. A TLS 1.3 server reads them only
// during the handshake (its session tickets are issued there too), so
// crypto/tls does not miss them. Call it from the goroutine that made the
// handshake, before the connection is shared. A client connection must keep
// its chain: crypto/tls puts it into the session tickets it receives later.
func forgetPeerChain(tc *tls.Conn) {
	if !releasesTLS {
		return
	}
	if p := tlsConnAt[[]*x509.Certificate](tc, peerCertsOffset); p != nil {
		*p = nil
	}
	if p := tlsConnAt[[][]*x509.Certificate](tc, verifiedChainsOffset); p != nil {
		*p = nil
	}
}
