package identity

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"time"
)

// TLS sessions remember the peer's certificates, and VerifyConnection checks
// them again on every resumption. After a rotation that can fail where a full
// handshake would succeed: a peer whose cached session holds its old leaf
// under an anchor we have since dropped already has a new leaf, but offers
// the old session first. Refusing it would cost one failed connection per
// cached session. Instead, sessions record the anchor set they were made
// under and when their peer chain expires, and a session that no longer
// fits is not resumed: the handshake falls back to a full one, which
// verifies whatever the peer presents now.

// sessionTag marks the entry mcgate adds to a session ticket's Extra data.
var sessionTag = []byte("mcgate.session.v1:")

// sessionStamp is what a server-side session remembers about its trust.
type sessionStamp struct {
	anchors  [8]byte   // trust.anchorsID when the session was made
	notAfter time.Time // the earliest NotAfter of the peer's chain
}

func (s sessionStamp) encode() []byte {
	b := make([]byte, 0, len(sessionTag)+16)
	b = append(b, sessionTag...)
	b = append(b, s.anchors[:]...)
	return binary.BigEndian.AppendUint64(b, uint64(s.notAfter.Unix()))
}

// stampOf finds the stamp in a session's Extra data.
func stampOf(extra [][]byte) (sessionStamp, bool) {
	for _, e := range extra {
		rest, ok := bytes.CutPrefix(e, sessionTag)
		if !ok || len(rest) != 16 {
			continue
		}
		var s sessionStamp
		copy(s.anchors[:], rest[:8])
		s.notAfter = time.Unix(int64(binary.BigEndian.Uint64(rest[8:])), 0)
		return s, true
	}
	return sessionStamp{}, false
}

// withoutStamp drops an earlier stamp (a resumed session's ticket is issued
// again and would otherwise collect them).
func withoutStamp(extra [][]byte) [][]byte {
	out := extra[:0:0]
	for _, e := range extra {
		if !bytes.HasPrefix(e, sessionTag) {
			out = append(out, e)
		}
	}
	return out
}

func chainNotAfter(certs []*x509.Certificate) time.Time {
	var t time.Time
	for i, c := range certs {
		if i == 0 || c.NotAfter.Before(t) {
			t = c.NotAfter
		}
	}
	return t
}

// stampSessions makes cfg's tickets carry a sessionStamp and ignore, rather
// than resume, a ticket made under other anchors or whose peer chain has
// expired. Tickets are still encrypted with cfg's own ticket keys; clones of
// cfg call these hooks on cfg, so they all share those keys.
func stampSessions(cfg *tls.Config, src *FileSource) {
	cfg.WrapSession = func(cs tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
		stamp := sessionStamp{anchors: src.cur.Load().trust.anchorsID, notAfter: chainNotAfter(cs.PeerCertificates)}
		ss.Extra = append(withoutStamp(ss.Extra), stamp.encode())
		return cfg.EncryptTicket(cs, ss)
	}
	cfg.UnwrapSession = func(ticket []byte, cs tls.ConnectionState) (*tls.SessionState, error) {
		ss, err := cfg.DecryptTicket(ticket, cs)
		if err != nil || ss == nil {
			return nil, err
		}
		stamp, ok := stampOf(ss.Extra)
		if !ok || stamp.anchors != src.cur.Load().trust.anchorsID || src.now().After(stamp.notAfter) {
			return nil, nil // a full handshake instead
		}
		return ss, nil
	}
}

// anchoredSessionCache keys a client's sessions by the anchor set they were
// verified under as well as by server name, so that after an anchor rotation
// the client starts afresh with full handshakes instead of offering sessions
// the new anchors may not vouch for. Old entries age out of the LRU.
type anchoredSessionCache struct {
	src   *FileSource
	inner tls.ClientSessionCache
}

func (c anchoredSessionCache) key(serverName string) string {
	id := c.src.cur.Load().trust.anchorsID
	return string(id[:]) + serverName
}

func (c anchoredSessionCache) Get(serverName string) (*tls.ClientSessionState, bool) {
	return c.inner.Get(c.key(serverName))
}

func (c anchoredSessionCache) Put(serverName string, cs *tls.ClientSessionState) {
	c.inner.Put(c.key(serverName), cs)
}
