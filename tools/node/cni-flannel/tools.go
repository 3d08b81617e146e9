//go:build tools

// Package tools pins the main packages hakube builds from github.com/containernetworking/plugins v0.9.1,
// so that `go mod tidy` keeps every module they need in go.sum.
package tools

import (
	_ "github.com/containernetworking/plugins/plugins/meta/flannel"
)
