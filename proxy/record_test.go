package proxy

import (
	"bytes"
	"io"
	"testing"
)

// record makes one TLS record of the given type with body filled with b.
func record(typ byte, body int, b byte) []byte {
	r := []byte{typ, 3, 3, byte(body >> 8), byte(body)}
	return append(r, bytes.Repeat([]byte{b}, body)...)
}

// recordEnds gives the offsets in stream where records end (the cursor's
// reference, by a plain walk over the headers).
func recordEnds(stream []byte) map[int]bool {
	ends := map[int]bool{}
	for at := 0; at+recordHeaderLen <= len(stream); {
		at += recordHeaderLen + (int(stream[at+3])<<8 | int(stream[at+4]))
		ends[at] = true
	}
	return ends
}

// checkCursor feeds stream to a cursor in chunks of the given size and
// checks that every piece it returns ends at a chunk's end or a record's end
// and has no record end inside it; it returns the piece lengths.
func checkCursor(t *testing.T, stream []byte, chunk int) []int {
	t.Helper()
	ends := recordEnds(stream)
	var c recordCursor
	var pieces []int
	for at := 0; at < len(stream); {
		chunkEnd := min(at+chunk, len(stream))
		for at < chunkEnd {
			n := c.advance(stream[at:chunkEnd])
			if n < 1 {
				t.Fatalf("advance returned %d at offset %d", n, at)
			}
			for i := at + 1; i < at+n; i++ {
				if ends[i] {
					t.Fatalf("piece %d..%d crosses the record end at %d", at, at+n, i)
				}
			}
			if end := at + n; end != chunkEnd && !ends[end] {
				t.Fatalf("piece %d..%d stops short of both its chunk's end (%d) and a record end", at, end, chunkEnd)
			}
			pieces = append(pieces, n)
			at += n
		}
	}
	return pieces
}

func TestRecordCursor(t *testing.T) {
	two := append(record(23, 100, 'a'), record(23, 50, 'b')...)
	for _, tc := range []struct {
		name   string
		stream []byte
		chunk  int
		want   []int
	}{
		{"one record, one read", record(23, 100, 'a'), 1 << 10, []int{105}},
		{"two records in one read come apart", two, 1 << 10, []int{105, 55}},
		{"header split across reads", two, 3, nil},
		{"reads smaller than a header", record(22, 7, 'c'), 2, []int{2, 2, 2, 2, 2, 2}},
		{"empty record ends with its header", append(record(23, 0, 0), record(21, 2, 1)...), 64, []int{5, 7}},
		{"body split across reads", record(23, 16<<10, 'd'), 4 << 10, []int{4096, 4096, 4096, 4096, 5}},
		{"max-size records", append(record(23, 1<<14+256, 'e'), record(23, 1<<14+256, 'f')...), 64 << 10, []int{16645, 16645}},
		{"not TLS at all: reads only get shorter", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), 64, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := checkCursor(t, tc.stream, tc.chunk)
			if tc.want != nil && !equalInts(got, tc.want) {
				t.Errorf("pieces %v, want %v", got, tc.want)
			}
		})
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// FuzzRecordCursor: on any byte stream read in any chunk size, the cursor
// returns pieces that cover the stream, never cross a record end and stop
// only at a chunk's or a record's end.
func FuzzRecordCursor(f *testing.F) {
	f.Add(append(record(23, 100, 'a'), record(21, 2, 1)...), uint16(7))
	f.Add(record(22, 300, 0), uint16(1))
	f.Add([]byte{23, 3, 3, 0xff, 0xff, 1, 2, 3}, uint16(4))
	f.Add([]byte{23, 3, 3, 0, 0, 23, 3, 3, 0, 1, 9}, uint16(100))
	f.Fuzz(func(t *testing.T, stream []byte, chunk uint16) {
		checkCursor(t, stream, int(chunk%512)+1)
	})
}

// TestTransportHandsOneRecordPerRead: records that arrive in one segment
// reach crypto/tls one per read, direct or read ahead, intact and in order;
// the bytes set aside go back to the budget once served. Without budget the
// transport returns all it read, as crypto/tls would read on its own.
func TestTransportHandsOneRecordPerRead(t *testing.T) {
	recs := [][]byte{record(23, 1000, 'a'), record(23, 16<<10, 'b'), record(21, 2, 'c')}
	stream := bytes.Join(recs, nil)
	for _, tc := range []struct {
		name      string
		readAhead bool
		budget    *bufferBudget
		bounded   bool // reads stop at record ends
		want      []int
	}{
		{"direct", false, newBufferBudget(transportBufSize, nil), true, []int{1005, 16389, 7}},
		{"read ahead", true, newBufferBudget(transportBufSize, nil), true, []int{1005, 16389, 7}},
		{"direct without budget", false, newBufferBudget(0, nil), false, []int{len(stream)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, s := tcpPair(t)
			tr := newTransport(s, tc.budget)
			tr.readAhead = tc.readAhead
			if _, err := c.Write(stream); err != nil {
				t.Fatal(err)
			}
			var got []byte
			var sizes []int
			p := make([]byte, 32<<10)
			for len(got) < len(stream) {
				n, err := tr.Read(p)
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, p[:n]...)
				sizes = append(sizes, n)
			}
			if !bytes.Equal(got, stream) {
				t.Fatal("bytes changed on the way")
			}
			// TCP may split the write, so the exact sizes are checked only
			// when the reads came out as many as the records; no read may
			// ever cross a record end.
			ends := recordEnds(stream)
			at := 0
			for _, n := range sizes {
				for i := at + 1; i < at+n; i++ {
					if ends[i] && tc.bounded {
						t.Fatalf("read %d..%d crosses the record end at %d", at, at+n, i)
					}
				}
				at += n
			}
			if tc.want != nil && len(sizes) == len(tc.want) && !equalInts(sizes, tc.want) {
				t.Errorf("reads %v, want %v", sizes, tc.want)
			}
			if n := tc.budget.inUse(); n != 0 {
				t.Errorf("budget in use %d after everything was read", n)
			}
			c.Close()
			if _, err := tr.Read(p); err != io.EOF {
				t.Errorf("read after the peer closed: %v, want EOF", err)
			}
		})
	}
}
