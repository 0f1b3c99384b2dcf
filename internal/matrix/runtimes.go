package matrix

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"time"

	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/hapscope/hapscope/internal/cgroupv2"
)

// inRoot returns the path of p (a path inside e.Root) as seen from here.
func (e *Env) inRoot(p string) string {
	if e.Root == "" {
		return p
	}
	return filepath.Join(e.Root, p)
}

// lookPath finds bin in the PATH directories of e.Root and returns its
// path inside the root.
func (e *Env) lookPath(bin string) (string, error) {
	if strings.Contains(bin, "/") {
		return bin, nil
	}
	for _, d := range []string{"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"} {
		p := filepath.Join(d, bin)
		// Symlinks resolve inside the root (/etc/alternatives/… is absolute).
		real, err := resolveIn(e.inRoot("/"), p)
		if err != nil {
			continue
		}
		if st, err := os.Stat(e.inRoot(real)); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s is not installed (Debian package: apt-get install %s)", bin, debPackage(bin))
}

func (e *Env) have(bin string) error {
	_, err := e.lookPath(bin)
	return err
}

func debPackage(bin string) string {
	switch bin {
	case "redis-server":
		return "redis-server"
	case "redis-benchmark":
		return "redis-tools"
	case "bwrap":
		return "bubblewrap"
	}
	return bin
}

// startIn runs argv inside cgroup dir and returns a stop function that
// kills its process group.
func (e *Env) startIn(ctx context.Context, dir string, argv []string) (*processHandle, error) {
	return e.startInRoot(ctx, dir, e.Root, argv)
}

// startInRoot is startIn chrooted into root (a path here; see commandIn).
func (e *Env) startInRoot(ctx context.Context, dir, root string, argv []string) (*processHandle, error) {
	fd, err := syscall.Open(dir, syscall.O_DIRECTORY|syscall.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer syscall.Close(fd)
	return startHandle(e.commandIn(ctx, root, fd, argv...))
}

// startHandle starts c, its output collected, and returns its handle.
func startHandle(c *exec.Cmd) (*processHandle, error) {
	var out bytes.Buffer
	c.Stdout, c.Stderr = &out, &out
	if err := c.Start(); err != nil {
		return nil, err
	}
	h := &processHandle{out: &out, done: make(chan struct{}), proc: c.Process}
	go func() { h.err = c.Wait(); close(h.done) }()
	h.kill = func() { syscall.Kill(-c.Process.Pid, syscall.SIGKILL) }
	return h, nil
}

type processHandle struct {
	out  *bytes.Buffer
	done chan struct{}
	err  error
	kill func()
	proc *os.Process
}

func (h *processHandle) pid() int { return h.proc.Pid }

// earlyExit waits a moment and reports what the process said if it has
// already exited (a runtime that cannot start the service exits at once).
func (h *processHandle) earlyExit(what string) error {
	select {
	case <-h.done:
		return fmt.Errorf("%s exited: %v: %s", what, h.err, strings.TrimSpace(h.out.String()))
	case <-time.After(time.Second):
		return nil
	}
}

// exited reports how the process ended (nil while it runs), with the
// tail of what it printed.
func (h *processHandle) exited() error {
	select {
	case <-h.done:
		return fmt.Errorf("the service's process exited: %v: %s", h.err, tail(h.out.String(), 2000))
	default:
		return nil
	}
}

func (h *processHandle) instance() *Instance { return &Instance{Stop: h.stop, Exited: h.exited} }

func (h *processHandle) stop() error {
	h.kill()
	select {
	case <-h.done:
	case <-time.After(10 * time.Second):
		return errors.New("process did not exit after SIGKILL")
	}
	return nil
}

// Native runs the service as a plain process in the scope. With Env.Data
// set, its files come from there, as a host's come from its disk: it runs
// chrooted into a copy of the files its Docker image holds (serviceRoot),
// with /proc and /dev mounted; a chroot contains nothing, it only decides
// which file system serves the program (the lab's host root is virtiofs,
// whose FUSE code no real host runs).
func Native() Runtime {
	return Runtime{
		Name:  "native",
		Check: func(e *Env) error { return nil },
		Start: func(ctx context.Context, e *Env, name, dir string, svc Service) (*Instance, error) {
			argv := svc.Argv
			if err := e.have(argv[0]); err != nil {
				return nil, err
			}
			root, svc, err := e.serviceRoot(svc)
			if err != nil {
				return nil, err
			}
			var h *processHandle
			if root == "" {
				h, err = e.startIn(ctx, dir, argv)
			} else {
				h, err = e.startInRoot(ctx, dir, e.inRoot(root), svc.Argv)
			}
			if err != nil {
				return nil, err
			}
			inst := h.instance()
			if root != "" {
				inst.Runtime = "native, files on " + root + " (ext4 scratch disk)"
			}
			return inst, nil
		},
	}
}

// Runc runs the service in a runc container whose read-only root file
// system is the machine's own / (so the service binary and its libraries
// are there), sharing the host network namespace so the load client can
// reach it. runc itself runs in <scope>/launcher and the container in
// <scope>/ctr: both inside the measured subtree. seccomp, when set, is the
// container's linux.seccomp section (nil: no seccomp filter).
func Runc(name string, seccomp *specs.LinuxSeccomp) Runtime {
	return Runtime{
		Name:  name,
		Check: func(e *Env) error { return e.have("runc") },
		Start: func(ctx context.Context, e *Env, id, dir string, svc Service) (*Instance, error) {
			argv := svc.Argv
			return startOCI(ctx, e, ociRuntime{bin: "runc"}, id, dir, argv, seccomp)
		},
	}
}

// ociRuntime is an OCI runtime command line: runc or runsc.
type ociRuntime struct {
	bin    string   // looked up in Env.Root
	global []string // flags before the subcommand
}

func (o ociRuntime) argv(e *Env, args ...string) []string {
	a := append([]string{o.bin, "--root", filepath.Join(e.Work, filepath.Base(o.bin)+"-state")}, o.global...)
	return append(a, args...)
}

func startOCI(ctx context.Context, e *Env, oci ociRuntime, id, dir string, argv []string, seccomp *specs.LinuxSeccomp) (*Instance, error) {
	// A unique container id per start: a runtime whose delete of the
	// previous run did not finish in time (runsc under emulation) would
	// otherwise refuse the next run with "container already exists".
	id = fmt.Sprintf("%s-%d", id, time.Now().UnixNano())
	bundle := filepath.Join(e.Work, filepath.Base(oci.bin)+"-"+id)
	rootfs := filepath.Join(bundle, "rootfs")
	// Mount where the chrooted runc will see it: a mount made on e.Work
	// outside the root would not show up inside it.
	if err := os.MkdirAll(e.inRoot(rootfs), 0o755); err != nil {
		return nil, err
	}
	// The container's root: a read-only, non-recursive bind of the userland root.
	src := e.Root
	if src == "" {
		src = "/"
	}
	if err := unix.Mount(src, e.inRoot(rootfs), "", unix.MS_BIND, ""); err != nil {
		return nil, fmt.Errorf("bind %s on %s: %w", src, e.inRoot(rootfs), err)
	}
	unix.Mount("", e.inRoot(rootfs), "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, "")
	cleanup := func() {
		unix.Unmount(e.inRoot(rootfs), unix.MNT_DETACH)
		os.RemoveAll(e.inRoot(bundle))
	}
	spec, err := runcSpec(ctx, e, bundle)
	if err != nil {
		cleanup()
		return nil, err
	}
	cgroupsPath, err := e.cgroupPath(filepath.Join(dir, "ctr"))
	if err != nil {
		cleanup()
		return nil, err
	}
	if err := editSpec(spec, argv, rootfs, cgroupsPath, seccomp); err != nil {
		cleanup()
		return nil, err
	}
	data, _ := json.MarshalIndent(spec, "", "  ")
	if err := os.WriteFile(e.inRoot(filepath.Join(bundle, "config.json")), data, 0o644); err != nil {
		cleanup()
		return nil, err
	}
	launcher := filepath.Join(dir, "launcher")
	if err := os.Mkdir(launcher, 0o755); err != nil && !os.IsExist(err) {
		cleanup()
		return nil, err
	}
	h, err := e.startIn(ctx, launcher, oci.argv(e, "run", "--bundle", bundle, id))
	if err != nil {
		cleanup()
		return nil, err
	}
	// The runtime exits soon when the container cannot start: report its words.
	if err := h.earlyExit(oci.bin + " run"); err != nil {
		cleanup()
		return nil, err
	}
	what := "runc run started directly: host network, the host root bound read-only as its root"
	if oci.bin != "runc" {
		what = "runsc " + strings.Join(oci.global, " ") + " run, started directly: the host root bound read-only as its root"
	}
	what += ", " + describeSeccomp(seccomp)
	return &Instance{Exited: h.exited, Runtime: what, Stop: func() error {
		// A runtime that hangs must not hang the matrix: bounded waits,
		// and the scope's cgroup is emptied with SIGKILL afterwards anyway.
		kctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		kill := e.command(kctx, -1, oci.argv(e, "kill", id, "KILL")...)
		kill.Run()
		err := h.stop()
		del := e.command(kctx, -1, oci.argv(e, "delete", "--force", id)...)
		del.Run()
		cleanup()
		return err
	}}, nil
}

// cgroupPath turns a cgroup directory into the path runc wants: relative to
// the cgroup v2 mount, with a leading slash.
func (e *Env) cgroupPath(dir string) (string, error) {
	root, err := Cgroup2Root()
	if err != nil {
		return "", err
	}
	rel, err := filepath.Rel(root, dir)
	if err != nil || strings.HasPrefix(rel, "..") {
		return "", fmt.Errorf("%s is not under the cgroup v2 mount %s", dir, root)
	}
	return "/" + rel, nil
}

// runcSpec is `runc spec`'s default configuration, read into the runtime
// spec's types.
func runcSpec(ctx context.Context, e *Env, bundle string) (*specs.Spec, error) {
	os.Remove(e.inRoot(filepath.Join(bundle, "config.json")))
	c := e.command(ctx, -1, "runc", "spec", "--bundle", bundle)
	if out, err := c.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("runc spec: %v: %s", err, out)
	}
	data, err := os.ReadFile(e.inRoot(filepath.Join(bundle, "config.json")))
	if err != nil {
		return nil, err
	}
	return parseSpec(data)
}

// parseSpec reads an OCI runtime configuration (config.json).
func parseSpec(data []byte) (*specs.Spec, error) {
	var spec specs.Spec
	if err := json.Unmarshal(data, &spec); err != nil {
		return nil, fmt.Errorf("runc spec output: %w", err)
	}
	return &spec, nil
}

// editSpec adapts runc's default spec: our command, our root, host network,
// writable /tmp and /run, the cgroup inside the scope, and the given
// seccomp filter (nil: none).
func editSpec(spec *specs.Spec, argv []string, rootfs, cgroupsPath string, seccomp *specs.LinuxSeccomp) error {
	if spec.Process == nil || spec.Linux == nil {
		return errors.New("runc spec has no process or linux section")
	}
	spec.Process.Args = argv
	spec.Process.Terminal = false
	spec.Process.Cwd = "/tmp"
	spec.Root = &specs.Root{Path: rootfs, Readonly: true}
	var ns []specs.LinuxNamespace
	for _, n := range spec.Linux.Namespaces {
		if n.Type != specs.NetworkNamespace {
			ns = append(ns, n)
		}
	}
	spec.Linux.Namespaces = ns
	spec.Linux.CgroupsPath = cgroupsPath
	spec.Linux.Seccomp = seccomp
	for _, d := range []string{"/tmp", "/run"} {
		spec.Mounts = append(spec.Mounts, specs.Mount{Destination: d, Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "nodev", "mode=1777"}})
	}
	return nil
}

// Cgroup2Root returns where the cgroup v2 hierarchy's root is mounted
// (cgroupv2.Root: the cgroup2 line of /proc/self/mountinfo whose root is
// "/").
func Cgroup2Root() (string, error) { return cgroupv2.Root() }

// describeSeccomp says which seccomp filter a runtime spec's section is.
func describeSeccomp(s *specs.LinuxSeccomp) string {
	if s == nil {
		return "no seccomp filter"
	}
	if def, err := DockerSeccomp(); err == nil && reflect.DeepEqual(def, s) {
		return "Docker's default seccomp profile"
	}
	allowed := 0
	for _, r := range s.Syscalls {
		if r.Action == specs.ActAllow {
			allowed += len(r.Names)
		}
	}
	return fmt.Sprintf("a custom seccomp profile (%d system calls allowed, default action %s)", allowed, s.DefaultAction)
}
