# The bench harness (bench/, issue 6): mcgate against its peers on this machine.
#   make bench                 full run, results in bench/results/
#   make bench-quick           a few seconds per cell, results in bench/results/tmp/
#   make bench-peers           install/build HAProxy, nginx stream, ghostunnel, caddy-l4
#   make bench BENCH_ARGS='-systems mcgate,haproxy -scenarios bulk1,handshake -profile bulk1'
BENCH_ARGS ?=

# bench is a module of its own (bench/go.mod), so its chart and histogram
# libraries stay out of the product's go.mod; it runs from the repository
# root, where its default paths (bench/results, bench/peers.sh) point.
BENCH_BIN := bin/bench

.PHONY: bench bench-quick bench-peers bench-bin
bench: build bench-bin bench-peers
	$(BENCH_BIN) -mode full -mcgate $(BIN) $(BENCH_ARGS)

bench-quick: build bench-bin
	$(BENCH_BIN) -mode quick -mcgate $(BIN) $(BENCH_ARGS)

bench-bin:
	$(GO) build -C bench -o ../$(BENCH_BIN) .

bench-peers:
	bash bench/peers.sh
