package symbolize_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/hapscope/hapscope/symbolize"
)

// Index a small C program (testdata/fixture, built with gcc -O2 -g) and ask
// for a function by the name of its cold part: the cold part is the second
// address range of split.
func Example() {
	dir, err := os.MkdirTemp("", "symbolize-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "fixture")
	cc := exec.Command("gcc", "-O2", "-g", "-o", bin, "a.c", "b.c")
	cc.Dir = "testdata/fixture"
	if out, err := cc.CombinedOutput(); err != nil {
		log.Fatalf("gcc: %v\n%s", err, out)
	}

	ix, err := symbolize.Build(bin, nil)
	if err != nil {
		log.Fatal(err)
	}
	for _, f := range ix.Lookup("split.cold") {
		own, inlined := f.Lines()
		fmt.Printf("%s (%s:%d): %d ranges, %d own lines, %d inlined\n", f.Name, f.File, f.Line, len(f.Ranges), len(own), len(inlined))
	}
	outer := ix.Lookup("outer")[0]
	_, inlined := outer.Lines()
	fmt.Println("inlined into outer:", inlined[len(inlined)-5:])
	fmt.Println("function at outer's entry:", ix.FuncAt(outer.Entry).Name)
	// Output:
	// split (a.c:31): 2 ranges, 8 own lines, 0 inlined
	// inlined into outer: [{a.c 9} {hdr.h 7} {hdr.h 8} {hdr.h 9} {hdr.h 10}]
	// function at outer's entry: outer
}

// Open the index of the running kernel: cached by build-id, else built from
// its debug info (distro -dbg package or debuginfod), then map runtime
// addresses (e.g. from a BPF program) through the KASLR offset.
func ExampleOpen() {
	k, err := symbolize.RunningKernel()
	if err != nil {
		log.Fatal(err)
	}
	ix, err := symbolize.Open(context.Background(), symbolize.Options{Kernel: k})
	if err != nil {
		log.Fatal(err) // says which files it tried and what to install
	}
	runtimeAddr := k.Text + 0x434a10
	if f := ix.FuncAt(runtimeAddr - k.Offset(ix)); f != nil {
		fmt.Println(f.Name, f.File, f.LineCount())
	}
}
