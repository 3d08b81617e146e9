//go:build tools

// Package tools pins the main packages hakube builds from sigs.k8s.io/cri-tools v1.36.0,
// so that `go mod tidy` keeps every module they need in go.sum.
package tools

import (
	_ "sigs.k8s.io/cri-tools/cmd/crictl"
)
