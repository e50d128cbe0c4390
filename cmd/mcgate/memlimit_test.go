package main

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

func TestContainerMemoryLimit(t *testing.T) {
	dir := t.TempDir()
	files := 0
	write := func(content string) string {
		files++
		p := filepath.Join(dir, "memory.max."+strconv.Itoa(files))
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	noEnv := func(string) string { return "" }
	for _, tt := range []struct {
		name    string
		path    string
		env     func(string) string
		want    int64
		wantErr bool
	}{
		{"1 GiB limit", write("1073741824\n"), noEnv, 966367641, false},
		{"no limit", write("max\n"), noEnv, 0, false},
		{"no cgroup v2", filepath.Join(dir, "absent"), noEnv, 0, false},
		{"GOMEMLIMIT wins", write("1073741824\n"), func(k string) string {
			if k == "GOMEMLIMIT" {
				return "500MiB"
			}
			return ""
		}, 0, false},
		{"garbage", write("lots\n"), noEnv, 0, true},
	} {
		got, err := containerMemoryLimit(tt.path, tt.env)
		if got != tt.want || (err != nil) != tt.wantErr {
			t.Errorf("%s: got %d, %v; want %d, error %v", tt.name, got, err, tt.want, tt.wantErr)
		}
	}
}
