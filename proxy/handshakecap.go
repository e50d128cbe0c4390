package proxy

import (
	"errors"
	"net"
)

// maxHandshakeBytes bounds what a client may send before its handshake is
// over. crypto/tls parses every certificate of a client's chain (up to
// 256 KiB of them) before any hook of ours can refuse the chain: 700 small
// decoy certificates cost the gateway ten good handshakes in parsing
// alone. A good client's whole flight is a few KiB (ClientHello with its
// key shares and session ticket, a chain of at most four certificates,
// CertificateVerify, Finished); 32 KiB leaves room for RSA-4096 chains.
const maxHandshakeBytes = 32 << 10

var errHandshakeTooLarge = errors.New("client sent more than 32 KiB before its handshake completed")

// handshakeCap is the TCP connection under a server's TLS transport: it
// ends the reads of a client that goes past maxHandshakeBytes before
// handshakeDone. Only the goroutine of the handshake reads it until then,
// and the splice's goroutines start after, so left needs no lock.
type handshakeCap struct {
	net.Conn
	left int // bytes the client may still send; <0 once the handshake is done
}

func capHandshake(c net.Conn) *handshakeCap {
	return &handshakeCap{Conn: c, left: maxHandshakeBytes}
}

func (c *handshakeCap) Read(p []byte) (int, error) {
	if c.left < 0 {
		return c.Conn.Read(p)
	}
	if c.left == 0 {
		return 0, errHandshakeTooLarge
	}
	if len(p) > c.left {
		p = p[:c.left]
	}
	n, err := c.Conn.Read(p)
	c.left -= n
	return n, err
}

// handshakeDone lifts the cap.
func (c *handshakeCap) handshakeDone() { c.left = -1 }
