package proxy

import (
	"errors"
	"io"
	"os"
	"time"
)

// errTruncated ends a splice whose TLS source stopped without close_notify:
// its peer closed TCP (or it broke off in the middle of a record) instead of
// ending the TLS stream. Nothing tells the other peer whether it saw all
// the bytes, so it must not see a clean end: the splice aborts, and both
// peers get a TCP reset. A clean end is close_notify and then FIN, which is
// passed on as a half-close (close_notify and FIN on a TLS side, FIN on a
// plain one) and keeps the other way open.
//
// crypto/tls itself tells a truncation apart only within a record
// (io.ErrUnexpectedEOF); at a record boundary it returns io.EOF, as for
// close_notify. The transport under it tells the two apart: after
// close_notify crypto/tls never reads the socket again, so a transport that
// read the socket's EOF saw the peer leave without it.
var errTruncated = errors.New("proxy: TLS stream ended without close_notify")

// fill reads from src into buf once, by one of four paths, and says how
// src ended: io.EOF for a clean end, errTruncated for a truncated one, any
// other error as it came.
//
//	source              pollRead in use             not in use
//	plain TCP           pollRead.read (syscall)     src.r.Read
//	TLS                 src.r.Read; the transport   src.r.Read
//	                    reads through pollRead
//	TLS, large buffer   then the records already held, without waiting:
//	                    errWouldBlock ends them     an expired deadline does
//
// A read that returns fewer bytes than buf holds has emptied what src had
// at hand, so a plain source needs no more. crypto/tls returns one record
// per read: with a large buffer (bulk data) the records it holds, or that
// already wait in the socket, follow in the same fill, so that one write to
// dst carries several of them.
func (d *direction) fill(buf []byte) (n int, err error) {
	src := d.src
	if src.tr == nil && d.poll.ready() {
		n, err = d.poll.read(buf)
	} else {
		n, err = src.r.Read(buf)
	}
	if src.tr != nil && d.large && n > 0 && n < len(buf) && err == nil {
		n, err = d.readHeld(buf, n)
	}
	if err != nil {
		err = src.streamEnd(err)
	}
	return n, err
}

// readHeld appends to buf[:n] the records crypto/tls already holds
// decrypted or received, without waiting for the network. Through pollRead
// a read that would wait says so at once; otherwise an expired deadline,
// restored on return, makes the socket read fail at once (no syscall).
// Either way crypto/tls keeps the error non-fatal and keeps the partial
// record it holds for the next read.
func (d *direction) readHeld(buf []byte, n int) (int, error) {
	if !d.poll.ready() {
		d.src.conn.SetReadDeadline(expired)
		defer func() { d.src.conn.SetReadDeadline(d.s.readDeadline(time.Now(), d.canPark)) }()
	}
	for n < len(buf) {
		m, err := d.src.r.Read(buf[n:])
		n += m
		if err != nil {
			if err == errWouldBlock || errors.Is(err, os.ErrDeadlineExceeded) {
				err = nil
			}
			return n, err
		}
	}
	return n, nil
}

// streamEnd is what a read error of the side means for its stream:
// errTruncated for a TLS stream that ended without close_notify, else err.
// A TLS side without a transport cannot tell truncation at a record
// boundary from close_notify, and takes crypto/tls's io.EOF as clean.
func (s *side) streamEnd(err error) error {
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF):
		return errTruncated
	case errors.Is(err, io.EOF) && s.tr != nil && s.tr.readEOF:
		return errTruncated
	}
	return err
}
