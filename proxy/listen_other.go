//go:build !linux

package proxy

import "net"

// listenTCP is net.Listen, which sets keepalive on each accepted connection.
func listenTCP(addr string) (net.Listener, error) { return net.Listen("tcp", addr) }

// limitUnsent is Linux only (TCP_NOTSENT_LOWAT, see listen_linux.go).
func limitUnsent(net.Conn, int) {}
