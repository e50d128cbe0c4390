package deploy

import (
	"fmt"
	"regexp"
	"strings"
)

// ImageRepository is where released mcgate images are published.
const ImageRepository = "ghcr.io/mcgate/mcgate"

// The one rule for image tags: an mcgate binary of version V runs from
// ImageRepository:V, V exactly as `mcgate version` prints it, which is
// what the Makefile passes to both -X main.version and the image tag
// (`make image-name`, `make image`; the Dockerfile documents the same
// command). A test in cmd/mcgate holds the three equal.

var (
	// imageTag is the syntax of a container image tag.
	imageTag = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)
	// releaseVersion is a release tag: v1.2.3, or a pre-release v1.2.3-rc.1.
	releaseVersion = regexp.MustCompile(`^v(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.]+)?$`)
)

// ImageFor returns the image reference of the binary of version v.
func ImageFor(v string) (string, error) {
	if !imageTag.MatchString(v) {
		return "", fmt.Errorf("version %q is not a valid image tag", v)
	}
	return ImageRepository + ":" + v, nil
}

// IsRelease reports whether v names a release, whose image is published.
// Development builds are not: "dev" (no version given), a commit
// (git describe's 26f9292 or v1.2.3-4-g26f9292) or a work tree with
// changes (…-dirty). The pre-release part of a release may hold letters,
// digits and dots but no hyphen, so a describe suffix (-4-g26f9292) never
// passes for one.
func IsRelease(v string) bool {
	return releaseVersion.MatchString(v) && !strings.HasSuffix(v, "-dirty")
}
