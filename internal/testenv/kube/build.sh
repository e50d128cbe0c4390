#!/usr/bin/env bash
# Builds etcd, kube-apiserver and kube-controller-manager from the nested module
# in ./bins into a per-machine cache outside git and prints that folder.
#
#   internal/testenv/kube/build.sh          build when missing or stale, print the folder
#   internal/testenv/kube/build.sh --dir    print the folder only (no build)
#
# The folder is named for the pinned versions, so a version bump builds anew
# beside the old binaries; a stamp of every input (go.mod, go.sum, the mains and
# the Go version) rebuilds it when anything else in ./bins changes. A lock keeps
# two concurrent callers (parallel test packages, make kube-up) from building
# twice. A first build takes ~15 minutes on 2 cores; later ones reuse Go's
# build cache.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src=$here/bins
go=${GO:-go}

k8s=$(awk '$1=="k8s.io/kubernetes"{print $2; exit}' "$src/go.mod")
etcd=$(awk '$1=="go.etcd.io/etcd/server/v3"{print $2; exit}' "$src/go.mod")
dir=${MCGATE_CACHE:-$HOME/.cache/mcgate}/kube/k8s-$k8s-etcd-$etcd

if [[ ${1:-} == --dir ]]; then
	echo "$dir"
	exit 0
fi

bins=(etcd kube-apiserver kube-controller-manager)
stamp=$( (cd "$src" && cat go.mod go.sum ./*/main.go && "$go" version) | sha256sum | cut -c1-16)

fresh() {
	[[ -f $dir/.stamp && $(cat "$dir/.stamp") == "$stamp" ]] || return 1
	local b
	for b in "${bins[@]}"; do [[ -x $dir/$b ]] || return 1; done
}

if fresh; then
	echo "$dir"
	exit 0
fi

mkdir -p "$(dirname "$dir")"
exec 9>"$dir.lock"
flock 9
if fresh; then # someone else built it while we waited
	echo "$dir"
	exit 0
fi

# Same variables as upstream's hack/lib/version.sh, so `kubectl version` and
# /version report the pinned release rather than v0.0.0-master.
minor=${k8s#v*.}
minor=${minor%%.*}
major=${k8s#v}
major=${major%%.*}
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	ldflags+=" -X $pkg.gitVersion=$k8s -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
	ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done

tmp=$(mktemp -d "$dir.tmp.XXXXXX")
chmod 755 "$tmp"
trap 'rm -rf "$tmp"' EXIT
echo "kube: building ${bins[*]} ($k8s, etcd $etcd) into $dir; a first build takes ~15 min" >&2
start=$SECONDS
(cd "$src" && GOFLAGS=-buildvcs=false "$go" build -trimpath -ldflags "$ldflags" -o "$tmp/" ./etcd ./kube-apiserver ./kube-controller-manager)
echo "$stamp" >"$tmp/.stamp"
rm -rf "$dir"
mv "$tmp" "$dir"
trap - EXIT
echo "kube: built in $((SECONDS - start))s" >&2
echo "$dir"
