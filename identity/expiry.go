package identity

import (
	"time"

	"github.com/rs/zerolog"
)

// DefaultLeafExpiryWarning is how long before its leaf expires a gateway
// starts to warn, and `mcgate check` starts to fail. A leaf made by hand is
// renewed by a person who has the issuer's key, once a year by default: 30
// days leave room for holidays and a change window, and match when certbot
// renews (30 days before the end). The Prometheus rule McgateLeafExpiresSoon
// in deploy/monitoring/alerts.yaml uses the same window.
const DefaultLeafExpiryWarning = 30 * 24 * time.Hour

// RenewLeafCommand makes a new leaf in place of the old one, under the
// issuer and anchor files of the README's step 1.
const RenewLeafCommand = "mcgate identity leaf --ca issuer.crt --ca-key issuer.key --anchor ca.crt --out-dir <dir> --force"

// LeafState is where a leaf stands against its expiry warning window.
type LeafState int

const (
	LeafValid    LeafState = iota // ends after the window
	LeafExpiring                  // ends within the window
	LeafExpired                   // has ended
)

// LeafExpiry says where a leaf ending at notAfter stands at now, warned
// window ahead, and how long it has left (negative once it has ended). A
// window of zero or less never warns; an expired leaf is LeafExpired anyway.
func LeafExpiry(notAfter, now time.Time, window time.Duration) (LeafState, time.Duration) {
	left := notAfter.Sub(now)
	switch {
	case left <= 0:
		return LeafExpired, left
	case window > 0 && left <= window:
		return LeafExpiring, left
	}
	return LeafValid, left
}

// logExpiry writes what the state of the current leaf calls for: a warning
// when it ends within the window, an error once it has ended. With always
// false it writes only when the state differs from the one last written,
// so that a poll loop says it once when the leaf enters the window, not at
// every poll. s.mu is held.
func (s *FileSource) logExpiry(l *loaded, always bool) {
	notAfter := l.cert.Leaf.NotAfter
	state, left := LeafExpiry(notAfter, s.clock(), s.expiryWarning)
	if !always && state == s.expiryLogged {
		return
	}
	s.expiryLogged = state
	var ev *zerolog.Event
	switch state {
	case LeafExpiring:
		ev = s.log.Warn()
	case LeafExpired:
		ev = s.log.Error()
	default:
		return
	}
	msg := "leaf certificate expires soon; peers will refuse this gateway from then on"
	if state == LeafExpired {
		msg = "leaf certificate has expired; peers refuse this gateway"
	}
	ev.Str("identity", l.name.String()).Time("not_after", notAfter).
		Str("left", left.Round(time.Minute).String()).Str("warning_window", s.expiryWarning.String()).
		Str("renew", RenewLeafCommand+", then put <dir> in the gateway's Secret: it reloads it without a restart").Msg(msg)
}

// watchExpiry looks at the current leaf against the clock, between loads.
func (s *FileSource) watchExpiry() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.logExpiry(s.cur.Load(), false)
}
