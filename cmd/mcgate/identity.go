package main

import (
	"crypto/x509"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/mcgate/mcgate/identity"
)

// newIdentityCmd returns `mcgate identity`, which makes the files of the
// shared trust anchor, a cluster's issuer and a gateway's leaf: the same kind
// of files as the `step certificate create` commands of the Linkerd guide.
func newIdentityCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "identity",
		Short: "Create trust anchor, issuer and leaf certificates (ECDSA P-256)",
		Long: `Create the certificates of mcgate's identity, ECDSA P-256 like Linkerd's:

  mcgate identity anchor                 # ca.crt, ca.key: the anchor all clusters share (10 years)
  mcgate identity issuer --ca ca.crt --ca-key ca.key   # issuer.crt, issuer.key: one per cluster (1 year)
  mcgate identity leaf --ca issuer.crt --ca-key issuer.key --anchor ca.crt --out-dir DIR
                                         # DIR/tls.crt, tls.key, ca.crt: a gateway's --identity-dir
                                         # (8736h: a year less a day, so it ends before its issuer)

Nothing renews these files: renew the leaf before it ends by running leaf again (--force)
and replacing the gateway's Secret with DIR; the gateway reloads it without a restart,
warns from --leaf-expiry-warning (720h) before the end, and mcgate check fails then.

Each input must fit its flag: --anchor and the --ca of issuer are self-signed root CAs,
the --ca of leaf is a CA (the issuer, or the anchor itself). No certificate may outlive
its --ca: such a --not-after is refused, or with --clamp-not-after ends with the --ca.

Key files are written with mode 0600. Existing files are kept unless --force is given.`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newIdentityAnchorCmd(), newIdentityIssuerCmd(), newIdentityLeafCmd())
	return cmd
}

// validityFlags are the flags every kind of certificate has.
type validityFlags struct {
	notBefore string
	notAfter  string
	force     bool
	clamp     bool // --clamp-not-after, for the kinds that have a signer
}

func (v *validityFlags) add(cmd *cobra.Command, defaultLifetime time.Duration) {
	f := cmd.Flags()
	f.StringVar(&v.notAfter, "not-after", formatHours(defaultLifetime), "end of validity: a duration from now (8760h) or an RFC 3339 time")
	f.StringVar(&v.notBefore, "not-before", "", "start of validity: a duration from now (may be negative) or an RFC 3339 time (default: one minute ago)")
	f.BoolVar(&v.force, "force", false, "overwrite existing output files")
}

// addClamp adds --clamp-not-after to the kinds signed by a --ca.
func (v *validityFlags) addClamp(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&v.clamp, "clamp-not-after", false,
		"if --not-after is later than the end of --ca, end there instead of refusing")
}

// fitSigner refuses a certificate that would outlive its signer: from the
// signer's end on, every chain through it fails, so a longer validity only
// hides when the certificate really stops working. --clamp-not-after ends
// it with its signer instead, and says so.
func (v *validityFlags) fitSigner(cmd *cobra.Command, opts *identity.CertOptions, what string, signer *x509.Certificate, signerFile string) error {
	end := signer.NotAfter
	if !opts.NotAfter.After(end) {
		return nil
	}
	if !v.clamp {
		return fmt.Errorf("--not-after %s: the %s would outlive its --ca %s, which ends %s (chains through it fail from then on); "+
			"give an earlier --not-after, or --clamp-not-after to end it with its --ca",
			opts.NotAfter.UTC().Format(time.RFC3339), what, signerFile, end.UTC().Format(time.RFC3339))
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "note: --not-after %s clamped to %s, the end of --ca %s\n",
		opts.NotAfter.UTC().Format(time.RFC3339), end.UTC().Format(time.RFC3339), signerFile)
	opts.NotAfter = end
	return nil
}

func (v *validityFlags) options(now time.Time) (identity.CertOptions, error) {
	var opts identity.CertOptions
	var err error
	if v.notBefore != "" {
		if opts.NotBefore, err = parseTimeFlag(now, v.notBefore); err != nil {
			return opts, fmt.Errorf("--not-before: %w", err)
		}
	}
	if opts.NotAfter, err = parseTimeFlag(now, v.notAfter); err != nil {
		return opts, fmt.Errorf("--not-after: %w", err)
	}
	return opts, nil
}

// checkOverwrite refuses to replace files unless --force was given: an
// anchor key written over by mistake cannot be recovered.
func (v *validityFlags) checkOverwrite(paths ...string) error {
	if v.force {
		return nil
	}
	for _, p := range paths {
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("%s exists; use --force to overwrite it", p)
		}
	}
	return nil
}

// parseTimeFlag reads a duration from now, like step's --not-after, or an
// RFC 3339 time.
func parseTimeFlag(now time.Time, s string) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		return now.Add(d), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither a duration (24h) nor an RFC 3339 time", s)
	}
	return t, nil
}

func formatHours(d time.Duration) string { return fmt.Sprintf("%dh", int(d.Hours())) }

// caFlags are the flags of the two CA kinds, anchor and issuer.
type caFlags struct {
	validityFlags
	cn, outCert, outKey string
}

func (c *caFlags) add(cmd *cobra.Command, lifetime time.Duration, cn, outCert, outKey string) {
	c.validityFlags.add(cmd, lifetime)
	f := cmd.Flags()
	f.StringVar(&c.cn, "common-name", cn, "subject common name")
	f.StringVar(&c.outCert, "out-cert", outCert, "certificate file to write")
	f.StringVar(&c.outKey, "out-key", outKey, "key file to write (mode 0600)")
}

// run makes a CA certificate with newCA and writes it.
func (c *caFlags) run(cmd *cobra.Command, what string, newCA func(identity.CertOptions) (*identity.KeyPair, error)) error {
	opts, err := c.options(time.Now())
	if err != nil {
		return err
	}
	opts.CommonName = c.cn
	if err := c.checkOverwrite(c.outCert, c.outKey); err != nil {
		return err
	}
	kp, err := newCA(opts)
	if err != nil {
		return err
	}
	if err := identity.WriteKeyPair(kp, c.outCert, c.outKey); err != nil {
		return err
	}
	return describe(cmd, what, kp.Cert, c.outCert, c.outKey)
}

func newIdentityAnchorCmd() *cobra.Command {
	var c caFlags
	cmd := &cobra.Command{
		Use:   "anchor",
		Short: "Create the self-signed trust anchor shared by all clusters (step --profile root-ca)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return c.run(cmd, "anchor", identity.NewAnchor)
		},
	}
	c.add(cmd, identity.DefaultAnchorLifetime, identity.DefaultAnchorCommonName, "ca.crt", "ca.key")
	return cmd
}

func newIdentityIssuerCmd() *cobra.Command {
	var c caFlags
	var ca, caKey string
	cmd := &cobra.Command{
		Use:   "issuer",
		Short: "Create a cluster's issuer, signed by the trust anchor (step --profile intermediate-ca)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return c.run(cmd, "issuer", func(opts identity.CertOptions) (*identity.KeyPair, error) {
				parent, err := identity.LoadKeyPair(ca, caKey)
				if err != nil {
					return nil, err
				}
				// Issuers sign leaves only (path length 0): one under
				// another issuer makes chains no verifier accepts.
				if err := identity.CheckAnchor(parent.Cert); err != nil {
					return nil, fmt.Errorf("--ca %s: %w; --ca takes the trust anchor (mcgate identity anchor)", ca, err)
				}
				if err := c.fitSigner(cmd, &opts, "issuer", parent.Cert, ca); err != nil {
					return nil, err
				}
				return identity.NewIssuer(parent, opts)
			})
		},
	}
	c.add(cmd, identity.DefaultIssuerLifetime, identity.DefaultIssuerCommonName, "issuer.crt", "issuer.key")
	c.addClamp(cmd)
	f := cmd.Flags()
	f.StringVar(&ca, "ca", "", "certificate of the signing anchor (required)")
	f.StringVar(&caKey, "ca-key", "", "key of the signing anchor (required)")
	for _, r := range []string{"ca", "ca-key"} {
		_ = cmd.MarkFlagRequired(r)
	}
	return cmd
}

func newIdentityLeafCmd() *cobra.Command {
	var v validityFlags
	var ca, caKey, anchor, sa, ns, td, outDir string
	var sans []string
	cmd := &cobra.Command{
		Use:   "leaf",
		Short: "Create a gateway's leaf certificate and write an --identity-dir (tls.crt, tls.key, ca.crt)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts, err := v.options(time.Now())
			if err != nil {
				return err
			}
			if opts.DNSNames, opts.URIs, err = parseSANs(sans); err != nil {
				return err
			}
			name, err := identity.NewName(td, ns, sa)
			if err != nil {
				return err
			}
			paths := []string{identity.CertFile, identity.KeyFile, identity.AnchorFile}
			for i, p := range paths {
				paths[i] = filepath.Join(outDir, p)
			}
			if err := v.checkOverwrite(paths...); err != nil {
				return err
			}
			issuer, anchors, err := loadLeafSigners(ca, caKey, anchor)
			if err != nil {
				return err
			}
			if err := v.fitSigner(cmd, &opts, "leaf", issuer.Cert, ca); err != nil {
				return err
			}
			kp, err := identity.NewLeaf(issuer, name, opts)
			if err != nil {
				return err
			}
			// The chain holds the issuer unless the leaf was signed by an
			// anchor directly: peers have the anchors already.
			var chain []*x509.Certificate
			if !isSelfSigned(issuer.Cert) {
				chain = append(chain, issuer.Cert)
			}
			if err := checkChain(kp.Cert, chain, anchors); err != nil {
				return fmt.Errorf("--anchor %s: %w", anchor, err)
			}
			if err := identity.WriteIdentityDir(outDir, kp, chain, anchors); err != nil {
				return err
			}
			return describe(cmd, "leaf "+name.String(), kp.Cert, paths...)
		},
	}
	v.add(cmd, identity.DefaultManualLeafLifetime)
	v.addClamp(cmd)
	f := cmd.Flags()
	f.StringVar(&ca, "ca", "", "certificate of the signing issuer (required)")
	f.StringVar(&caKey, "ca-key", "", "key of the signing issuer (required)")
	f.StringVar(&anchor, "anchor", "", "trust anchor bundle to write as ca.crt (required)")
	f.StringVar(&sa, "service-account", "linkerd-gateway", "service account of the identity")
	f.StringVar(&ns, "namespace", "linkerd-multicluster", "namespace of the identity")
	f.StringVar(&td, "trust-domain", "cluster.local", "trust domain of the identity")
	f.StringArrayVar(&sans, "san", nil, "extra subject alternative name, DNS name or URI (repeatable)")
	f.StringVar(&outDir, "out-dir", "", "directory to write tls.crt, tls.key and ca.crt into (required)")
	for _, r := range []string{"ca", "ca-key", "anchor", "out-dir"} {
		_ = cmd.MarkFlagRequired(r)
	}
	return cmd
}

// loadLeafSigners reads the leaf's issuer and its anchor bundle, each
// checked for its role, so that a mistake names the flag that holds it.
func loadLeafSigners(ca, caKey, anchor string) (*identity.KeyPair, []*x509.Certificate, error) {
	issuer, err := identity.LoadKeyPair(ca, caKey)
	if err != nil {
		return nil, nil, err
	}
	if err := identity.CheckCA(issuer.Cert); err != nil {
		return nil, nil, fmt.Errorf("--ca %s: %w; --ca takes the cluster's issuer (mcgate identity issuer)", ca, err)
	}
	anchors, err := identity.ReadCertsPEM(anchor)
	if err != nil {
		return nil, nil, err
	}
	for _, a := range anchors {
		if err := identity.CheckAnchor(a); err != nil {
			return nil, nil, fmt.Errorf("--anchor %s: %w; --anchor takes the trust anchor all clusters share (mcgate identity anchor)", anchor, err)
		}
	}
	return issuer, anchors, nil
}

func parseSANs(sans []string) (dns []string, uris []*url.URL, err error) {
	for _, s := range sans {
		if !strings.Contains(s, "://") {
			dns = append(dns, s)
			continue
		}
		u, err := url.Parse(s)
		if err != nil {
			return nil, nil, fmt.Errorf("--san %q: %w", s, err)
		}
		uris = append(uris, u)
	}
	return dns, uris, nil
}

func isSelfSigned(c *x509.Certificate) bool {
	return c.CheckSignatureFrom(c) == nil
}

// checkChain catches an --anchor that did not sign --ca before the files
// are written. It checks signatures only, not validity periods, so that
// tests can make leaves that are expired or not yet valid on purpose.
func checkChain(leaf *x509.Certificate, chain, anchors []*x509.Certificate) error {
	cur := leaf
	for _, c := range chain {
		if err := cur.CheckSignatureFrom(c); err != nil {
			return err
		}
		cur = c
	}
	for _, a := range anchors {
		if cur.Equal(a) || cur.CheckSignatureFrom(a) == nil {
			return nil
		}
	}
	return fmt.Errorf("no certificate in it signed %q", cur.Subject.CommonName)
}

// describe prints what was written, like step does.
func describe(cmd *cobra.Command, what string, c *x509.Certificate, files ...string) error {
	_, err := fmt.Fprintf(cmd.OutOrStdout(), "Wrote %s (CN %s, valid %s to %s): %s\n", what,
		c.Subject.CommonName, c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339),
		strings.Join(files, ", "))
	return err
}
