package bpf

//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -cc clang -no-global-types -target amd64 hap hap.bpf.c -- -I. -O2 -g -Wall
