//go:build !linux

package proxy

import (
	"net"
	"syscall"
)

// rawConn is nil: elsewhere sources are read through net.Conn (see
// pollRead).
func rawConn(net.Conn) syscall.RawConn { return nil }

// read is never called: pollRead is never in use.
func (p *pollRead) read([]byte) (int, error) { return 0, errWouldBlock }
