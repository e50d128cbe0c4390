package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net/http"

	"golang.org/x/net/http2/hpack"
)

// sniffBufferSize bounds how much of a connection is read before a target
// is chosen from its HTTP authority. The bytes stay buffered and are
// replayed to the backend.
const sniffBufferSize = 16 << 10

var errNoAuthority = errors.New("no HTTP authority in the first request")

const http2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// SniffAuthority returns the authority of the first HTTP request buffered
// in r (HTTP/1 Host, or HTTP/2 :authority from the first HEADERS frame)
// without consuming anything. r must have been made with a buffer of at
// least sniffBufferSize; the caller bounds the wait with a read deadline.
func SniffAuthority(r *bufio.Reader) (string, error) {
	first, err := r.Peek(1)
	if err != nil {
		return "", fmt.Errorf("%w: %w", errNoAuthority, err)
	}
	if first[0] == http2Preface[0] {
		if p, err := r.Peek(len(http2Preface)); err == nil && string(p) == http2Preface {
			return sniffHTTP2(r)
		}
	}
	return sniffHTTP1(r)
}

func sniffHTTP1(r *bufio.Reader) (string, error) {
	for n := 1; ; n = r.Buffered() + 1 {
		if n > r.Size() {
			return "", fmt.Errorf("%w: HTTP/1 header block larger than %d bytes", errNoAuthority, r.Size())
		}
		buf, err := r.Peek(n)
		if err != nil {
			return "", fmt.Errorf("%w: %w", errNoAuthority, err)
		}
		buf, _ = r.Peek(r.Buffered())
		// Give up early on bytes that cannot start a request line, so that
		// a non-HTTP client is refused at once rather than at the deadline.
		if !plausibleRequestLine(buf) {
			return "", fmt.Errorf("%w: not an HTTP/1 request", errNoAuthority)
		}
		if end := bytes.Index(buf, []byte("\r\n\r\n")); end >= 0 {
			req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(buf[:end+4])))
			if err != nil {
				return "", fmt.Errorf("%w: %w", errNoAuthority, err)
			}
			if req.Host == "" {
				return "", fmt.Errorf("%w: request without Host", errNoAuthority)
			}
			return req.Host, nil
		}
	}
}

// plausibleRequestLine reports whether b can be the start of an HTTP/1
// request line: an upper-case method token, then a space.
func plausibleRequestLine(b []byte) bool {
	for i, c := range b {
		switch {
		case c >= 'A' && c <= 'Z':
		case c == ' ' && i > 0:
			return true
		default:
			return false
		}
		if i >= 16 {
			return false
		}
	}
	return true
}

const (
	frameHeaders      = 0x1
	frameContinuation = 0x9
	flagEndHeaders    = 0x4
	flagPadded        = 0x8
	flagPriority      = 0x20
)

// sniffHTTP2 walks the frames after the client preface up to the end of
// the first header block and decodes its :authority with HPACK.
func sniffHTTP2(r *bufio.Reader) (string, error) {
	off := len(http2Preface)
	var block []byte
	inHeaders := false
	for {
		hdr, err := peekAt(r, off, 9)
		if err != nil {
			return "", err
		}
		length := int(hdr[0])<<16 | int(hdr[1])<<8 | int(hdr[2])
		typ, flags := hdr[3], hdr[4]
		payload, err := peekAt(r, off+9, length)
		if err != nil {
			return "", err
		}
		off += 9 + length
		switch {
		case inHeaders && typ != frameContinuation:
			return "", fmt.Errorf("%w: HTTP/2 header block interrupted", errNoAuthority)
		case typ == frameHeaders:
			frag, err := headersFragment(payload, flags)
			if err != nil {
				return "", err
			}
			block, inHeaders = append(block, frag...), true
		case typ == frameContinuation && inHeaders:
			block = append(block, payload...)
		default:
			continue // SETTINGS, WINDOW_UPDATE, PRIORITY … before the request
		}
		if flags&flagEndHeaders != 0 {
			return decodeAuthority(block)
		}
	}
}

// peekAt returns n bytes at offset off of r's buffer, waiting for them.
func peekAt(r *bufio.Reader, off, n int) ([]byte, error) {
	if off+n > r.Size() {
		return nil, fmt.Errorf("%w: HTTP/2 preamble larger than %d bytes", errNoAuthority, r.Size())
	}
	b, err := r.Peek(off + n)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errNoAuthority, err)
	}
	return b[off:], nil
}

func headersFragment(p []byte, flags byte) ([]byte, error) {
	pad := 0
	if flags&flagPadded != 0 {
		if len(p) < 1 {
			return nil, fmt.Errorf("%w: short padded HEADERS", errNoAuthority)
		}
		pad, p = int(p[0]), p[1:]
	}
	if flags&flagPriority != 0 {
		if len(p) < 5 {
			return nil, fmt.Errorf("%w: short HEADERS priority", errNoAuthority)
		}
		p = p[5:] // stream dependency and weight: no bearing on the authority
	}
	if pad > len(p) {
		return nil, fmt.Errorf("%w: HEADERS padding exceeds payload", errNoAuthority)
	}
	return p[:len(p)-pad], nil
}

func decodeAuthority(block []byte) (string, error) {
	var authority, host string
	dec := hpack.NewDecoder(4096, func(f hpack.HeaderField) {
		switch f.Name {
		case ":authority":
			authority = f.Value
		case "host":
			host = f.Value
		}
	})
	dec.SetMaxStringLength(sniffBufferSize)
	if _, err := dec.Write(block); err != nil {
		return "", fmt.Errorf("%w: hpack: %w", errNoAuthority, err)
	}
	if err := dec.Close(); err != nil {
		return "", fmt.Errorf("%w: hpack: %w", errNoAuthority, err)
	}
	if authority == "" {
		authority = host
	}
	if authority == "" {
		return "", fmt.Errorf("%w: HTTP/2 request without :authority", errNoAuthority)
	}
	return authority, nil
}
