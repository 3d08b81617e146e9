//go:build tools

// Package tools pins the main packages hakube builds from github.com/coredns/coredns v1.14.2,
// so that `go mod tidy` keeps every module they need in go.sum.
package tools

import (
	_ "github.com/coredns/coredns"
)
