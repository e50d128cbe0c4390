# The mcgate image. Its tag is VERSION, the string `mcgate version` prints
# and `mcgate install` renders by default (deploy.ImageFor); the Dockerfile
# documents the same command. Another registry: IMAGE_REPO=registry/mcgate,
# then `mcgate install --image $(make -s image-name IMAGE_REPO=...)`.
#
#   make image-name   print the image reference
#   make image        docker build it, with the binary's version set
#   make image-push   build and push it
IMAGE_REPO ?= ghcr.io/mcgate/mcgate
IMAGE ?= $(IMAGE_REPO):$(VERSION)

.PHONY: image-name image image-push

image-name:
	@echo $(IMAGE)

image:
	docker build --build-arg VERSION=$(VERSION) -t $(IMAGE) .

image-push: image
	docker push $(IMAGE)
