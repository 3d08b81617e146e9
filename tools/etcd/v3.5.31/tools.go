//go:build tools

// Package tools pins etcd's server at 3.5.31, the last patch under the 3.5.32
// floor of a 3.5 -> 3.6 upgrade. The proxy serves server/v3 at this tag but
// not etcdctl/v3 or etcdutl/v3 (403 "This module version is not available."),
// so only `etcd` is built here; the lab packs it with the clients of the
// nearest built 3.5 (tests/tools/etcd_release.py). The server cannot share a
// wrapper with those newer clients: minimal version selection would lift
// api/v3, which holds the version string, to theirs.
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
)
