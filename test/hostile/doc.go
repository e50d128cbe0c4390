// Package hostile holds mcgate's hardening suite (issue 7, data plane):
// hostile clients against a running ingress gateway with good clients
// measured alongside, faults of backends and of the remote gateway, and a
// soak that checks goroutines, file descriptors and heap return to their
// baseline. Everything is in its tests; `go test ./test/hostile` runs a
// bounded short form, `make soak` the long one (see mk/hardening.mk).
//
// Knobs, read from the environment by the tests:
//
//	MCGATE_SOAK_DURATION  length of the soak's load phase (default 10s)
//	MCGATE_SOAK_REPORT    file the soak writes its report to (default: none)
//	MCGATE_HOSTILE_REPORT file the hostile-client test writes its table to
package hostile
