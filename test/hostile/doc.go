// Package hostile holds mcgate's hardening suite (issue 7, data plane):
// hostile clients against a running ingress gateway with good clients
// measured alongside, faults of backends and of the remote gateway, and a
// soak that checks goroutines, file descriptors and heap return to their
// baseline; and the figures of issue 25 (gateway CPU per hostile
// handshake, descriptors held by idle admin and probe connections, backend
// accepts through fail-open routes), whose clients run in a child process
// (the test binary again, see child_test.go) so that the process's CPU
// time and descriptors are the gateway's. Everything is in its tests;
// `go test ./test/hostile` runs a bounded short form, `make soak` the long
// one (see mk/hardening.mk).
//
// Knobs, read from the environment by the tests:
//
//	MCGATE_SOAK_DURATION  length of the soak's load phase (default 10s)
//	MCGATE_SOAK_REPORT    file the soak writes its report to (default: none)
//	MCGATE_HOSTILE_REPORT file the hostile-client test writes its table to
package hostile
