//go:build !linux

package proxy

import (
	"errors"
	"syscall"
	"time"
)

// errNoEpoll: without epoll, newParker returns a nil parker, which never
// parks: idle directions keep their goroutine and buffer, as before.
var errNoEpoll = errors.New("proxy: no epoll on this platform")

type epoll struct{}

func openEpoll() (*epoll, error) { return nil, errNoEpoll }

func (*epoll) watch(syscall.RawConn, uint64) error    { return errNoEpoll }
func (*epoll) wait(time.Time, func(tok uint64)) error { return errNoEpoll }
func (*epoll) close()                                 {}
