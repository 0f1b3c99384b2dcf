//go:build linux && amd64

package sysfuzz

import (
	"reflect"
	"strings"
	"testing"
)

func streamText(seed uint64, n int) string {
	s := NewStream(seed, 20)
	var b strings.Builder
	for range n {
		b.WriteString(s.Next().String())
		b.WriteByte('\n')
	}
	return b.String()
}

func TestDeterminism(t *testing.T) {
	for _, seed := range []uint64{0, 1, 2, 42, 1 << 40} {
		a, b := streamText(seed, 200), streamText(seed, 200)
		if a != b {
			t.Fatalf("seed %d: two streams differ", seed)
		}
	}
	if streamText(1, 20) == streamText(2, 20) {
		t.Fatal("seeds 1 and 2 give the same stream")
	}
	// Generate and Mutate alone, too.
	for seed := range uint64(20) {
		r1, r2 := NewRand(seed), NewRand(seed)
		p1, p2 := Generate(r1, 30), Generate(r2, 30)
		if p1.String() != p2.String() {
			t.Fatalf("seed %d: Generate differs", seed)
		}
		if Mutate(r1, p1).String() != Mutate(r2, p2).String() {
			t.Fatalf("seed %d: Mutate differs", seed)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	s := NewStream(7, 24)
	for i := range 5000 {
		p := s.Next()
		text := p.String()
		q, err := Parse(text)
		if err != nil {
			t.Fatalf("program %d: %v\n%s", i, err, text)
		}
		if !reflect.DeepEqual(p, q) {
			t.Fatalf("program %d: Parse(String(p)) != p\n%s\n%s", i, text, q)
		}
		if q.String() != text {
			t.Fatalf("program %d: text changed", i)
		}
	}
}

func TestGeneratedValid(t *testing.T) {
	seen := map[string]bool{}
	for seed := range uint64(8) {
		s := NewStream(seed, 1+int(seed)*8)
		for i := range 1500 {
			p := s.Next()
			if err := Validate(p); err != nil {
				t.Fatalf("seed %d program %d: %v\n%s", seed, i, err, p)
			}
			for _, c := range p.Calls {
				seen[c.Meta.Name] = true
			}
		}
	}
	for _, s := range Syscalls {
		if !seen[s.Name] {
			t.Errorf("%s never generated", s.Name)
		}
	}
}

func TestLongProgramsValid(t *testing.T) {
	for seed := range uint64(200) {
		p := Generate(NewRand(seed), MaxCalls)
		if len(p.Calls) != MaxCalls {
			t.Fatalf("seed %d: %d calls", seed, len(p.Calls))
		}
		if err := Validate(p); err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		q := Mutate(NewRand(seed), p)
		if err := Validate(q); err != nil || len(q.Calls) > MaxCalls {
			t.Fatalf("seed %d: mutated: %v, %d calls", seed, err, len(q.Calls))
		}
	}
}

func TestMutateValid(t *testing.T) {
	r := NewRand(3)
	p := Generate(r, 10)
	for i := range 3000 {
		q := Mutate(r, p)
		if err := Validate(q); err != nil {
			t.Fatalf("mutation %d: %v\n%s", i, err, q)
		}
		if err := Validate(p); err != nil {
			t.Fatalf("mutation %d changed its input: %v", i, err)
		}
		p = q
		if len(p.Calls) > 60 {
			p = Generate(r, 10)
		}
	}
}

func TestValidateRejects(t *testing.T) {
	bad := map[string]string{
		"absolute path":      `r0 = openat(AT_FDCWD, "/etc/passwd", O_RDONLY, 0x0)`,
		"dotdot":             `r0 = openat(AT_FDCWD, "../f0", O_RDONLY, 0x0)`,
		"dotdot inside":      `r0 = openat(AT_FDCWD, "d0/../../f0", O_RDONLY, 0x0)`,
		"other name":         `r0 = openat(AT_FDCWD, "passwd", O_RDONLY, 0x0)`,
		"deep path":          `r0 = mkdirat(AT_FDCWD, "d0/d1/d2/d3", 0x1ff)`,
		"unix path":          `r0 = socket$unix(AF_UNIX, SOCK_STREAM|SOCK_NONBLOCK, 0x0)` + "\n" + `bind(r0, unix("/tmp/x"), 0x6e)`,
		"unix short addrlen": `r0 = socket$unix(AF_UNIX, SOCK_STREAM|SOCK_NONBLOCK, 0x0)` + "\n" + `bind(r0, unix("s0"), 0x10)`,
		"munmap unmapped":    `r0 = eventfd2(0x0, EFD_NONBLOCK)` + "\n" + `munmap(mem(r0, 0x0), 0x1000)`,
		"munmap beyond":      `r0 = mmap(0x0, 0x2000, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -0x1, 0x0)` + "\n" + `munmap(mem(r0, 0x0), 0x3000)`,
		"munmap twice": `r0 = mmap(0x0, 0x2000, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -0x1, 0x0)` + "\n" +
			`munmap(mem(r0, 0x0), 0x1000)` + "\n" + `mprotect(mem(r0, 0x0), 0x1000, PROT_READ)`,
		"read into unmapped": `r0 = mmap(0x0, 0x2000, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -0x1, 0x0)` + "\n" +
			`munmap(mem(r0, 0x1000), 0x1000)` + "\n" + `r2 = eventfd2(0x0, EFD_NONBLOCK)` + "\n" + `read(r2, mem(r0, 0x800), 0x1000)`,
		"forward reference":  `close(r1)` + "\n" + `r1 = eventfd2(0x0, EFD_NONBLOCK)`,
		"literal fd":         `close(0x1)`,
		"mmap fixed":         `r0 = mmap(0x0, 0x1000, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS|0x10, -0x1, 0x0)`,
		"mmap too big":       `r0 = mmap(0x0, 0x2000000, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -0x1, 0x0)`,
		"blocking socket":    `r0 = socket$inet(AF_INET, SOCK_STREAM, IPPROTO_TCP)`,
		"blocking pipe":      `r0 = pipe2(&out, O_CLOEXEC)`,
		"blocking eventfd":   `r0 = eventfd2(0x0, 0x0)`,
		"blocking setfl":     `r0 = eventfd2(0x0, EFD_NONBLOCK)` + "\n" + `fcntl$setfl(r0, F_SETFL, O_APPEND)`,
		"blocking recvfrom":  `r0 = socket$inet(AF_INET, SOCK_DGRAM|SOCK_NONBLOCK, 0x0)` + "\n" + `recvfrom(r0, buf(0x10), 0x10, 0x0, nil, nil)`,
		"epoll_wait forever": `r0 = epoll_create1(0x0)` + "\n" + `epoll_wait(r0, buf(0xc), 0x1, -0x1)`,
		"futex no timeout":   `r0 = mmap(0x0, 0x1000, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -0x1, 0x0)` + "\n" + `futex$wait(mem(r0, 0x0), FUTEX_WAIT, 0x0, nil, 0x0, 0x0)`,
		"futex long timeout": `r0 = mmap(0x0, 0x1000, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -0x1, 0x0)` + "\n" + `futex$wait(mem(r0, 0x0), FUTEX_WAIT, 0x0, timespec(0x1, 0x0), 0x0, 0x0)`,
		"long sleep":         `nanosleep(timespec(0x0, 0x1e8480), nil)`,
		"read past buffer":   `r0 = eventfd2(0x0, EFD_NONBLOCK)` + "\n" + `read(r0, buf(0x8), 0x10)`,
		"readv past iov":     `r0 = eventfd2(0x0, EFD_NONBLOCK)` + "\n" + `readv(r0, iov(buf(0x8)), 0x2)`,
		"epoll past buffer":  `r0 = epoll_create1(0x0)` + "\n" + `epoll_wait(r0, buf(0xc), 0x2, 0x0)`,
		"huge buffer":        `r0 = eventfd2(0x0, EFD_NONBLOCK)` + "\n" + `write(r0, buf(0x20000), 0x20000)`,
		"pipe2 into memory":  `r0 = mmap(0x0, 0x1000, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -0x1, 0x0)` + "\n" + `r1 = pipe2(mem(r0, 0x0), O_NONBLOCK)`,
		"block SIGSEGV":      `rt_sigprocmask(SIG_BLOCK, sigset(0x400), nil, 0x8)`,
		"foreign port":       `r0 = socket$inet(AF_INET, SOCK_STREAM|SOCK_NONBLOCK, 0x0)` + "\n" + `connect(r0, inet(0x16), 0x10)`,
		"fd of wrong kind":   `r0 = eventfd2(0x0, EFD_NONBLOCK)` + "\n" + `listen(r0, 0x1)`,
		"region as fd":       `r0 = mmap(0x0, 0x1000, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -0x1, 0x0)` + "\n" + `close(r0)`,
	}
	for name, text := range bad {
		p, err := Parse(text)
		if err != nil {
			t.Errorf("%s: Parse: %v", name, err)
			continue
		}
		if err := Validate(p); err == nil {
			t.Errorf("%s: Validate accepted\n%s", name, text)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
	for _, text := range []string{
		`kill(0x0, 0x9)`, `r0 = clone(0x0)`, `execve("f0", nil, nil)`, `ptrace(0x0)`, `reboot(0x0)`, `mount("f0")`,
		`r0 = eventfd2(0x0)`, `r1 = eventfd2(0x0, EFD_NONBLOCK)`, `close(r0) junk`, `read(r0, 0x10, 0x10)`,
	} {
		if p, err := Parse(text); err == nil {
			t.Errorf("Parse accepted %q: %s", text, p)
		}
	}
}

func TestValidateAccepts(t *testing.T) {
	for _, text := range execPrograms {
		p, err := Parse(text)
		if err != nil {
			t.Fatalf("%v\n%s", err, text)
		}
		if err := Validate(p); err != nil {
			t.Fatalf("%v\n%s", err, text)
		}
		if p.String() != strings.TrimLeft(text, "\n") {
			t.Errorf("not canonical:\n%s\nprints as\n%s", text, p)
		}
	}
}

func FuzzParse(f *testing.F) {
	s := NewStream(11, 8)
	for range 20 {
		f.Add(s.Next().String())
	}
	for _, text := range execPrograms {
		f.Add(text)
	}
	f.Add("r0 = openat(AT_FDCWD, \"f1\", O_RDWR|O_CREAT, 0x180)\n")
	f.Fuzz(func(t *testing.T, text string) {
		p, err := Parse(text)
		if err != nil {
			return
		}
		_ = Validate(p)
		out := p.String()
		q, err := Parse(out)
		if err != nil {
			t.Fatalf("reparse: %v\n%q\n%q", err, text, out)
		}
		if !reflect.DeepEqual(p, q) || q.String() != out {
			t.Fatalf("unstable:\n%q\n%q\n%q", text, out, q.String())
		}
	})
}
