//go:build linux

package proxy

import (
	"io"
	"net"
	"os"
	"syscall"
)

// rawConn is c's RawConn when pollRead can read it: a TCP connection.
func rawConn(c net.Conn) syscall.RawConn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}

// read reads the socket once, unless it is known to be empty; only inside
// callback.
func (p *pollRead) read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	if p.empty {
		return 0, errWouldBlock
	}
	for {
		n, err := syscall.Read(p.fd, b)
		switch err {
		case nil:
			if n == 0 {
				return 0, io.EOF
			}
			p.empty = n < len(b)
			return n, nil
		case syscall.EINTR:
		case syscall.EAGAIN:
			p.empty = true
			return 0, errWouldBlock
		default:
			return 0, &net.OpError{Op: "read", Net: "tcp", Source: p.conn.LocalAddr(), Addr: p.conn.RemoteAddr(),
				Err: os.NewSyscallError("read", err)}
		}
	}
}
