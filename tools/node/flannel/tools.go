//go:build tools

// Package tools pins the main packages hakube builds from github.com/flannel-io/flannel v0.28.4,
// so that `go mod tidy` keeps every module they need in go.sum.
package tools

import (
	_ "github.com/flannel-io/flannel"
)
