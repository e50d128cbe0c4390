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
