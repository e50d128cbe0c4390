package mirror

import (
	"reflect"
	"testing"
)

func TestParsePortRange(t *testing.T) {
	if r, err := ParsePortRange("4200-5199"); err != nil || r != (PortRange{4200, 5199}) {
		t.Fatalf("%v %v", r, err)
	}
	for _, bad := range []string{"", "4200", "5199-4200", "0-10", "1-70000", "a-b"} {
		if _, err := ParsePortRange(bad); err == nil {
			t.Errorf("ParsePortRange(%q) accepted", bad)
		}
	}
}

func TestEgressPortsAnnotation(t *testing.T) {
	m := map[int32]int32{9090: 4201, 80: 4200}
	s := formatEgressPorts(m)
	if s != "80=4200,9090=4201" {
		t.Fatalf("format %q", s)
	}
	back, err := ParseEgressPorts(s)
	if err != nil || !reflect.DeepEqual(back, m) {
		t.Fatalf("parse %v %v", back, err)
	}
	if m, err := ParseEgressPorts(""); err != nil || len(m) != 0 {
		t.Fatalf("empty: %v %v", m, err)
	}
	for _, bad := range []string{"80", "80=x", "a=1", "80=4200,"} {
		if _, err := ParseEgressPorts(bad); err == nil {
			t.Errorf("ParseEgressPorts(%q) accepted", bad)
		}
	}
}

func TestAllocatorStableAcrossRestart(t *testing.T) {
	r := PortRange{4200, 4204}
	a := newAllocator(r)
	first, err := a.forMirror("prod", "api-east", []int32{80, 443}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(first, map[int32]int32{80: 4200, 443: 4201}) {
		t.Fatalf("first allocation %v", first)
	}
	other, _ := a.forMirror("prod", "db-east", []int32{5432}, nil)
	// A restarted leader (new allocator) claims what the annotations say,
	// in any order, and gets the same ports back.
	b := newAllocator(r)
	if got, _ := b.forMirror("prod", "db-east", []int32{5432}, other); !reflect.DeepEqual(got, other) {
		t.Fatalf("db after restart %v, want %v", got, other)
	}
	if got, _ := b.forMirror("prod", "api-east", []int32{80, 443}, first); !reflect.DeepEqual(got, first) {
		t.Fatalf("api after restart %v, want %v", got, first)
	}
	// Repeated calls are idempotent.
	if got, _ := b.forMirror("prod", "api-east", []int32{80, 443}, first); !reflect.DeepEqual(got, first) {
		t.Fatalf("api again %v", got)
	}
}

func TestAllocatorConflictsAndRange(t *testing.T) {
	a := newAllocator(PortRange{4200, 4203})
	// Recorded outside the (new, narrower) range: reallocated inside.
	got, err := a.forMirror("ns", "a-east", []int32{80}, map[int32]int32{80: 6000})
	if err != nil || got[80] != 4200 {
		t.Fatalf("out of range: %v %v", got, err)
	}
	// Two mirrors recording the same port: the first claim wins.
	got, _ = a.forMirror("ns", "b-east", []int32{80}, map[int32]int32{80: 4200})
	if got[80] == 4200 {
		t.Fatalf("conflicting claim won: %v", got)
	}
	// Port removed from the service: its egress port is released.
	if _, err := a.forMirror("ns", "c-east", []int32{80, 81}, nil); err != nil {
		t.Fatal(err)
	}
	if a.inUse() != 4 {
		t.Fatalf("in use %d", a.inUse())
	}
	if _, err := a.forMirror("ns", "d-east", []int32{80}, nil); err == nil {
		t.Fatal("exhausted range allocated a port")
	}
	a.forMirror("ns", "c-east", []int32{80}, nil)
	if a.inUse() != 3 {
		t.Fatalf("after port removal in use %d", a.inUse())
	}
	a.release(egressKey("ns", "b-east", 0)[:len("ns/b-east:")])
	if a.inUse() != 2 {
		t.Fatalf("after release in use %d", a.inUse())
	}
	// Released ports are reused only after the rest of the range.
	if got, err := a.forMirror("ns", "d-east", []int32{80}, nil); err != nil || len(got) != 1 {
		t.Fatalf("after release: %v %v", got, err)
	}
}

func TestAllocatorRoundRobin(t *testing.T) {
	a := newAllocator(PortRange{4200, 4203})
	a.forMirror("ns", "a", []int32{1}, nil) // 4200
	a.forMirror("ns", "b", []int32{1}, nil) // 4201
	a.release("ns/a:")
	got, _ := a.forMirror("ns", "c", []int32{1}, nil)
	if got[1] != 4202 {
		t.Fatalf("freshly released port reused first: %v", got)
	}
}
