package labtest

import (
	"fmt"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// BPFObjects lists the BPF programs whose names start with prefix (hapscope's
// are "hap_") and counts the links that attach them, by walking the kernel's
// BPF object IDs.
func BPFObjects(prefix string) (progs []string, links int, err error) {
	ours := map[ebpf.ProgramID]bool{}
	for id := ebpf.ProgramID(0); ; {
		next, err := ebpf.ProgramGetNextID(id)
		if err != nil {
			break
		}
		id = next
		p, err := ebpf.NewProgramFromID(id)
		if err != nil {
			continue // freed meanwhile
		}
		info, err := p.Info()
		p.Close()
		if err == nil && strings.HasPrefix(info.Name, prefix) {
			progs = append(progs, fmt.Sprintf("%d:%s", id, info.Name))
			ours[id] = true
		}
	}
	it := new(link.Iterator)
	for it.Next() {
		if info, err := it.Link.Info(); err == nil && ours[info.Program] {
			links++
		}
	}
	return progs, links, it.Err()
}
