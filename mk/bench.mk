# The bench harness (bench/, issue 6): mcgate against its peers on this machine.
#   make bench                 full run, results in bench/results/
#   make bench-quick           a few seconds per cell, results in bench/results/tmp/
#   make bench-peers           install/build HAProxy, nginx stream, ghostunnel, caddy-l4
#   make bench BENCH_ARGS='-systems mcgate,haproxy -scenarios bulk1,handshake -profile bulk1'
BENCH_ARGS ?=

.PHONY: bench bench-quick bench-peers
bench: build bench-peers
	$(GO) run ./bench -mode full -mcgate $(BIN) $(BENCH_ARGS)

bench-quick: build
	$(GO) run ./bench -mode quick -mcgate $(BIN) $(BENCH_ARGS)

bench-peers:
	bash bench/peers.sh
