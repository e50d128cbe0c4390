package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestLinkGenAlias: Linkerd renamed `link` to `link-gen`; both work.
func TestLinkGenAlias(t *testing.T) {
	for _, name := range []string{"link", "link-gen"} {
		var out, errb bytes.Buffer
		if code := run([]string{name, "--help"}, &out, &errb); code != 0 || !strings.Contains(out.String(), "Run against the TARGET cluster") ||
			!strings.Contains(out.String(), "--cluster-name") {
			t.Errorf("mcgate %s --help: exit %d\n%s%s", name, code, out.String(), errb.String())
		}
	}
	var out, errb bytes.Buffer
	if code := run([]string{"link-gen"}, &out, &errb); code == 0 || !strings.Contains(errb.String(), "--cluster-name is required") {
		t.Errorf("mcgate link-gen: exit %d, stderr %q", code, errb.String())
	}
}

// TestLinkClusterDomainFlag: only a --cluster-domain the user gives reaches
// deploy.Link; left out, the target's gateway Service decides (deploy
// tests that), not the default shown in help.
func TestLinkClusterDomainFlag(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, ""},
		{[]string{"--cluster-domain", "east.example"}, "east.example"},
		{[]string{"--cluster-domain=cluster.local"}, "cluster.local"}, // the default, but given
	} {
		cmd := newLinkCmd()
		if err := cmd.ParseFlags(append([]string{"--cluster-name", "east"}, c.args...)); err != nil {
			t.Fatal(err)
		}
		if got := explicitFlag(cmd.Flags(), "cluster-domain"); got != c.want {
			t.Errorf("link %v: cluster domain %q, want %q", c.args, got, c.want)
		}
	}
}
