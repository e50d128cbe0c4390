package identity

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// linkerdDNSInfix joins "<sa>.<ns>" to the trust domain in the DNS form of an
// identity. Linkerd builds it as
// "<sa>.<ns>.serviceaccount.identity.<control-plane-ns>.<td>"; like the Link's
// default gatewayIdentity, we fix the control-plane namespace to "linkerd".
const linkerdDNSInfix = ".serviceaccount.identity.linkerd."

// Name is the identity of a Kubernetes service account in a trust domain. It
// has two spellings that mean the same thing:
//
//	spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>
//	<service-account>.<namespace>.serviceaccount.identity.linkerd.<trust-domain>
//
// Name is comparable: two Names are == when they name the same service
// account, whichever spelling they were parsed from. The zero Name names
// nothing.
type Name struct {
	td spiffeid.TrustDomain
	ns string
	sa string
}

// NewName returns the Name of service account sa in namespace ns of trust
// domain td. Namespace and service account must be DNS-1123 labels (no dots),
// so that the DNS spelling cannot be read two ways.
func NewName(td, ns, sa string) (Name, error) {
	n, err := newName(td, ns, sa)
	if err != nil {
		return Name{}, fmt.Errorf("identity: %w", err)
	}
	return n, nil
}

// newName is NewName with errors left for the caller to prefix.
func newName(td, ns, sa string) (Name, error) {
	trustDomain, err := spiffeid.TrustDomainFromString(td)
	if err != nil {
		return Name{}, fmt.Errorf("trust domain %q: %w", td, err)
	}
	if err := checkLabel("namespace", ns); err != nil {
		return Name{}, err
	}
	if err := checkLabel("service account", sa); err != nil {
		return Name{}, err
	}
	return Name{td: trustDomain, ns: ns, sa: sa}, nil
}

// ParseName reads an identity in either spelling: a SPIFFE ID
// (spiffe://<td>/ns/<ns>/sa/<sa>, exactly that path) or the Linkerd DNS form
// (<sa>.<ns>.serviceaccount.identity.linkerd.<td>, case-insensitive as DNS
// names are).
func ParseName(s string) (Name, error) {
	n, err := parseName(s)
	if err != nil {
		return Name{}, fmt.Errorf("identity: %q: %w", s, err)
	}
	return n, nil
}

// parseName is ParseName with errors left for the caller to prefix.
func parseName(s string) (Name, error) {
	if strings.HasPrefix(s, "spiffe://") {
		id, err := spiffeid.FromString(s)
		if err != nil {
			return Name{}, err
		}
		return nameFromID(id)
	}
	return nameFromDNS(s)
}

// NameFromSPIFFEID converts a SPIFFE ID of the form
// spiffe://<td>/ns/<ns>/sa/<sa> into a Name; any other path is an error.
func NameFromSPIFFEID(id spiffeid.ID) (Name, error) {
	n, err := nameFromID(id)
	if err != nil {
		return Name{}, fmt.Errorf("identity: %q: %w", id, err)
	}
	return n, nil
}

func nameFromID(id spiffeid.ID) (Name, error) {
	seg := strings.Split(id.Path(), "/")
	if len(seg) != 5 || seg[0] != "" || seg[1] != "ns" || seg[3] != "sa" {
		return Name{}, errors.New("path must be /ns/<namespace>/sa/<service-account>")
	}
	return newName(id.TrustDomain().Name(), seg[2], seg[4])
}

func nameFromDNS(s string) (Name, error) {
	lower, err := lowerASCII(s)
	if err != nil {
		return Name{}, err
	}
	head, td, ok := strings.Cut(lower, linkerdDNSInfix)
	if !ok {
		return Name{}, errors.New("want spiffe://<td>/ns/<ns>/sa/<sa> or <sa>.<ns>" + linkerdDNSInfix + "<td>")
	}
	sa, ns, ok := strings.Cut(head, ".")
	if !ok {
		return Name{}, errors.New("want <service-account>.<namespace> before " + linkerdDNSInfix[1:])
	}
	return newName(td, ns, sa)
}

// lowerASCII lower-cases a DNS name, refusing any byte outside ASCII first:
// strings.ToLower would fold some of them into ASCII letters (the Kelvin
// sign U+212A becomes 'k'), so that a name nobody issued or allowed would
// read as one that was.
func lowerASCII(s string) (string, error) {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return "", fmt.Errorf("%q: DNS names are ASCII", s)
		}
	}
	return strings.ToLower(s), nil
}

// checkLabel enforces RFC 1123 labels: what Kubernetes requires of namespace
// names and what keeps the DNS spelling unambiguous.
func checkLabel(what, v string) error {
	if v == "" || len(v) > 63 {
		return fmt.Errorf("%s %q must be 1 to 63 characters", what, v)
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		alnum := c >= 'a' && c <= 'z' || c >= '0' && c <= '9'
		if !alnum && (c != '-' || i == 0 || i == len(v)-1) {
			return fmt.Errorf("%s %q must be lowercase letters, digits and inner '-'", what, v)
		}
	}
	return nil
}

// TrustDomain returns the trust domain, e.g. "cluster.local".
func (n Name) TrustDomain() spiffeid.TrustDomain { return n.td }

// Namespace returns the service account's namespace.
func (n Name) Namespace() string { return n.ns }

// ServiceAccount returns the service account's name.
func (n Name) ServiceAccount() string { return n.sa }

// IsZero reports whether n is the zero Name.
func (n Name) IsZero() bool { return n == Name{} }

// SPIFFEID returns spiffe://<td>/ns/<ns>/sa/<sa>; the zero ID for the zero Name.
func (n Name) SPIFFEID() spiffeid.ID {
	if n.IsZero() {
		return spiffeid.ID{}
	}
	// The parts were validated when n was made, so this cannot fail.
	return spiffeid.RequireFromSegments(n.td, "ns", n.ns, "sa", n.sa)
}

// DNS returns <sa>.<ns>.serviceaccount.identity.linkerd.<td>, the spelling of
// Linkerd certificates and of a Link's gatewayIdentity; "" for the zero Name.
func (n Name) DNS() string {
	if n.IsZero() {
		return ""
	}
	return n.sa + "." + n.ns + linkerdDNSInfix + n.td.Name()
}

// String returns the SPIFFE spelling, the canonical one in logs.
func (n Name) String() string {
	if n.IsZero() {
		return ""
	}
	return n.SPIFFEID().String()
}
