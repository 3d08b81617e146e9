//go:build tools

// Package tools pins etcd's three main packages so that `go mod tidy` keeps
// every module they need in go.sum. Each of etcd's own modules replaces its
// siblings with ../ paths, which a dependency's go.mod cannot do for us, so
// this wrapper requires all of them at one version instead.
package tools

import (
	_ "go.etcd.io/etcd/etcdctl/v3"
	_ "go.etcd.io/etcd/etcdutl/v3"
	_ "go.etcd.io/etcd/server/v3"
)
