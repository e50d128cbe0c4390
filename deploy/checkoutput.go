package deploy

import (
	"encoding/json"
	"fmt"
	"io"
)

// Output formats of `mcgate check`, as `linkerd check -o`.
const (
	CheckTable = "table"
	CheckShort = "short"
	CheckJSON  = "json"
)

// CheckCategory is the one category of `mcgate check` (Linkerd groups its
// checks by category; its multicluster extension's is linkerd-multicluster).
const CheckCategory = "mcgate-multicluster"

// CheckOutput is the JSON of `mcgate check -o json`, shaped as
// `linkerd check -o json` prints it.
type CheckOutput struct {
	Success    bool                  `json:"success"`
	Categories []CheckOutputCategory `json:"categories"`
}

// CheckOutputCategory groups checks, as Linkerd's.
type CheckOutputCategory struct {
	Name   string            `json:"categoryName"`
	Checks []CheckOutputLine `json:"checks"`
}

// CheckOutputLine is one check: result is success, warning or error;
// error and hint only when it did not succeed. Linkerd's hint is a URL;
// mcgate's is the command to run.
type CheckOutputLine struct {
	Description string `json:"description"`
	Hint        string `json:"hint,omitempty"`
	Error       string `json:"error,omitempty"`
	Result      string `json:"result"`
}

// WriteCheckAs prints results in format (table, short or json) and, except
// for json, Linkerd's closing "Status check results are √" or "×".
func WriteCheckAs(w io.Writer, results []CheckResult, ok bool, format string) error {
	switch format {
	case CheckJSON:
		return writeCheckJSON(w, results, ok)
	case CheckShort:
		var failed []CheckResult
		for _, r := range results {
			if !r.OK {
				failed = append(failed, r)
			}
		}
		if len(failed) > 0 {
			if err := WriteCheck(w, failed); err != nil {
				return err
			}
			fmt.Fprintln(w)
		}
	case CheckTable, "":
		if err := WriteCheck(w, results); err != nil {
			return err
		}
		fmt.Fprintln(w)
	default:
		return fmt.Errorf("output format %q: want table, short or json", format)
	}
	mark := "√"
	if !ok {
		mark = "×"
	}
	_, err := fmt.Fprintf(w, "Status check results are %s\n", mark)
	return err
}

func writeCheckJSON(w io.Writer, results []CheckResult, ok bool) error {
	cat := CheckOutputCategory{Name: CheckCategory, Checks: []CheckOutputLine{}}
	for _, r := range results {
		line := CheckOutputLine{Description: r.Name, Result: "success"}
		if !r.OK {
			line.Result, line.Error, line.Hint = "error", r.Detail, r.Hint
			if r.Warning {
				line.Result = "warning"
			}
		}
		cat.Checks = append(cat.Checks, line)
	}
	b, err := json.MarshalIndent(CheckOutput{Success: ok, Categories: []CheckOutputCategory{cat}}, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}
