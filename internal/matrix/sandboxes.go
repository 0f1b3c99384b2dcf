package matrix

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	dockerseccomp "github.com/docker/docker/profiles/seccomp"
	"github.com/opencontainers/runtime-spec/specs-go"
)

// How each runtime is put into the measured scope (a fresh cgroup v2
// directory per cell; the tracer counts every task in its subtree):
//
//   - native: the service is started directly in the scope (clone into the
//     cgroup via CLONE_INTO_CGROUP).
//   - docker and the docker-* rows: the plan's one dockerd and containerd
//     (and the shims and docker-proxy they start) are moved into
//     <scope>/runtime for the cell, the container runs in
//     <scope>/<container id> (--cgroup-parent); see Docker.
//   - runc-direct, runc-direct-noseccomp: `runc run` is started in <scope>/launcher and
//     the container's linux.cgroupsPath is <scope>/ctr. runc moves the
//     container's init into its own cgroup, which is why that cgroup is
//     placed inside the scope; runc itself (and any shim it leaves) stays in
//     the launcher cgroup, also inside the scope.
//   - bubblewrap: bwrap is started in the scope; it and the sandboxed
//     service (bwrap forks it into new namespaces, never a new cgroup) stay
//     there.
//   - gVisor runsc (systrap, ptrace, kvm): `runsc run` is started in
//     <scope>/launcher and linux.cgroupsPath is <scope>/ctr. runsc keeps
//     the launcher's cgroup for processes it does not move (seen on the
//     dev host's hybrid layout) and otherwise moves the sandbox into
//     cgroupsPath: either way the sentry, gofer and the systrap stubs or
//     ptrace'd tasks are inside the scope.
//   - Kata (QEMU, Firecracker), Nabla: not runnable here; their rows say why.

// DockerSeccomp is the seccomp profile Docker 24 applies by default
// (github.com/docker/docker/profiles/seccomp at v24.0.9: Docker's own code
// and default.json), resolved the way Docker resolves it for a container
// of this architecture with Docker's default capability set on the
// running kernel: default action errno EPERM; the unconditional allow
// list; ptrace and process_vm_* on kernels 4.8 and later; socket unless
// AF_VSOCK; personality for a few personas; chroot (CAP_SYS_CHROOT is a
// default capability); clone without namespace flags; clone3 answers
// ENOSYS so libcs fall back to clone. Nothing that needs CAP_SYS_ADMIN,
// CAP_SYS_PTRACE, CAP_BPF … is allowed. It is the runtime spec's
// linux.seccomp section.
func DockerSeccomp() (*specs.LinuxSeccomp, error) {
	rs := &specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{Bounding: dockerCaps}}}
	p, err := dockerseccomp.GetDefaultProfile(rs)
	if err != nil {
		return nil, fmt.Errorf("resolve Docker's default seccomp profile: %w", err)
	}
	if p == nil {
		return nil, errors.New("resolve Docker's default seccomp profile: the profile package returned none")
	}
	return p, nil
}

// dockerCaps is Docker's default capability set (moby's
// oci/caps.DefaultCapabilities), which decides the profile's
// capability-dependent rules.
var dockerCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID",
	"CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

// Bubblewrap runs the service under bwrap with every namespace but the
// network one unshared (the load client must reach it), the service's
// files on Env.Data (see Native; else the userland root) bound read-only as
// its root, fresh /proc, /dev and /tmp. In a chroot (Env.Root, the
// lab) there is no user namespace: the kernel refuses one to a chrooted
// process.
func Bubblewrap() Runtime {
	return Runtime{
		Name:  "bubblewrap",
		Check: func(e *Env) error { return e.have("bwrap") },
		Start: func(ctx context.Context, e *Env, name, dir string, svc Service) (*Instance, error) {
			argv := svc.Argv
			if err := e.have(argv[0]); err != nil {
				return nil, err
			}
			unshare := []string{"--unshare-all", "--share-net"}
			if e.Root != "" && e.Root != "/" {
				// A chrooted process may not create a user namespace
				// (clone: EPERM), and bwrap fails on it; as root it needs
				// none: every other namespace but the network one.
				unshare = []string{"--unshare-ipc", "--unshare-pid", "--unshare-uts", "--unshare-cgroup-try"}
			}
			// Its root: the service's files on Env.Data (see Native), else /.
			root, svc, err := e.serviceRoot(svc)
			if err != nil {
				return nil, err
			}
			if root == "" {
				root = "/"
			}
			bw := append([]string{"bwrap", "--ro-bind", root, "/", "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"}, unshare...)
			bw = append(bw, "--die-with-parent", "--chdir", "/tmp", "--")
			bw = append(bw, svc.Argv...)
			h, err := e.startIn(ctx, dir, bw)
			if err != nil {
				return nil, err
			}
			if err := h.earlyExit("bwrap"); err != nil {
				return nil, err
			}
			inst := h.instance()
			inst.Runtime = "bubblewrap: " + strings.Join(unshare, " ") + ", host network, root " + root + " read-only"
			return inst, nil
		},
	}
}

// Runsc runs the service in gVisor: runsc (at path, inside Env.Root) with
// --platform=platform ("systrap", "ptrace" or "kvm"), host networking, the
// same read-only root as Runc. The kvm platform needs /dev/kvm.
func Runsc(platform, path string) Runtime {
	return Runtime{
		Name: "gvisor-" + platform,
		Check: func(e *Env) error {
			if platform == "kvm" && !haveKVM() {
				return errors.New(needsKVM("gVisor's kvm platform"))
			}
			if path == "" {
				return errors.New("no runsc given: build it with `make runsc` (CGO_ENABLED=0 go install gvisor.dev/gvisor/runsc@…) and pass --runsc")
			}
			if _, err := os.Stat(e.inRoot(path)); err != nil {
				return fmt.Errorf("runsc not found at %s: build it with `make runsc`", path)
			}
			return nil
		},
		Start: func(ctx context.Context, e *Env, id, dir string, svc Service) (*Instance, error) {
			argv := svc.Argv
			// runsc derives its cgroup from the launcher's; its overlay of
			// the root would need a writable medium: the root is read-only
			// and /tmp, /run are tmpfs mounts anyway.
			oci := ociRuntime{bin: path, global: []string{"--network=host", "--platform=" + platform, "--overlay2=none"}}
			return startOCI(ctx, e, oci, id, dir, argv, nil)
		},
	}
}

// Unavailable is a row the matrix keeps for a runtime that cannot run
// here; why says what it needs.
func Unavailable(name, why string) Runtime {
	return Runtime{
		Name:  name,
		Check: func(*Env) error { return errors.New(why) },
		Start: func(context.Context, *Env, string, string, Service) (*Instance, error) {
			return nil, errors.New(why)
		},
	}
}

// needsKVM is the reason rows that need hardware virtualization give.
func needsKVM(what string) string {
	if haveKVM() {
		return what + " is not installed here"
	}
	return "needs /dev/kvm (" + what + " runs the workload in a VM; this machine has no usable hardware virtualization: no /dev/kvm or no vmx/svm CPU flag)"
}

// haveKVM reports whether /dev/kvm exists and the CPU advertises hardware
// virtualization (vmx or svm): a /dev/kvm without them (seen on this
// project's dev host) lets runsc --platform=kvm spin without ever starting.
func haveKVM() bool {
	if _, err := os.Stat("/dev/kvm"); err != nil {
		return false
	}
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "flags" {
			for _, f := range strings.Fields(v) {
				if f == "vmx" || f == "svm" {
					return true
				}
			}
			return false
		}
	}
	return false
}

// Study2018 is the runtime set of the 2018 HAP study as it is deployed
// today, on this machine: Docker (Debian's docker.io: bridge network with
// the port published, overlay2, its default seccomp profile), gVisor under
// Docker (docker run --runtime=runsc, as the study ran it) with its own
// network stack on the systrap and ptrace platforms, native, bubblewrap;
// then variants, labelled, that explain differences (Docker without
// seccomp, gVisor on the host's network, runc and runsc started directly
// with the host's network and a read-only bind of / as root); then rows
// that cannot run here, with the reason. runsc is the runsc binary (inside
// Env.Root) for the gVisor rows, "" if there is none.
func Study2018(runsc string) []Runtime {
	gvisor := func(platform string, hostNet bool) DockerOptions {
		flags := []string{"--platform=" + platform}
		if hostNet {
			flags = append(flags, "--network=host")
		}
		return DockerOptions{Runtime: "runsc", Runsc: runsc, RunscFlags: flags, HostNetwork: hostNet}
	}
	return []Runtime{
		Native(),
		Docker("docker", DockerOptions{}),
		Docker("docker-gvisor-systrap", gvisor("systrap", false)),
		Docker("docker-gvisor-ptrace", gvisor("ptrace", false)),
		Bubblewrap(),
		variant(Docker("docker-noseccomp", DockerOptions{SecurityOpt: []string{"seccomp=unconfined"}}), "Docker with --security-opt seccomp=unconfined"),
		variant(Docker("docker-gvisor-systrap-hostnet", gvisor("systrap", true)), "gVisor systrap on the host's network (--network=host for docker and runsc): the host's TCP stack serves the sandbox's sockets"),
		variant(dockerRunc(), "runc started directly: host network, read-only bind of / as root, Docker's seccomp profile; no dockerd, bridge, NAT or overlay"),
		variant(Runc("runc-direct-noseccomp", nil), "runc started directly as above, without seccomp"),
		variant(Runsc("systrap", runsc), "runsc started directly: --network=host --overlay2=none, systrap"),
		variant(Runsc("ptrace", runsc), "runsc started directly: --network=host --overlay2=none, ptrace"),
		Runsc("kvm", runsc),
		Unavailable("kata-qemu", needsKVM("Kata Containers with QEMU")),
		Unavailable("kata-firecracker", needsKVM("Kata Containers with Firecracker")),
		Unavailable("nabla", "not installable here: nabla's runnc and solo5 are not packaged in Debian and the archived project's sources are not reachable from this machine"),
	}
}

// variant labels a runtime as a variant: a row that helps explain a
// deployed row's result, never the headline.
func variant(rt Runtime, label string) Runtime {
	rt.Variant = label
	return rt
}

// dockerRunc is runc with Docker's default seccomp profile, started
// directly, or a row that says why that profile could not be had.
func dockerRunc() Runtime {
	p, err := DockerSeccomp()
	if err != nil {
		return Unavailable("runc-direct", err.Error())
	}
	return Runc("runc-direct", p)
}
