# The hardening suite (test/hostile and test/soak, issue 7). `make
# test` runs it in its short form; these run it at length and keep the reports.
#   make soak                      both soaks for SOAK_DURATION (default 10m):
#                                  data-plane mixed load (test/hostile), then
#                                  mirror churn of 100 services under load on two
#                                  real clusters (test/soak); one report in
#                                  $(SOAK_REPORT)
#   make hostile                   hostile clients at full scale (1,000
#                                  slowloris...) with good clients measured,
#                                  p99 <= 2x quiet enforced, table in $(HOSTILE_REPORT)
SOAK_DURATION ?= 10m
SOAK_REPORT ?= bin/soak-report.txt
HOSTILE_REPORT ?= bin/hostile-report.txt

.PHONY: soak hostile
# Each soak bounds itself (SOAK_DURATION, then bounded waits to converge,
# settle and check), hence no go test timeout. The data-plane soak writes
# the report, the mirror soak appends to it; both run even if the first
# fails, and the report is printed either way.
soak: kube-bins
	@mkdir -p $(dir $(SOAK_REPORT))
	@rm -f $(SOAK_REPORT)
	@export MCGATE_SOAK_DURATION=$(SOAK_DURATION) MCGATE_SOAK_REPORT=$(abspath $(SOAK_REPORT)); status=0; \
	  $(GO) test -count=1 -run '^TestSoak$$' -timeout 0 -v ./test/hostile || status=1; \
	  $(GO) test -count=1 -run '^TestMirrorSoak$$' -timeout 0 -v ./test/soak || status=1; \
	  cat $(SOAK_REPORT) 2>/dev/null; exit $$status

hostile:
	@mkdir -p $(dir $(HOSTILE_REPORT))
	MCGATE_HOSTILE_REPORT=$(abspath $(HOSTILE_REPORT)) MCGATE_HOSTILE_STRICT=1 MCGATE_HOSTILE_SCALE=1 \
	  $(GO) test -count=1 -run '^TestHostileClients$$' -timeout 30m -v ./test/hostile
	@cat $(HOSTILE_REPORT)
