# The hardening suite (internal/hostile, issue 7). `make test` runs it in its
# short form; these run it at length and keep the reports.
#   make soak                      mixed load for SOAK_DURATION (default 10m),
#                                  report in $(SOAK_REPORT)
#   make hostile                   hostile clients at full scale (1,000
#                                  slowloris...) with good clients measured,
#                                  p99 <= 2x quiet enforced, table in $(HOSTILE_REPORT)
SOAK_DURATION ?= 10m
SOAK_REPORT ?= bin/soak-report.txt
HOSTILE_REPORT ?= bin/hostile-report.txt

.PHONY: soak hostile
# The soak bounds itself (SOAK_DURATION, then at most 25 s to settle and
# check), hence no go test timeout.
soak:
	@mkdir -p $(dir $(SOAK_REPORT))
	MCGATE_SOAK_DURATION=$(SOAK_DURATION) MCGATE_SOAK_REPORT=$(abspath $(SOAK_REPORT)) \
	  $(GO) test -count=1 -run '^TestSoak$$' -timeout 0 -v ./internal/hostile
	@cat $(SOAK_REPORT)

hostile:
	@mkdir -p $(dir $(HOSTILE_REPORT))
	MCGATE_HOSTILE_REPORT=$(abspath $(HOSTILE_REPORT)) MCGATE_HOSTILE_STRICT=1 MCGATE_HOSTILE_SCALE=1 \
	  $(GO) test -count=1 -run '^TestHostileClients$$' -timeout 30m -v ./internal/hostile
	@cat $(HOSTILE_REPORT)
