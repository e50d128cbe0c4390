package identity

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/rs/zerolog"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// File names inside the identity directory: cert-manager's Secret layout.
const (
	CertFile   = "tls.crt" // leaf, then the chain up to (optionally) the anchor
	KeyFile    = "tls.key" // the leaf's ECDSA P-256 key, SEC 1 or PKCS #8 PEM
	AnchorFile = "ca.crt"  // trust anchor bundle, one or more certificates
)

// LeafExpiryMetric is the gauge of the leaf's NotAfter that a FileSource
// with Metrics sets at every load (mcgate check and the alert rules read it).
const LeafExpiryMetric = "identity_leaf_expiry_timestamp_seconds"

// DefaultPollInterval is how often Run looks at the files when
// FileSourceConfig.PollInterval is zero. Kubernetes itself takes up to a
// minute to project a changed Secret, so polling faster buys little.
const DefaultPollInterval = 5 * time.Second

// FileSourceConfig configures a FileSource.
type FileSourceConfig struct {
	// Dir holds tls.crt, tls.key and ca.crt.
	Dir string
	// Log receives one line per identity loaded and per bad file found.
	Log zerolog.Logger
	// PollInterval is how often Run compares the files with what is loaded;
	// zero means DefaultPollInterval.
	PollInterval time.Duration
	// Metrics, if not nil, receives identity_reloads_total{result} and
	// identity_leaf_expiry_timestamp_seconds.
	Metrics prometheus.Registerer
	// Clock, if not nil, replaces time.Now for every validity check made with
	// this source, by the loader and by the TLS configs built on it. Tests
	// move it to make certificates expire.
	Clock func() time.Time
	// ExpiryWarning is how long before the leaf ends the source starts to
	// warn: at every load of a leaf that ends within it, and from the poll
	// that finds the leaf entered it. Zero means DefaultLeafExpiryWarning,
	// less than zero never (an expired leaf is still logged as an error).
	ExpiryWarning time.Duration
}

// FileSource is the gateway's identity read from a directory: its leaf
// certificate and key, and the trust anchors it verifies peers with. It
// implements go-spiffe's x509svid.Source and x509bundle.Source.
//
// The files are read once by NewFileSource and again whenever Run sees them
// change or Reload is called. A new set of files replaces the loaded one only
// as a whole and only when it is valid; otherwise the current identity stays.
// Readers never block: they get the set that is current when they ask, so
// TLS configs built on a FileSource pick up a rotation at the next handshake
// and leave established connections alone.
type FileSource struct {
	dir      string
	log      zerolog.Logger
	interval time.Duration
	clock    func() time.Time

	cur atomic.Pointer[loaded]

	mu          sync.Mutex    // serialises loads; guards the fields below
	updated     chan struct{} // closed and replaced on every successful load
	lastFailure string        // fingerprint and error of the last bad set Run reported

	expiryWarning time.Duration
	expiryLogged  LeafState // of the current leaf, last written by logExpiry

	reloads *prometheus.CounterVec
	expiry  prometheus.Gauge
}

// loaded is one complete, validated set of files. It is never modified.
type loaded struct {
	sum   [sha256.Size]byte // of the three files' contents
	name  Name
	cert  *tls.Certificate
	svid  *x509svid.SVID
	trust *trust
}

var (
	_ x509svid.Source   = (*FileSource)(nil)
	_ x509bundle.Source = (*FileSource)(nil)
)

// NewFileSource reads the identity in cfg.Dir and fails if it is not valid.
// It starts nothing; call Run to follow changes to the files.
func NewFileSource(cfg FileSourceConfig) (*FileSource, error) {
	if cfg.Dir == "" {
		return nil, errors.New("identity: no identity directory given")
	}
	s := &FileSource{
		dir:      cfg.Dir,
		log:      cfg.Log,
		interval: cfg.PollInterval,
		clock:    cfg.Clock,
		updated:  make(chan struct{}),

		expiryWarning: cfg.ExpiryWarning,
	}
	if s.expiryWarning == 0 {
		s.expiryWarning = DefaultLeafExpiryWarning
	}
	if s.interval <= 0 {
		s.interval = DefaultPollInterval
	}
	if s.clock == nil {
		s.clock = time.Now
	}
	f := promauto.With(cfg.Metrics)
	s.reloads = f.NewCounterVec(prometheus.CounterOpts{
		Name: "identity_reloads_total",
		Help: "Identity directory loads, by result (success, failure). A failed load keeps the current identity.",
	}, []string{"result"})
	s.expiry = f.NewGauge(prometheus.GaugeOpts{
		Name: LeafExpiryMetric,
		Help: "NotAfter of the leaf certificate in use, as a Unix timestamp.",
	})
	if err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// Run polls the directory every PollInterval and loads the files when their
// contents change. It compares contents rather than watching for events
// because Kubernetes updates a Secret volume by swapping a "..data" symlink,
// which file watches on tls.crt and friends do not see. A bad set is logged
// and counted once, then retried at every poll (a certificate that is not yet
// valid becomes valid). Each poll also looks at the leaf's end against
// ExpiryWarning. Run returns nil when ctx is done.
func (s *FileSource) Run(ctx context.Context) error {
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			s.poll()
			s.watchExpiry()
		}
	}
}

// Reload reads the directory now and, if the files are valid, makes them the
// current identity. On error the current identity stays; the error is counted
// and returned, not logged.
func (s *FileSource) Reload() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.load()
	if err != nil {
		s.reloads.WithLabelValues("failure").Inc()
	}
	return err
}

func (s *FileSource) poll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	files, err := readFiles(s.dir)
	if err == nil {
		if cur := s.cur.Load(); cur != nil && cur.sum == files.sum() {
			s.lastFailure = ""
			return
		}
		err = s.apply(files)
		if err != nil && filesChanged(s.dir, files) {
			// The files were being replaced while we read them (a writer
			// that renames them one by one, or a swap between two of our
			// reads): not a bad set, just a torn read. Look again next poll.
			return
		}
	}
	if err == nil {
		s.lastFailure = ""
		return
	}
	// Report a bad set once, not at every poll while it stays bad.
	key := fmt.Sprintf("%x %v", files.sum(), err)
	if key == s.lastFailure {
		return
	}
	s.lastFailure = key
	s.reloads.WithLabelValues("failure").Inc()
	s.log.Error().Err(err).Str("dir", s.dir).Msg("identity files not loaded; keeping the current identity")
}

// load reads and applies the files; s.mu is held.
func (s *FileSource) load() error {
	files, err := readFiles(s.dir)
	if err != nil {
		return err
	}
	return s.apply(files)
}

// apply validates files and makes them current; s.mu is held.
func (s *FileSource) apply(files rawFiles) error {
	l, err := parseFiles(files, s.clock())
	if err != nil {
		return fmt.Errorf("identity: %s: %w", s.dir, err)
	}
	s.cur.Store(l)
	leaf := l.cert.Leaf
	s.expiry.Set(float64(leaf.NotAfter.Unix()))
	s.reloads.WithLabelValues("success").Inc()
	s.log.Info().Str("identity", l.name.String()).Time("not_after", leaf.NotAfter).
		Int("anchors", len(l.trust.anchors)).Str("dir", s.dir).Msg("identity loaded")
	s.logExpiry(l, true)
	// Last, so that whoever waits on Updated sees the metrics too.
	close(s.updated)
	s.updated = make(chan struct{})
	return nil
}

// Updated returns a channel that is closed at the next successful load. Take
// it before the change you wait for; each load hands out a fresh channel.
func (s *FileSource) Updated() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.updated
}

// Name returns the identity of the current leaf certificate.
func (s *FileSource) Name() Name { return s.cur.Load().name }

// GetX509SVID returns the current leaf and chain with its key. The SVID's ID
// is the leaf's identity in SPIFFE form, also for a leaf that only has the
// Linkerd DNS SAN. The result is shared: do not modify it.
func (s *FileSource) GetX509SVID() (*x509svid.SVID, error) {
	return s.cur.Load().svid, nil
}

// GetX509BundleForTrustDomain returns the current anchors as the bundle of
// td, whatever td is: the anchor bundle is shared by every cluster and
// trust domain, as in Linkerd.
func (s *FileSource) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	return x509bundle.FromX509Authorities(td, s.cur.Load().trust.anchors), nil
}

func (s *FileSource) now() time.Time { return s.clock() }

// rawFiles is the content of the three files, read together.
type rawFiles struct{ cert, key, anchors []byte }

func (f rawFiles) sum() [sha256.Size]byte {
	h := sha256.New()
	for _, b := range [][]byte{f.cert, f.key, f.anchors} {
		fmt.Fprintf(h, "%d:", len(b))
		h.Write(b)
	}
	var out [sha256.Size]byte
	h.Sum(out[:0])
	return out
}

func readFiles(dir string) (rawFiles, error) {
	var f rawFiles
	for _, p := range []struct {
		name string
		dst  *[]byte
	}{{CertFile, &f.cert}, {KeyFile, &f.key}, {AnchorFile, &f.anchors}} {
		b, err := os.ReadFile(filepath.Join(dir, p.name))
		if err != nil {
			return rawFiles{}, fmt.Errorf("identity: %w", err)
		}
		*p.dst = b
	}
	return f, nil
}

// filesChanged reports whether the files in dir differ from what was read.
func filesChanged(dir string, read rawFiles) bool {
	again, err := readFiles(dir)
	return err != nil || again.sum() != read.sum()
}

// parseFiles checks a set of files as a whole: the key is ECDSA P-256 and
// belongs to the leaf, the leaf names an identity, and leaf and chain verify
// against the anchors at now.
func parseFiles(f rawFiles, now time.Time) (*loaded, error) {
	certs, err := parseCertsPEM(f.cert)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", CertFile, err)
	}
	anchors, err := parseCertsPEM(f.anchors)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", AnchorFile, err)
	}
	key, err := parseKeyPEM(f.key)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", KeyFile, err)
	}
	leaf := certs[0]
	if pub, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || !pub.Equal(key.Public()) {
		return nil, fmt.Errorf("%s does not belong to the first certificate of %s", KeyFile, CertFile)
	}
	tr := newTrust(anchors, nil)
	name, chain, err := tr.verifyChain(certs, now)
	if err != nil {
		return nil, fmt.Errorf("%s against %s: %w", CertFile, AnchorFile, err)
	}
	// Keep the certificates that verified between our leaf and the anchor
	// (not whatever else tls.crt holds) to help verify peers.
	tr.own = chain[1 : len(chain)-1]
	raw := make([][]byte, len(certs))
	for i, c := range certs {
		raw[i] = c.Raw
	}
	return &loaded{
		sum:   f.sum(),
		name:  name,
		cert:  &tls.Certificate{Certificate: raw, PrivateKey: key, Leaf: leaf},
		svid:  &x509svid.SVID{ID: name.SPIFFEID(), Certificates: certs, PrivateKey: key},
		trust: tr,
	}, nil
}

// parseCertsPEM parses every block of b, which must all be certificates.
func parseCertsPEM(b []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for rest := bytes.TrimSpace(b); len(rest) > 0; rest = bytes.TrimSpace(rest) {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, errors.New("not PEM after certificate " + fmt.Sprint(len(certs)))
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("PEM block %q where a CERTIFICATE belongs", block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("no certificate")
	}
	return certs, nil
}

// parseKeyPEM reads the first PEM block of b as an ECDSA P-256 private key,
// in SEC 1 ("EC PRIVATE KEY", what step and Linkerd write) or PKCS #8
// ("PRIVATE KEY", what cert-manager writes with encoding PKCS8).
func parseKeyPEM(b []byte) (*ecdsa.PrivateKey, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	var key any
	var err error
	switch block.Type {
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("PEM block %q; want an ECDSA P-256 key (EC PRIVATE KEY or PRIVATE KEY)", block.Type)
	}
	if err != nil {
		return nil, err
	}
	ec, ok := key.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%T key; mcgate needs an ECDSA P-256 key", key)
	}
	if ec.Curve != elliptic.P256() {
		return nil, fmt.Errorf("ECDSA %s key; mcgate needs ECDSA P-256", ec.Curve.Params().Name)
	}
	return ec, nil
}
