package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"
)

// acceptLoop calls handle for each accepted connection until the listener
// is closed (nil) or fails for good. Temporary errors (EMFILE under load)
// back off instead of spinning or giving up.
func acceptLoop(ctx context.Context, ln net.Listener, log zerolog.Logger, handle func(net.Conn)) error {
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err == nil {
			backoff = 0
			handle(c)
			continue
		}
		if errors.Is(err, net.ErrClosed) {
			return nil
		}
		if !isTemporaryAcceptErr(err) {
			return err
		}
		backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
		log.Warn().Err(err).Dur("backoff", backoff).Msg("accept failed; backing off")
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
	}
}

func isTemporaryAcceptErr(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.ENOBUFS) ||
		errors.Is(err, syscall.ENOMEM)
}

// isExpectedNetErr reports errors that are part of normal connection life
// (a peer going away, our own abort) and deserve no log line.
func isExpectedNetErr(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, errIdle)
}

// handshakeReason classifies a failed server handshake for the
// gateway_handshake_failures_total{reason} label.
func handshakeReason(err error) string {
	var (
		rec     tls.RecordHeaderError
		unknown x509.UnknownAuthorityError
		invalid x509.CertificateInvalidError
		alert   tls.AlertError
	)
	msg := err.Error()
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return "timeout"
	case errors.Is(err, errHandshakeTooLarge):
		return "handshake_too_large"
	case errors.As(err, &rec):
		return "not_tls"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET):
		return "client_closed"
	case strings.HasPrefix(msg, "identity: chain refused before verification"):
		// Outside the trust model's bounds (too many certificates, a key
		// type or size it does not use, out of order): refused before any
		// signature check.
		return "bad_chain"
	case strings.Contains(msg, "didn't provide a certificate"):
		return "no_client_cert"
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired, strings.Contains(msg, "expired"), strings.Contains(msg, "not yet valid"):
		return "cert_not_valid_now"
	case errors.As(err, &unknown), strings.Contains(msg, "unknown authority"), strings.Contains(msg, "verify"):
		return "untrusted_cert"
	case strings.HasPrefix(msg, "identity:"):
		// The identity package refused the chain for another reason: a CA
		// key usage on a leaf, two identities in one certificate...
		return "bad_cert"
	case strings.Contains(msg, "error decoding message"):
		// A handshake message that does not parse, e.g. an SNI with a
		// trailing dot, which crypto/tls refuses.
		return "bad_handshake_message"
	case errors.As(err, &alert):
		return "client_alert"
	case strings.Contains(msg, "protocol version"), strings.Contains(msg, "unsupported versions"):
		// TLS 1.2 and older: "client offered only unsupported versions".
		return "bad_version"
	}
	return "other"
}
