package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

var sampleResults = []CheckResult{
	{Name: "Link CRD exists", OK: true},
	{Name: "Links suit Linkerd-meshed clients", Warning: true, Detail: "Link east is in egress mode", Hint: "annotate it"},
	{Name: "the local gateway is ready", Detail: "deployment not found\nsecond line", Hint: "mcgate install"},
}

// TestWriteCheckAsJSON: -o json has the shape of `linkerd check -o json`
// (success, categories[].categoryName, checks[].description/hint/error/
// result), error and hint only on checks that did not succeed.
func TestWriteCheckAsJSON(t *testing.T) {
	var out bytes.Buffer
	if err := WriteCheckAs(&out, sampleResults, false, CheckJSON); err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	want := map[string]any{
		"success": false,
		"categories": []any{map[string]any{
			"categoryName": "mcgate-multicluster",
			"checks": []any{
				map[string]any{"description": "Link CRD exists", "result": "success"},
				map[string]any{"description": "Links suit Linkerd-meshed clients", "result": "warning", "error": "Link east is in egress mode", "hint": "annotate it"},
				map[string]any{"description": "the local gateway is ready", "result": "error", "error": "deployment not found\nsecond line", "hint": "mcgate install"},
			},
		}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got\n%s", out.String())
	}
	out.Reset()
	if err := WriteCheckAs(&out, nil, true, CheckJSON); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), `"checks": []`) {
		t.Errorf("no checks: want an empty list, not null:\n%s", out.String())
	}
}

// TestWriteCheckAsTableAndShort: table prints every check and the verdict;
// short only what did not pass, and on success the verdict alone.
func TestWriteCheckAsTableAndShort(t *testing.T) {
	for _, c := range []struct {
		format  string
		results []CheckResult
		ok      bool
		want    string
	}{
		{CheckTable, sampleResults, false, "mcgate multicluster\n-------------------\n√ Link CRD exists\n" +
			"‼ Links suit Linkerd-meshed clients\n    Link east is in egress mode\n    hint: annotate it\n" +
			"× the local gateway is ready\n    deployment not found\n    second line\n    hint: mcgate install\n\nStatus check results are ×\n"},
		{CheckShort, sampleResults, false, "mcgate multicluster\n-------------------\n" +
			"‼ Links suit Linkerd-meshed clients\n    Link east is in egress mode\n    hint: annotate it\n" +
			"× the local gateway is ready\n    deployment not found\n    second line\n    hint: mcgate install\n\nStatus check results are ×\n"},
		{CheckShort, sampleResults[:1], true, "Status check results are √\n"},
		{CheckTable, sampleResults[:1], true, "mcgate multicluster\n-------------------\n√ Link CRD exists\n\nStatus check results are √\n"},
	} {
		var out bytes.Buffer
		if err := WriteCheckAs(&out, c.results, c.ok, c.format); err != nil {
			t.Fatal(err)
		}
		if out.String() != c.want {
			t.Errorf("-o %s:\n%s\nwant\n%s", c.format, out.String(), c.want)
		}
	}
	if err := WriteCheckAs(&bytes.Buffer{}, nil, true, "wide"); err == nil {
		t.Error("-o wide accepted")
	}
}

// TestRetry: --wait retries until the try passes, gives up when the
// duration has passed, tries once with no duration, and stops when the
// context ends.
func TestRetry(t *testing.T) {
	calls := 0
	if !Retry(context.Background(), time.Minute, time.Millisecond, func(context.Context) bool { calls++; return calls == 3 }) || calls != 3 {
		t.Errorf("passes on the third try: got %d tries", calls)
	}
	calls = 0
	if Retry(context.Background(), 0, time.Millisecond, func(context.Context) bool { calls++; return false }) || calls != 1 {
		t.Errorf("no wait: %d tries, want 1", calls)
	}
	calls = 0
	if Retry(context.Background(), 50*time.Millisecond, time.Millisecond, func(context.Context) bool { calls++; return false }) || calls < 2 {
		t.Errorf("50ms wait never passing: %d tries, want several and false", calls)
	}
	ctx, cancel := context.WithCancel(context.Background())
	calls = 0
	if Retry(ctx, time.Hour, time.Hour, func(context.Context) bool { calls++; cancel(); return false }) || calls != 1 {
		t.Errorf("cancelled: %d tries", calls)
	}
}
