// Package crds embeds the CustomResourceDefinitions mcgate installs, so
// `mcgate install` and the test clusters apply the same bytes.
package crds

import "embed"

// FS holds every CRD manifest of this directory: the files named for their
// CRD (<plural>.<group>.yaml), not kustomization.yaml.
//
//go:embed *.*.yaml
var FS embed.FS
