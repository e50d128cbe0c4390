package mirror

import (
	"testing"
	"time"
)

func TestWriteMemo(t *testing.T) {
	now := time.Unix(1000, 0)
	w := newWriteMemo()
	w.now = func() time.Time { return now }
	w.wrote("k", "10", "A", "out")

	for _, c := range []struct {
		name         string
		cachedRV, fp string
		after        time.Duration
		wantUnseen   bool
	}{
		{"cache still shows what the write replaced", "10", "A", 0, true},
		{"cache has caught up", "11", "A", 0, false},
		{"someone else wrote since", "12", "A", 0, false},
		{"a different write is wanted", "10", "B", 0, false},
		{"unencodable desired state never matches", "10", "", 0, false},
		{"memo expired: write again", "10", "A", memoLife + time.Second, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			now = time.Unix(1000, 0).Add(c.after)
			out, ok := w.unseen("k", c.cachedRV, c.fp)
			if ok != c.wantUnseen || (ok && out != "out") {
				t.Errorf("unseen = %v, %v; want %v", out, ok, c.wantUnseen)
			}
		})
	}
	now = time.Unix(1000, 0)
	if _, ok := w.unseen("other", "10", "A"); ok {
		t.Error("another key matched")
	}
	w.wrote("created", "", "C", "svc")
	if _, ok := w.unseen("created", "", "C"); !ok {
		t.Error("a create the cache has not seen yet is written again")
	}
	w.forget("created")
	if _, ok := w.unseen("created", "", "C"); ok {
		t.Error("forgotten memo still holds")
	}

	// Memos past their life are dropped by a later write, so the memo
	// does not keep every mirror ever written.
	now = now.Add(memoLife + time.Second)
	w.wrote("fresh", "1", "F", nil)
	if _, ok := w.last["k"]; ok || len(w.last) != 1 {
		t.Errorf("after a write past memoLife the memo holds %d entries, want only the fresh one", len(w.last))
	}
}
