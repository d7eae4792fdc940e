//go:build tools

// Package tools records the command this module builds (etcd, for the kind node
// image's etcd static pod; see cluster/kind/) so `go mod tidy` keeps its
// dependencies. It is never compiled.
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
)
