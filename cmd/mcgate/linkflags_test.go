package main

import (
	"reflect"
	"testing"
)

// TestLinkExclusionFlags: --excluded-labels and --excluded-annotations
// parse as Linkerd's (comma-separated, repeatable) into the options that
// become the Link's excludedLabels and excludedAnnotations; --endpoint-mode
// into the Link's mode (deploy.TestLinkExclusionsAndMode renders them).
func TestLinkExclusionFlags(t *testing.T) {
	for _, c := range []struct {
		args         []string
		labels, anns []string
		mode         string
	}{
		{nil, nil, nil, ""},
		{[]string{"--excluded-labels", "argocd.argoproj.io/*,team", "--excluded-annotations=prometheus.io/scrape"},
			[]string{"argocd.argoproj.io/*", "team"}, []string{"prometheus.io/scrape"}, ""},
		{[]string{"--excluded-labels", "a", "--excluded-labels", "b/*", "--endpoint-mode", "direct"}, []string{"a", "b/*"}, nil, "direct"},
	} {
		cmd := newLinkCmd()
		if err := cmd.ParseFlags(append([]string{"--cluster-name", "east"}, c.args...)); err != nil {
			t.Fatal(err)
		}
		labels, _ := cmd.Flags().GetStringSlice("excluded-labels")
		anns, _ := cmd.Flags().GetStringSlice("excluded-annotations")
		mode, _ := cmd.Flags().GetString("endpoint-mode")
		if len(labels) == 0 {
			labels = nil
		}
		if len(anns) == 0 {
			anns = nil
		}
		if !reflect.DeepEqual(labels, c.labels) || !reflect.DeepEqual(anns, c.anns) || mode != c.mode {
			t.Errorf("link %v: labels %v, annotations %v, mode %q", c.args, labels, anns, mode)
		}
	}
}
