module github.com/mcgate/mcgate/bench

go 1.26.0

require (
	github.com/HdrHistogram/hdrhistogram-go v1.4.0
	golang.org/x/image v0.33.0
	golang.org/x/sys v0.49.0
)
