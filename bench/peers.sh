#!/usr/bin/env bash
# Installs the peers the bench harness compares mcgate with. Debian packages go
# through apt; the Go peers are built in scratch modules under the cache, never
# in this repository, so their sources and go.sum stay out of git.
set -euo pipefail
cache="${MCGATE_CACHE:-$HOME/.cache/mcgate}/bench"
mkdir -p "$cache"

need_apt=()
command -v haproxy >/dev/null || need_apt+=(haproxy)
command -v nginx >/dev/null || need_apt+=(nginx-light)
[ -e /usr/lib/nginx/modules/ngx_stream_module.so ] || need_apt+=(libnginx-mod-stream)
command -v openssl >/dev/null || need_apt+=(openssl)
if [ ${#need_apt[@]} -gt 0 ]; then
  apt-get update -qq
  # The packages' own services are not wanted: the harness starts its own.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
  for s in haproxy nginx; do (systemctl stop "$s" || service "$s" stop || true) >/dev/null 2>&1; done
fi

build() { # name module-dir main-pkg go-get-args...
  local name=$1 dir=$2 pkg=$3; shift 3
  [ -x "$cache/$name" ] && return 0
  mkdir -p "$dir"
  (cd "$dir" && { [ -f go.mod ] || go mod init "scratch/$name" >/dev/null 2>&1; } \
    && GOFLAGS=-mod=mod GONOSUMDB=github.com/landlock-lsm/go-landlock go get "$@" \
    && GOFLAGS=-mod=mod go build -trimpath -o "$cache/$name.tmp" "$pkg" \
    && mv "$cache/$name.tmp" "$cache/$name")
}

build ghostunnel "$cache/src/ghostunnel" github.com/ghostunnel/ghostunnel \
  github.com/ghostunnel/ghostunnel@v1.8.4

caddydir="$cache/src/caddy-l4"
mkdir -p "$caddydir"
cat >"$caddydir/main.go" <<'GO'
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"
	_ "github.com/mholt/caddy-l4"
)

func main() { caddycmd.Main() }
GO
build caddy "$caddydir" . github.com/mholt/caddy-l4@v0.1.2 github.com/caddyserver/caddy/v2

echo "peers in $cache: $(ls "$cache" | grep -v '^src$' | tr '\n' ' ')"
