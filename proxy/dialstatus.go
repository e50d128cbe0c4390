package proxy

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"time"
)

// DialStatusALPN is the ALPN protocol under which an mcgate ingress tells
// the egress that opened the connection whether it reached a backend: one
// status byte, written after routing and the backend dial and before any
// byte of the backend's. A federated or split connection can then move to
// another cluster when this one has no backend for it, before the client
// has seen anything: with a plain TLS tunnel the remote gateway can only
// close the connection, after the client's handshake has succeeded and
// its first bytes are gone.
//
// Only SNI-routed egress offers it, and only mcgate's ingress selects it;
// Linkerd's gateway does not offer it, so its clients never wait for the
// byte.
const DialStatusALPN = "mcgate.io/dial-status/v1"

// The status byte. Anything but statusConnected is followed by the close
// of the connection.
const (
	statusConnected   byte = 0
	statusRefused     byte = 1 // not exported, unknown port, bad route
	statusNoEndpoints byte = 2
	statusDialFailed  byte = 3
)

// errBackendUnavailable: the remote gateway answered, but reached no backend.
var errBackendUnavailable = errors.New("remote gateway reached no backend")

// statusOf maps a routing refusal reason (routeReason's) to its byte.
func statusOf(reason string) byte {
	switch reason {
	case "no_endpoints":
		return statusNoEndpoints
	case "dial_failed":
		return statusDialFailed
	}
	return statusRefused
}

// wantsDialStatus reports whether the client negotiated the status byte.
func wantsDialStatus(tc *tls.Conn) bool {
	return tc.ConnectionState().NegotiatedProtocol == DialStatusALPN
}

// writeDialStatus sends the status byte when the client asked for it. A
// client that stopped reading must not hold the connection: the write is
// bounded.
func writeDialStatus(tc *tls.Conn, status byte, timeout time.Duration) error {
	if !wantsDialStatus(tc) {
		return nil
	}
	tc.SetWriteDeadline(time.Now().Add(timeout))
	defer tc.SetWriteDeadline(time.Time{})
	_, err := tc.Write([]byte{status})
	return err
}

// readDialStatus waits, until deadline, for the status byte of a
// connection that negotiated DialStatusALPN; other connections pass at
// once. It returns errBackendUnavailable (wrapped, with the reason) when the
// remote gateway reached no backend.
func readDialStatus(tc *tls.Conn, deadline time.Time) error {
	if !wantsDialStatus(tc) {
		return nil
	}
	tc.SetReadDeadline(deadline)
	defer tc.SetReadDeadline(time.Time{})
	var b [1]byte
	if _, err := io.ReadFull(tc, b[:]); err != nil {
		return fmt.Errorf("dial status: %w", err)
	}
	switch b[0] {
	case statusConnected:
		return nil
	case statusNoEndpoints:
		return fmt.Errorf("%w: no ready endpoints", errBackendUnavailable)
	case statusDialFailed:
		return fmt.Errorf("%w: backend dial failed", errBackendUnavailable)
	case statusRefused:
		return fmt.Errorf("%w: refused the target", errBackendUnavailable)
	}
	return fmt.Errorf("dial status: unknown status byte %d", b[0])
}

// isBackendUnavailable tells a remote gateway's answer from a failure to
// reach the gateway: only the latter counts against the gateway in outlier
// detection.
func isBackendUnavailable(err error) bool { return errors.Is(err, errBackendUnavailable) }
