package mirror

import (
	"encoding/json"
	"sync"
	"time"
)

// writeMemo remembers the last write of each mirror object, so that a
// reconcile which runs before the informer has seen that write does not
// write the same again. The informers lag behind the API server's answer
// by a watch round trip, longer under load, and the write's own watch event
// (or a remote change, or a probe verdict) can start the next reconcile of
// the same key inside that window. The cached object is then still the one
// the write replaced, and comparing it with what we want finds a difference
// that is already gone: without the memo, a second, identical write.
//
// The memo holds only while the cache still shows the object the write
// replaced, and at most memoLife: long enough for a slow watch, short
// enough that a write lost to a race (the object deleted before the
// informer saw it) is made again soon.
type writeMemo struct {
	now func() time.Time

	mu    sync.Mutex
	last  map[string]memo
	swept time.Time // when expired memos were last dropped
}

const memoLife = 10 * time.Second

type memo struct {
	replaced    string // resourceVersion of the cached object the write replaced; "" when there was none
	fingerprint string // what was written
	result      any    // what the API server returned
	at          time.Time
}

// memoKey names the mirror object of resource (service, endpointslice) in
// the memo; the write and the forget of one object must agree on it.
func memoKey(resource, namespace, name string) string {
	return resource + "/" + namespace + "/" + name
}

func newWriteMemo() *writeMemo {
	return &writeMemo{now: time.Now, last: map[string]memo{}}
}

// fingerprint is what a write sends, comparable across reconciles:
// encoding/json orders map keys, so equal configurations encode equally.
func fingerprint(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return "" // never matches a recorded write: the write goes ahead
	}
	return string(b)
}

// unseen returns what the last write of key returned when that write is
// the same as fp and the cache (whose object has resourceVersion cachedRV,
// "" for none) has not seen it yet.
func (w *writeMemo) unseen(key, cachedRV, fp string) (any, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	m, ok := w.last[key]
	if !ok || fp == "" || m.fingerprint != fp || m.replaced != cachedRV || w.now().Sub(m.at) > memoLife {
		return nil, false
	}
	return m.result, true
}

// wrote records a write of fp to key, which replaced the cached object of
// resourceVersion replacedRV and returned result (nil where no caller needs
// it). Memos past memoLife are dropped here, at most once per memoLife, so
// the memo holds recent writes only, not a second copy of every mirror.
func (w *writeMemo) wrote(key, replacedRV, fp string, result any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := w.now()
	if now.Sub(w.swept) > memoLife {
		for k, m := range w.last {
			if now.Sub(m.at) > memoLife {
				delete(w.last, k)
			}
		}
		w.swept = now
	}
	w.last[key] = memo{replaced: replacedRV, fingerprint: fp, result: result, at: now}
}

// forget drops key's memo (its object was deleted).
func (w *writeMemo) forget(key string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.last, key)
}
