package seccomp

import (
	"encoding/json"
	"slices"
	"testing"

	dockerseccomp "github.com/docker/docker/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/hapscope/hapscope/internal/syscalls"
)

// Docker's own loader accepts what Allow writes and applies exactly its
// allow list: the names, the EPERM default, clone3's ENOSYS.
func TestDockerLoadsAllow(t *testing.T) {
	g, err := Allow([]string{"read", "write", "clone3", "epoll_wait", "exit_group"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := g.Profile.JSON()
	if err != nil {
		t.Fatal(err)
	}
	ls, err := dockerseccomp.LoadProfile(string(b), &specs.Spec{Process: &specs.Process{}})
	if err != nil {
		t.Fatalf("Docker's LoadProfile refuses the generated profile: %v\n%s", err, b)
	}
	if ls.DefaultAction != specs.ActErrno || ls.DefaultErrnoRet == nil || *ls.DefaultErrnoRet != EPERM {
		t.Errorf("default action %s errno %v, want errno EPERM", ls.DefaultAction, ls.DefaultErrnoRet)
	}
	if !slices.Equal(ls.Architectures, []specs.Arch{specs.ArchX86_64}) {
		t.Errorf("architectures %v, want x86-64 only", ls.Architectures)
	}
	var allowed []string
	enosys := false
	for _, r := range ls.Syscalls {
		switch {
		case r.Action == specs.ActAllow:
			allowed = append(allowed, r.Names...)
		case r.Action == specs.ActErrno && slices.Equal(r.Names, []string{"clone3"}):
			enosys = r.ErrnoRet != nil && *r.ErrnoRet == ENOSYS
		}
	}
	slices.Sort(allowed)
	if !slices.Equal(allowed, g.Allowed) {
		t.Errorf("Docker allows %v, Allow said %v", allowed, g.Allowed)
	}
	if !enosys {
		t.Errorf("clone3 not answered with ENOSYS in Docker's reading: %+v", ls.Syscalls)
	}
}

// Verdict over Docker's default profile (its default.json as Docker ships
// it) agrees with the profile Docker resolves from it for a container with
// the default capabilities: what Verdict allows, Docker allows without
// conditions; what it denies, Docker does not allow at all.
func TestVerdictDockerDefault(t *testing.T) {
	raw, err := json.Marshal(dockerseccomp.DefaultProfile())
	if err != nil {
		t.Fatal(err)
	}
	p, err := Parse(raw)
	if err != nil {
		t.Fatalf("Parse of Docker's default profile: %v", err)
	}
	caps := []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID",
		"CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"}
	res, err := dockerseccomp.GetDefaultProfile(&specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{Bounding: caps}}})
	if err != nil {
		t.Fatal(err)
	}
	unconditional, some := map[string]bool{}, map[string]bool{}
	for _, r := range res.Syscalls {
		if r.Action != specs.ActAllow {
			continue
		}
		for _, n := range r.Names {
			some[n] = true
			if len(r.Args) == 0 {
				unconditional[n] = true
			}
		}
	}
	count := map[Verdict]int{}
	for nr := 0; nr < 512; nr++ {
		name := syscalls.Name(nr)
		if name == "" {
			continue
		}
		v := p.Verdict(name)
		count[v]++
		switch {
		case v == Allowed && !unconditional[name]:
			t.Errorf("%s: Verdict allowed, Docker's resolved profile does not allow it unconditionally", name)
		case v == Denied && some[name]:
			t.Errorf("%s: Verdict denied, Docker's resolved profile allows it", name)
		}
	}
	t.Logf("Docker's default profile: %d allowed, %d conditional, %d denied", count[Allowed], count[Conditional], count[Denied])
	if count[Allowed] < 250 || count[Denied] < 30 {
		t.Errorf("verdicts %v: Docker's default allows some 300 calls and denies some 50", count)
	}
}
