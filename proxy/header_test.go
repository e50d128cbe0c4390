package proxy

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
)

func TestTransportHeaderRoundTrip(t *testing.T) {
	for _, h := range []TransportHeader{
		{Port: 8080, Name: "api.production.svc.cluster.local"},
		{Port: 1},
		{Port: 65535, Name: "x.y.svc.cluster.local."},
	} {
		wire := AppendTransportHeader(nil, h)
		wire = append(wire, "payload"...)
		r := bufio.NewReader(bytes.NewReader(wire))
		got, err := ReadTransportHeader(r)
		if err != nil || got != h {
			t.Fatalf("got %+v, %v; want %+v", got, err, h)
		}
		rest, _ := io.ReadAll(r)
		if string(rest) != "payload" {
			t.Fatalf("bytes after the header: %q, want %q", rest, "payload")
		}
	}
}

// headerWire builds a header with an arbitrary protobuf body.
func headerWire(body []byte) []byte {
	b := []byte(transportPreface)
	b = binary.BigEndian.AppendUint32(b, uint32(len(body)))
	return append(b, body...)
}

func TestReadTransportHeaderRejects(t *testing.T) {
	negPort := protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), uint64(1<<40))
	session := protowire.AppendBytes(protowire.AppendTag(nil, 3, protowire.BytesType), []byte{0x0a, 0x00})
	okWithSession := append(protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), 80), session...)
	tests := []struct {
		name string
		wire []byte
		ok   bool
	}{
		{"empty", nil, false},
		{"bad preface", append([]byte("transport.l5d.io/v2\r\n\r\n"), 0, 0, 0, 0), false},
		{"4 GiB length", append([]byte(transportPreface), 0xff, 0xff, 0xff, 0xff), false},
		{"truncated body", append([]byte(transportPreface), 0, 0, 0, 10, 8), false},
		{"port beyond int32", headerWire(negPort), false},
		{"bad tag", headerWire([]byte{0xff}), false},
		{"session protocol ignored", headerWire(okWithSession), true},
		{"unknown field skipped", headerWire(protowire.AppendVarint(protowire.AppendTag(nil, 9, protowire.VarintType), 1)), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ReadTransportHeader(bufio.NewReader(bytes.NewReader(tt.wire)))
			if tt.ok != (err == nil) {
				t.Fatalf("err = %v, want ok=%v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, errBadHeader) {
				t.Fatalf("err %v is not errBadHeader", err)
			}
		})
	}
}

// FuzzReadTransportHeader: any input either parses to a header whose
// re-encoding parses the same, or fails with errBadHeader; nothing panics
// and nothing reads more than the header.
func FuzzReadTransportHeader(f *testing.F) {
	f.Add(AppendTransportHeader(nil, TransportHeader{Port: 8080, Name: "api.production.svc.cluster.local"}))
	f.Add(AppendTransportHeader(nil, TransportHeader{Port: -1}))
	f.Add(append([]byte(transportPreface), 0xff, 0xff, 0xff, 0xff))
	f.Add(headerWire([]byte{0x1a, 0x02, 0x0a, 0x00}))
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bufio.NewReader(bytes.NewReader(in))
		h, err := ReadTransportHeader(r)
		if err != nil {
			if !errors.Is(err, errBadHeader) {
				t.Fatalf("error %v is not errBadHeader", err)
			}
			return
		}
		again, err := ReadTransportHeader(bufio.NewReader(bytes.NewReader(AppendTransportHeader(nil, h))))
		if err != nil || again != h {
			t.Fatalf("re-encode of %+v gave %+v, %v", h, again, err)
		}
	})
}
