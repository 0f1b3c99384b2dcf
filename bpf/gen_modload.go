package bpf

//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -cc clang -no-global-types -target amd64 modload modload.bpf.c -- -I. -O2 -g -Wall
