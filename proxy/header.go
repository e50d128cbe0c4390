package proxy

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"

	"google.golang.org/protobuf/encoding/protowire"
)

// TransportHeaderALPN is the ALPN protocol under which a connection starts
// with a Linkerd transport header.
const TransportHeaderALPN = "transport.l5d.io/v1"

// transportPreface starts every transport header.
const transportPreface = "transport.l5d.io/v1\r\n\r\n"

// maxHeaderLen bounds the protobuf part of a transport header. A real header
// holds a DNS name and two small fields; anything larger is hostile.
const maxHeaderLen = 4 << 10

var errBadHeader = errors.New("malformed transport header")

// TransportHeader is Linkerd's transport.l5d.io.Header:
// {int32 port = 1; string name = 2; SessionProtocol session_protocol = 3}.
// mcgate splices bytes, so the session protocol is read and ignored.
type TransportHeader struct {
	Port int32
	Name string
}

// ReadTransportHeader reads one header from r: the preface, a 4-byte
// big-endian length and the protobuf message. It reads exactly the header's
// bytes, so what follows stays in r for the backend.
func ReadTransportHeader(r *bufio.Reader) (TransportHeader, error) {
	var prefix [len(transportPreface) + 4]byte
	if _, err := io.ReadFull(r, prefix[:]); err != nil {
		return TransportHeader{}, fmt.Errorf("%w: %w", errBadHeader, err)
	}
	if string(prefix[:len(transportPreface)]) != transportPreface {
		return TransportHeader{}, fmt.Errorf("%w: bad preface", errBadHeader)
	}
	n := binary.BigEndian.Uint32(prefix[len(transportPreface):])
	if n > maxHeaderLen {
		return TransportHeader{}, fmt.Errorf("%w: length %d exceeds %d", errBadHeader, n, maxHeaderLen)
	}
	msg := make([]byte, n)
	if _, err := io.ReadFull(r, msg); err != nil {
		return TransportHeader{}, fmt.Errorf("%w: %w", errBadHeader, err)
	}
	return parseHeaderMessage(msg)
}

func parseHeaderMessage(b []byte) (TransportHeader, error) {
	var h TransportHeader
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return h, fmt.Errorf("%w: %w", errBadHeader, protowire.ParseError(n))
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.VarintType:
			v, m := protowire.ConsumeVarint(b)
			if m < 0 {
				return h, fmt.Errorf("%w: port: %w", errBadHeader, protowire.ParseError(m))
			}
			// int32 fields are sign-extended varints; reject anything that
			// does not fit rather than truncating it into a valid port.
			if int64(v) < math.MinInt32 || int64(v) > math.MaxInt32 {
				return h, fmt.Errorf("%w: port %d out of int32", errBadHeader, int64(v))
			}
			h.Port, b = int32(int64(v)), b[m:]
		case num == 2 && typ == protowire.BytesType:
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return h, fmt.Errorf("%w: name: %w", errBadHeader, protowire.ParseError(m))
			}
			h.Name, b = string(v), b[m:]
		default:
			m := protowire.ConsumeFieldValue(num, typ, b)
			if m < 0 {
				return h, fmt.Errorf("%w: field %d: %w", errBadHeader, num, protowire.ParseError(m))
			}
			b = b[m:]
		}
	}
	return h, nil
}

// AppendTransportHeader appends the wire form of h to dst (used by egress in
// header mode, and by tests).
func AppendTransportHeader(dst []byte, h TransportHeader) []byte {
	var msg []byte
	if h.Port != 0 {
		msg = protowire.AppendTag(msg, 1, protowire.VarintType)
		msg = protowire.AppendVarint(msg, uint64(int64(h.Port)))
	}
	if h.Name != "" {
		msg = protowire.AppendTag(msg, 2, protowire.BytesType)
		msg = protowire.AppendString(msg, h.Name)
	}
	dst = append(dst, transportPreface...)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(msg)))
	return append(dst, msg...)
}
