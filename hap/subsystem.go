package hap

import "strings"

// SubsystemOf names the kernel subsystem of a kernel-tree path: its
// top-level directory ("mm", "kernel", "include"), or the first two levels
// under fs/, net/, drivers/ and arch/ ("fs/ext4", "net/ipv4", "arch/x86").
// Files directly in one of those four ("fs/read_write.c") belong to the
// top level ("fs"). An empty or absolute path is "unknown".
func SubsystemOf(path string) string {
	path = strings.TrimPrefix(path, "./")
	if path == "" || strings.HasPrefix(path, "/") || strings.HasPrefix(path, "..") {
		return "unknown"
	}
	top, rest, ok := strings.Cut(path, "/")
	if !ok {
		return "(top)" // a file in the tree root, e.g. generated code
	}
	switch top {
	case "fs", "net", "drivers", "arch":
		if second, _, ok := strings.Cut(rest, "/"); ok {
			return top + "/" + second
		}
	}
	return top
}
