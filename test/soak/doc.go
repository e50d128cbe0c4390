// Package soak holds the mirror soak of mcgate's hardening suite (issue 7):
// two real clusters, two mcgate gateway processes linked west → east, a
// hundred exported services churned in east while connections flow west →
// east through both gateways, then checks that the mirror converged to
// exactly the desired set and that both processes returned to their
// baseline goroutines, open fds and heap. Everything is in its tests; `go
// test ./test/soak` runs a short form, `make soak` the long one next to
// test/hostile's data-plane soak (see mk/hardening.mk).
//
// Knobs, read from the environment by the test:
//
//	MCGATE_SOAK_DURATION  length of the churn and load phase (default 20s)
//	MCGATE_SOAK_REPORT    file the report is appended to (default: none)
//	MCGATE_SOAK_SEED      seed of the churn's choices (default: the clock; logged)
package soak
