package symbolize

import (
	"bufio"
	"bytes"
	"debug/elf"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"

	"golang.org/x/arch/x86/x86asm"
)

// instructionAddrs decodes the machine code of f's ranges and returns the
// address of every instruction.
func instructionAddrs(t testing.TB, ef *elf.File, f *Function) []uint64 {
	var out []uint64
	for _, r := range f.Ranges {
		var sec *elf.Section
		for _, s := range ef.Sections {
			if s.Flags&elf.SHF_EXECINSTR != 0 && s.Addr <= r.Lo && r.Hi <= s.Addr+s.Size {
				sec = s
			}
		}
		if sec == nil {
			t.Fatalf("%s: range %#x-%#x is in no executable section", f.Name, r.Lo, r.Hi)
		}
		code := make([]byte, r.Hi-r.Lo)
		if _, err := sec.ReadAt(code, int64(r.Lo-sec.Addr)); err != nil {
			t.Fatal(err)
		}
		for pc := uint64(0); pc < uint64(len(code)); {
			out = append(out, r.Lo+pc)
			in, err := x86asm.Decode(code[pc:], 64)
			if err != nil || in.Len == 0 {
				pc++ // undecodable byte (e.g. ud2 padding): step over it
				continue
			}
			pc += uint64(in.Len)
		}
	}
	return out
}

// symbolizeInlining runs llvm-symbolizer --inlining on addrs and returns, per
// address, the file:line of every frame (innermost first), normalised.
func symbolizeInlining(t testing.TB, obj string, addrs []uint64) map[uint64][]Line {
	out := map[uint64][]Line{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	const parts = 2
	for p := range parts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var in bytes.Buffer
			for i := p; i < len(addrs); i += parts {
				fmt.Fprintf(&in, "%#x\n", addrs[i])
			}
			cmd := exec.Command("llvm-symbolizer", "--obj="+obj, "--inlining", "--addresses", "--functions=none")
			cmd.Stdin = &in
			b, err := cmd.Output()
			if err != nil {
				t.Errorf("llvm-symbolizer: %v", err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			var cur uint64
			sc := bufio.NewScanner(bytes.NewReader(b))
			for sc.Scan() {
				s := sc.Text()
				if strings.HasPrefix(s, "0x") {
					cur, _ = strconv.ParseUint(s[2:], 16, 64)
					out[cur] = out[cur][:0:0]
					continue
				}
				// file:line:column
				i := strings.LastIndexByte(s, ':')
				if i < 0 {
					continue
				}
				j := strings.LastIndexByte(s[:i], ':')
				if j < 0 {
					continue
				}
				line, _ := strconv.Atoi(s[j+1 : i])
				out[cur] = append(out[cur], Line{normalizePath("", s[:j]), line})
			}
		}()
	}
	wg.Wait()
	return out
}

// TestVmlinuxRecall is the acceptance check on the Debian 6.12 vmlinux: for
// 500 sampled functions (HAPSCOPE_RECALL_N=N samples another N), (a) llvm-symbolizer's line for the entry address
// and (b) every frame llvm-symbolizer --inlining reports for every
// instruction are in the function's own ∪ inlined lines.
func TestVmlinuxRecall(t *testing.T) {
	path := testVMLinux(t)
	if _, err := exec.LookPath("llvm-symbolizer"); err != nil {
		t.Fatal("llvm-symbolizer not found: apt-get install llvm")
	}
	ix, err := Build(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	ef, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ef.Close()
	var pool []*Function
	for f := range ix.All() {
		if !f.Estimated {
			pool = append(pool, f)
		}
	}
	n, seed := 500, uint64(4)
	if v, err := strconv.Atoi(os.Getenv("HAPSCOPE_RECALL_N")); err == nil && v > 0 {
		n, seed = min(v, len(pool)), uint64(v) // a bigger, different sample
	}
	rng := rand.New(rand.NewPCG(seed, 500))
	rng.Shuffle(len(pool), func(i, j int) { pool[i], pool[j] = pool[j], pool[i] })
	sample := pool[:n]
	var addrs []uint64
	fnAddrs := map[*Function][]uint64{}
	for _, f := range sample {
		a := instructionAddrs(t, ef, f)
		fnAddrs[f] = a
		addrs = append(addrs, a...)
		addrs = append(addrs, f.Entry)
	}
	frames := symbolizeInlining(t, path, addrs)

	var entryOK, entryLine0, framesAll, framesOK, line0 int
	var misses []string
	for _, f := range sample {
		own, inl := f.Lines()
		set := map[Line]bool{}
		for _, l := range append(own, inl...) {
			set[l] = true
		}
		if fr := frames[f.Entry]; len(fr) > 0 {
			switch {
			case fr[0].Line == 0:
				entryLine0++
			case set[fr[0]]:
				entryOK++
			default:
				misses = append(misses, fmt.Sprintf("(a) %s entry %#x: %s:%d", f.Name, f.Entry, fr[0].File, fr[0].Line))
			}
		}
		for _, a := range fnAddrs[f] {
			for _, l := range frames[a] {
				if l.Line == 0 {
					line0++
					continue
				}
				framesAll++
				if set[l] {
					framesOK++
				} else {
					misses = append(misses, fmt.Sprintf("(b) %s %#x: %s:%d", f.Name, a, l.File, l.Line))
				}
			}
		}
	}
	t.Logf("vmlinux %s, %d functions indexed, %d sampled, %d instruction addresses", ix.BuildID(), ix.Len(), len(sample), len(addrs)-len(sample))
	t.Logf("(a) entry line in set: %d/%d (%.2f%%), %d entries at line 0 (not counted)", entryOK, len(sample)-entryLine0, 100*float64(entryOK)/float64(max(1, len(sample)-entryLine0)), entryLine0)
	t.Logf("(b) inline frames in own ∪ inlined: %d/%d (recall %.3f%%), %d frames at line 0 (not counted)", framesOK, framesAll, 100*float64(framesOK)/float64(max(1, framesAll)), line0)
	for i, m := range misses {
		if i == 20 {
			t.Errorf("… %d more misses", len(misses)-20)
			break
		}
		t.Errorf("miss %s", m)
	}
}
