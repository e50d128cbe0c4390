package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/mcgate/mcgate/deploy"
)

// repoRoot is where the Makefile and the Dockerfile are.
const repoRoot = "../.."

// makeOutput runs make in the repository with VERSION=v and the image
// variables at their defaults, whatever the environment says.
func makeOutput(t *testing.T, v string, args ...string) string {
	t.Helper()
	cmd := exec.Command("make", append([]string{"--no-print-directory", "-C", repoRoot, "VERSION=" + v}, args...)...)
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "IMAGE=") && !strings.HasPrefix(e, "IMAGE_REPO=") && !strings.HasPrefix(e, "MAKEFLAGS=") {
			cmd.Env = append(cmd.Env, e)
		}
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// dockerfileBuildLine is the build command the Dockerfile documents, with
// $VERSION replaced by v.
func dockerfileBuildLine(t *testing.T, v string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if l, ok := strings.CutPrefix(l, "#   docker build "); ok {
			return "docker build " + strings.ReplaceAll(l, "$VERSION", v)
		}
	}
	t.Fatal(`the Dockerfile documents no "#   docker build" command`)
	return ""
}

// withVersion runs f as a binary built with -X main.version=v.
func withVersion(t *testing.T, v string, f func()) {
	t.Helper()
	saved := version
	version = v
	defer func() { version = saved }()
	f()
}

// TestImageRule holds the one rule for the image tag: the binary of version
// V renders ghcr.io/mcgate/mcgate:V, which is what `make image-name` prints,
// what `make image` builds (and the Dockerfile documents), with V passed
// to the build and printed by `mcgate version`. Development builds warn
// that no such image is published.
func TestImageRule(t *testing.T) {
	for _, c := range []struct {
		version string
		release bool
	}{
		{"v1.2.3", true},
		{"v0.4.0-rc.1", true},
		{"dev", false},
		{"26f9292", false},
		{"26f9292-dirty", false},
		{"v1.2.3-4-g26f9292", false},
		{"v1.2.3-dirty", false},
		{"v1.2.3-4-g26f9292-dirty", false},
		{"1.2.3", false}, // tags are v-prefixed: a bare number names no tag
	} {
		t.Run(c.version, func(t *testing.T) {
			want := "ghcr.io/mcgate/mcgate:" + c.version
			withVersion(t, c.version, func() {
				var out, errb bytes.Buffer
				if code := run([]string{"version"}, &out, &errb); code != 0 || out.String() != "mcgate "+c.version+"\n" {
					t.Errorf("mcgate version: exit %d, %q", code, out.String())
				}
				objs, stderr := install(t, "-o", "json")
				if got := objs.deployment.Spec.Template.Spec.Containers[0].Image; got != want {
					t.Errorf("install renders image %s, want %s", got, want)
				}
				warned := strings.Contains(stderr, "warning: mcgate "+c.version+" is a development build and no image "+want+" is published") &&
					strings.Contains(stderr, "--image")
				if warned == c.release {
					t.Errorf("release %v, stderr %q", c.release, stderr)
				}
			})
			if got := makeOutput(t, c.version, "-s", "image-name"); got != want {
				t.Errorf("make image-name prints %s, want %s", got, want)
			}
			build := makeOutput(t, c.version, "-n", "image")
			if wantBuild := "docker build --build-arg VERSION=" + c.version + " -t " + want + " ."; build != wantBuild {
				t.Errorf("make image runs %q, want %q", build, wantBuild)
			}
			if doc := dockerfileBuildLine(t, c.version); doc != build {
				t.Errorf("the Dockerfile documents %q, make image runs %q", doc, build)
			}
			b := makeOutput(t, c.version, "-n", "build")
			if !slices.Contains(strings.Fields(strings.ReplaceAll(b, "'", " ")), "main.version="+c.version) {
				t.Errorf("make build does not set the version:\n%s", b)
			}
		})
	}
	// The Dockerfile passes its VERSION argument on to the binary.
	b, err := os.ReadFile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte("ARG VERSION")) || !bytes.Contains(b, []byte("-X main.version=${VERSION}")) {
		t.Error("the Dockerfile does not build its VERSION into the binary")
	}
	if deploy.IsRelease("") {
		t.Error("the empty version passes for a release")
	}
}

func TestNoImageForAnUntaggableVersion(t *testing.T) {
	withVersion(t, "v1.2.3+build.5", func() {
		var out, errb bytes.Buffer
		if code := run([]string{"install"}, &out, &errb); code == 0 || !strings.Contains(errb.String(), "is not a valid image tag") ||
			!strings.Contains(errb.String(), "--image") {
			t.Errorf("exit %d, stderr %q", code, errb.String())
		}
		out.Reset()
		errb.Reset()
		if code := run([]string{"install", "--image", "registry.example/mcgate:x"}, &out, &errb); code != 0 || errb.Len() != 0 {
			t.Errorf("with --image: exit %d, stderr %q", code, errb.String())
		}
	})
}
