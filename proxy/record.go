package proxy

// recordHeaderLen is the size of a TLS record header: type, version, length.
const recordHeaderLen = 5

// recordCursor follows the record boundaries of a TLS byte stream, so that
// the transport can hand crypto/tls at most one record per read.
//
// Why: crypto/tls keeps its raw input in a bytes.Buffer that never shrinks
// (golang/go#43563). When a read brings a record and part of the next, the
// buffer must hold both and doubles to about 36 KiB, which every connection
// that once carried bulk data keeps for the rest of its life, idle or not.
// Handed one record at a time, crypto/tls empties the buffer after each
// record and it stays at the size of one (about 18 KiB).
//
// The cursor only shortens reads; it never drops or reorders bytes. A
// stream that is not TLS (or a peer that lies in its headers) costs at worst
// shorter reads, and crypto/tls refuses it as it would anyway.
type recordCursor struct {
	left int                   // bytes of the current record's body still to come
	hdr  [recordHeaderLen]byte // header bytes seen so far, while hn > 0
	hn   int
}

// advance moves the cursor over the bytes of b up to the end of the record
// in progress at b[0] and returns how many that is: len(b) when the record
// does not end within b. It returns at least 1 for a non-empty b.
func (c *recordCursor) advance(b []byte) int {
	n := 0
	for n < len(b) {
		if c.left > 0 {
			k := min(c.left, len(b)-n)
			c.left -= k
			n += k
			if c.left == 0 {
				return n
			}
			continue
		}
		k := copy(c.hdr[c.hn:], b[n:])
		c.hn += k
		n += k
		if c.hn < recordHeaderLen {
			return n
		}
		c.hn = 0
		c.left = int(c.hdr[3])<<8 | int(c.hdr[4])
		if c.left == 0 {
			return n // an empty record ends with its header
		}
	}
	return n
}
