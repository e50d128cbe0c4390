# mcgate image: one static binary on distroless, running as non-root.
# Build with `make image` (push: `make image-push`), which runs, with
# VERSION=$(git describe --tags --always --dirty):
#   docker build --build-arg VERSION=$VERSION -t ghcr.io/mcgate/mcgate:$VERSION .
# The tag is the version the binary reports (`mcgate version`), so that
# `mcgate install` from the same build renders this image by default.
# (The Deployment in deploy/ runs it with a read-only root filesystem.)
# The Go release is pinned: the gateway releases idle connections' TLS
# buffers only on Go releases whose crypto/tls was reviewed for it
# (proxy/tlsmem.go, reviewedGoVersions); on any other it runs with the
# release off and says so at start.
FROM golang:1.26.8 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath \
      -ldflags "-s -w -X main.version=${VERSION}" -o /out/mcgate ./cmd/mcgate

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/mcgate /mcgate
# 65532 is distroless's nonroot user; the Deployment sets the same ids.
USER 65532:65532
EXPOSE 4143 4191
ENTRYPOINT ["/mcgate"]
CMD ["gateway"]
