# Real Kubernetes control planes for tests, the demo and development
# (internal/testenv/kube, internal/testenv/kubetest).
#
#   make kube-bins   build etcd, kube-apiserver, kube-controller-manager into
#                    $MCGATE_CACHE (default ~/.cache/mcgate)/kube/ when missing (~15 min once)
#   make kube-up     start clusters east and west in the background (network
#                    namespace mcgate-kube) and print how to use them
#   make kube-down   stop them, free their ports, delete the namespace
# kube-up and kube-down are safe to repeat. Both need root (network namespace).

KUBE_DIR ?= .cache/kube
KUBEUP := $(KUBE_DIR)/kubeup

.PHONY: kube-bins kube-up kube-down
TEST_DEPS += kube-bins

kube-bins:
	@bash internal/testenv/kube/build.sh >/dev/null

kube-up: kube-bins
	@mkdir -p $(KUBE_DIR)
	@$(GO) build -o $(KUBEUP) ./internal/testenv/kube/cmd/kubeup
	@$(KUBEUP) up -dir $(KUBE_DIR) -bins "$$(bash internal/testenv/kube/build.sh --dir)"

kube-down:
	@mkdir -p $(KUBE_DIR)
	@$(GO) build -o $(KUBEUP) ./internal/testenv/kube/cmd/kubeup
	@$(KUBEUP) down -dir $(KUBE_DIR)
	@echo "kube: clusters stopped, namespace mcgate-kube removed"
