package lab

import (
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
)

// archive is an initramfs being assembled: a set of files, directories and
// symlinks written as a newc cpio stream.
type archive struct {
	entries map[string]entry
}

type entry struct {
	mode uint32 // full st_mode: type bits | permissions
	data []byte // file content or symlink target
}

const (
	modeDir     = 0o040000
	modeFile    = 0o100000
	modeSymlink = 0o120000
)

func newArchive() *archive { return &archive{entries: map[string]entry{}} }

func clean(p string) string { return strings.TrimPrefix(path.Clean("/"+p), "/") }

func (a *archive) mkdirAll(p string) {
	p = clean(p)
	for p != "" && p != "." {
		if _, ok := a.entries[p]; ok {
			return
		}
		a.entries[p] = entry{mode: modeDir | 0o755}
		p = path.Dir(p)
		if p == "." {
			return
		}
	}
}

func (a *archive) file(p string, perm uint32, data []byte) {
	p = clean(p)
	a.mkdirAll(path.Dir(p))
	a.entries[p] = entry{mode: modeFile | perm&0o7777, data: data}
}

func (a *archive) symlink(p, target string) {
	p = clean(p)
	a.mkdirAll(path.Dir(p))
	a.entries[p] = entry{mode: modeSymlink | 0o777, data: []byte(target)}
}

// writeTo writes the archive in the "newc" cpio format the kernel unpacks.
// Parents come before children because paths are sorted.
func (a *archive) writeTo(w io.Writer) error {
	names := make([]string, 0, len(a.entries))
	for n := range a.entries {
		names = append(names, n)
	}
	sort.Strings(names)
	ino := uint32(1)
	for _, n := range names {
		e := a.entries[n]
		if err := writeHeader(w, ino, e.mode, uint32(len(e.data)), n); err != nil {
			return err
		}
		if _, err := w.Write(e.data); err != nil {
			return err
		}
		if err := pad(w, len(e.data)); err != nil {
			return err
		}
		ino++
	}
	return writeHeader(w, 0, 0, 0, "TRAILER!!!")
}

func writeHeader(w io.Writer, ino, mode, size uint32, name string) error {
	nlink := uint32(1)
	if mode&0o170000 == modeDir {
		nlink = 2
	}
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		ino, mode, 0, 0, nlink, 0, size, 0, 0, 0, 0, len(name)+1, 0)
	if _, err := io.WriteString(w, hdr+name+"\x00"); err != nil {
		return err
	}
	return pad(w, len(hdr)+len(name)+1)
}

func pad(w io.Writer, n int) error {
	if r := n % 4; r != 0 {
		_, err := w.Write(make([]byte, 4-r))
		return err
	}
	return nil
}
