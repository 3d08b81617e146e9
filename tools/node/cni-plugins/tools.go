//go:build tools

// Package tools pins the main packages hakube builds from github.com/containernetworking/plugins v1.10.0,
// so that `go mod tidy` keeps every module they need in go.sum.
package tools

import (
	_ "github.com/containernetworking/plugins/plugins/main/bridge"
	_ "github.com/containernetworking/plugins/plugins/main/loopback"
	_ "github.com/containernetworking/plugins/plugins/ipam/host-local"
	_ "github.com/containernetworking/plugins/plugins/meta/portmap"
)
