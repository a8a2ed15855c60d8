//go:build tools

// Package tools names the binaries of the test control plane, so that go.mod and go.sum pin
// everything they are built from. Nothing here is part of oomguard.
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
