package matrix

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// DockerOptions are how a Docker row runs its container, beyond Docker's
// defaults (bridge network with the port published, overlay2 on Env.Data,
// Docker's default seccomp profile, runc).
type DockerOptions struct {
	// Runtime is the OCI runtime (docker run --runtime): "" for Docker's
	// default, runc; "runsc" for gVisor.
	Runtime string
	// Runsc is runsc's path inside Env.Root, and RunscFlags its flags
	// (--platform=systrap, --network=host …), when Runtime is "runsc".
	Runsc      string
	RunscFlags []string
	// SecurityOpt are the Engine API's security options, such as
	// "seccomp=unconfined"; a seccomp profile is given as its JSON
	// ("seccomp={…}"), which the docker CLI reads from the file named by
	// --security-opt seccomp=FILE.
	SecurityOpt []string
	// HostNetwork runs the container in the host's network namespace
	// (--network=host) instead of Docker's default bridge.
	HostNetwork bool
	// daemonsApart leaves the daemons in their own cgroup: the cell's
	// cgroup holds the container alone, from runc init's joining it
	// (FromStart).
	daemonsApart bool
}

// Docker runs the service the way Docker runs containers by default, with
// Debian's docker.io: one dockerd and containerd for the whole Plan.Run,
// started at its first Docker cell (containerd as its own service, as
// Debian's containerd.service runs it), every OCI runtime the plan's
// Docker rows use registered with it. During a cell the daemons' processes
// (and the shim and docker-proxy they start) are moved into
// <scope>/runtime and the container runs in <scope>/<container id>
// (--cgroup-parent): both inside the measured subtree, so the runtime's
// processes are accounted as the runtime's, and scored apart as the cell's
// "runtime" and "container" parts; between cells they wait in
// <Env.Cgroup>/docker-daemons. The image is the service's program and the
// files it needs (imported once per data root), its root file system
// overlay2 on Env.Data; the service's port is published on every address
// (-p), so a client reaches it through DNAT, bridge and veth.
func Docker(name string, opt DockerOptions) Runtime {
	return Runtime{
		Name:   name,
		docker: &opt,
		Check: func(e *Env) error {
			for _, bin := range []string{"dockerd", "containerd", "docker-proxy", "iptables"} {
				if err := e.have(bin); err != nil {
					return err
				}
			}
			if pid := e.otherDockerd(); pid != 0 {
				return fmt.Errorf("another Docker engine runs here (dockerd, pid %d): each Docker cell starts its own dockerd, whose bridge and NAT chains would clash with it; stop it (systemctl stop docker docker.socket) or measure in the lab (make demo does when this kernel cannot be traced)", pid)
			}
			if opt.Runtime == "runsc" {
				if opt.Runsc == "" {
					return errors.New("no runsc given: build it with `make lab-prep` and pass --runsc")
				}
				if _, err := os.Stat(e.inRoot(opt.Runsc)); err != nil {
					return fmt.Errorf("runsc not found at %s: build it with `make lab-prep`", opt.Runsc)
				}
			}
			return nil
		},
		Start: func(ctx context.Context, e *Env, id, dir string, svc Service) (*Instance, error) {
			return startDocker(ctx, e, opt, id, dir, svc)
		},
	}
}

// otherDockerd returns the pid of a dockerd that is not the plan's own,
// or 0.
func (e *Env) otherDockerd() int {
	own := -1
	if e.docker != nil {
		own = e.docker.h.pid()
	}
	ents, _ := os.ReadDir("/proc")
	for _, ent := range ents {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil {
			continue
		}
		comm, err := os.ReadFile(filepath.Join("/proc", ent.Name(), "comm"))
		if err != nil || strings.TrimSpace(string(comm)) != "dockerd" || pid == own {
			continue
		}
		return pid
	}
	return 0
}

// DockerVersion reports the version of the dockerd in Env.Root ("Docker
// version 20.10.24+dfsg1, build …"), or why it cannot.
func DockerVersion(ctx context.Context, e *Env) (string, error) {
	out, err := e.command(ctx, -1, "dockerd", "--version").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("dockerd --version: %v: %s", err, bytes.TrimSpace(out))
	}
	return strings.TrimSpace(string(out)), nil
}

// writableDockerConf makes /etc/docker in Env.Root writable where it is
// not (the lab's read-only host root): dockerd writes its key.json there,
// whatever its flags say. A tmpfs goes over it, holding copies of the
// files it had.
func (e *Env) writableDockerConf() error {
	dir := e.inRoot("/etc/docker")
	if err := os.MkdirAll(dir, 0o755); err != nil && !errors.Is(err, syscall.EROFS) {
		return err
	}
	if unix.Access(dir, unix.W_OK) == nil {
		var st unix.Statfs_t
		if unix.Statfs(dir, &st) == nil && st.Flags&unix.ST_RDONLY == 0 {
			return nil
		}
	}
	ents, _ := os.ReadDir(dir)
	saved := map[string][]byte{}
	for _, ent := range ents {
		if ent.Type().IsRegular() {
			if b, err := os.ReadFile(filepath.Join(dir, ent.Name())); err == nil {
				saved[ent.Name()] = b
			}
		}
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "mode=0755"); err != nil {
		return fmt.Errorf("%s is read-only and a tmpfs could not go over it (dockerd writes key.json there): %w", dir, err)
	}
	for name, b := range saved {
		os.WriteFile(filepath.Join(dir, name), b, 0o644)
	}
	return nil
}

// startDaemon starts a daemon of Env.Root (containerd, dockerd) in cgroup
// dir. Where Env.Root is a chroot (the lab's host root), the daemon gets
// it as the root of its own mount namespace instead (mount --move onto /,
// then chroot into it, as switch_root does): the kernel refuses a user
// namespace to a chrooted process, and gVisor's gofer, which runsc starts
// under containerd, needs one ("gofer: fork/exec /proc/self/exe:
// operation not permitted"). It takes the guest's busybox.
//
// With join set (a daemon started so), the daemon joins that one's mount
// namespace instead: dockerd mounts each container's overlay2 root where
// containerd's runc must see it.
func (e *Env) startDaemon(ctx context.Context, dir string, join *processHandle, argv []string) (*processHandle, error) {
	if e.Root == "" || e.Root == "/" {
		return e.startIn(ctx, dir, argv)
	}
	if _, err := os.Stat("/bin/busybox"); err != nil {
		return nil, fmt.Errorf("start %s with %s as its root: needs /bin/busybox here (the lab guest has it): %w", argv[0], e.Root, err)
	}
	prog, err := e.lookPath(argv[0])
	if err != nil {
		return nil, err
	}
	binds := ""
	for _, b := range e.daemonBinds {
		binds += "mount --bind " + shellQuote("."+b.copy) + " " + shellQuote("."+b.orig) + " && "
	}
	script := `mount --make-rprivate / && cd "$0" && ` + binds + `mount --move . / && exec chroot . "$@"`
	wrapped := append([]string{"/bin/busybox", "unshare", "-m", "/bin/busybox", "sh", "-c", script, e.Root, prog}, argv[1:]...)
	if join != nil {
		// Joining a mount namespace makes its root (the moved host root)
		// this process's root, as the kernel's setns does.
		wrapped = append([]string{"/bin/busybox", "nsenter", "-t", strconv.Itoa(join.pid()), "-m", "--", prog}, argv[1:]...)
	}
	fd, err := syscall.Open(dir, syscall.O_DIRECTORY|syscall.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer syscall.Close(fd)
	c := e.commandIn(ctx, "/", fd, wrapped...)
	c.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "LC_ALL=C"}
	if e.daemonTmp != "" {
		c.Env = append(c.Env, "TMPDIR="+e.daemonTmp)
	}
	return startHandle(c)
}

// dockerd is a running Docker daemon and its containerd.
type dockerd struct {
	e      *Env
	h      *processHandle
	ctrd   *processHandle
	cgroup string // where its processes wait between cells
	sock   string // the API socket, as a path here
	state  string // the tmpfs of the daemons' state, as a path here
	client *http.Client
}

// runscRuntime is the name a runsc configuration is registered under
// with dockerd: "runsc" and its flags, "=" made "-" (runsc--platform-systrap).
func runscRuntime(opt DockerOptions) string {
	return "runsc" + strings.ReplaceAll(strings.Join(opt.RunscFlags, ""), "=", "-")
}

// dockerd returns the plan's Docker daemon, starting it if it is not
// running.
func (e *Env) dockerd(ctx context.Context) (*dockerd, error) {
	if e.docker != nil && e.docker.h.exited() == nil && e.docker.ctrd.exited() == nil {
		return e.docker, nil
	}
	if e.docker != nil {
		e.logf("matrix: the Docker daemon is gone (dockerd: %v; containerd: %v); starting it again. dockerd's last words: %s",
			e.docker.h.exited(), e.docker.ctrd.exited(), tail(e.docker.h.out.String(), 1500))
		e.docker.stop()
		e.docker = nil
	}
	d, err := startDockerd(ctx, e)
	if err != nil {
		return nil, err
	}
	e.docker = d
	return d, nil
}

// stopDocker stops the plan's Docker daemon, if it runs, and removes the
// cgroup its processes waited in.
func (e *Env) stopDocker() error {
	if e.docker == nil {
		return nil
	}
	err := e.docker.stop()
	e.docker = nil
	return errors.Join(err, RemoveCgroup(filepath.Join(e.Cgroup, "docker-daemons")), e.dropDockerTables())
}

// saveTables lists the firewall's tables before the plan's Docker first
// starts. dockerd adds nat and filter tables (iptables-nft) that outlive
// it, and with them every later connection on this machine passes
// conntrack and NAT: a native row measured after would be "native on a
// Docker host". stopDocker deletes the tables that were not there before
// (those that were, Docker's chains in them included, stay as they are).
func (e *Env) saveTables(ctx context.Context) error {
	if e.tablesBefore != nil {
		return nil
	}
	t, err := e.tables(ctx)
	if err != nil {
		return err
	}
	e.tablesBefore = t
	return nil
}

// tables lists the firewall's tables ("ip nat", "ip6 filter", …).
func (e *Env) tables(ctx context.Context) ([]string, error) {
	out, err := e.command(ctx, -1, "nft", "list", "tables").Output()
	if err != nil {
		return nil, fmt.Errorf("list the firewall's tables (nft list tables; apt-get install nftables): %w", err)
	}
	return parseTables(string(out)), nil
}

// parseTables reads `nft list tables`: a "table FAMILY NAME" line each.
func parseTables(s string) []string {
	t := []string{}
	for line := range strings.Lines(s) {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "table" {
			t = append(t, f[1]+" "+f[2])
		}
	}
	return t
}

// dropDockerTables deletes the tables made since saveTables.
func (e *Env) dropDockerTables() error {
	if e.tablesBefore == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	now, err := e.tables(ctx)
	if err != nil {
		return err
	}
	var script strings.Builder
	var made []string
	for _, t := range now {
		if !slices.Contains(e.tablesBefore, t) {
			fmt.Fprintf(&script, "delete table %s\n", t)
			made = append(made, t)
		}
	}
	e.tablesBefore = nil
	if len(made) == 0 {
		return nil
	}
	c := e.command(ctx, -1, "nft", "-f", "-")
	c.Stdin = strings.NewReader(script.String())
	if out, err := c.CombinedOutput(); err != nil {
		return fmt.Errorf("delete the firewall tables Docker made (%s): %w: %s", strings.Join(made, ", "), err, out)
	}
	e.logf("matrix: docker stopped: deleted the firewall tables it made (%s)", strings.Join(made, ", "))
	return nil
}

// daemonPrograms are Docker's daemons and the programs they run for a
// container (shim, runc, docker-proxy, docker-init, iptables): offVirtiofs
// copies them, with the runsc of the plan's gVisor rows.
var daemonPrograms = []string{"containerd", "dockerd", "containerd-shim-runc-v2", "runc", "docker-proxy", "docker-init", "iptables", "ip6tables"}

// bind is a file's copy on Env.Data and the original path it is bound
// over, both inside Env.Root.
type bind struct{ copy, orig string }

// offVirtiofs copies the files of Docker's programs (and of runsc for the
// plan's gVisor rows), with the shared libraries they load, onto Env.Data,
// into e.daemonBinds: startDaemon binds each copy over its original in the
// daemons' mount namespace, which the shims, runc, runsc and docker-proxy
// inherit. A host runs them off its own disk; without this, in the lab,
// they would page their code in from the virtiofs root and the runtime's
// part (and gVisor's sentry) would carry FUSE code no host runs. Each call
// copies what earlier ones did not (a later plan's runsc: a plan without
// gVisor rows once left runsc on virtiofs for every plan after it, and
// gVisor's rows held fuse_readahead and virtio_fs_send_req). A no-op
// without Env.Data or with this machine's own root.
func (e *Env) offVirtiofs() error {
	if e.Data == "" || e.Root == "" || e.Root == "/" {
		return nil
	}
	progs := slices.Clone(daemonPrograms)
	for _, opt := range e.dockerRuntimes {
		if opt.Runtime == "runsc" && !slices.Contains(progs, opt.Runsc) {
			progs = append(progs, opt.Runsc)
		}
	}
	files := map[string]bool{}
	for _, name := range progs {
		prog, err := e.lookPath(name)
		if err != nil {
			if name == "docker-init" || name == "ip6tables" {
				continue // optional: Docker runs without them
			}
			return err
		}
		names, err := imageFiles(e.inRoot("/"), Service{Argv: []string{prog}})
		if err != nil {
			return fmt.Errorf("files of %s: %w", name, err)
		}
		for _, f := range names {
			files[f] = true
		}
	}
	for _, b := range e.daemonBinds {
		delete(files, b.orig)
	}
	var binds []bind
	var size int64
	for _, f := range slices.Sorted(maps.Keys(files)) {
		st, err := os.Lstat(e.inRoot(f))
		if err != nil {
			return err
		}
		if !st.Mode().IsRegular() {
			continue // symlinks lead to regular files of the set; directories stay
		}
		b := bind{copy: filepath.Join(e.Data, "daemon-files", f), orig: f}
		if err := copyFile(e.inRoot(f), e.inRoot(b.copy), st.Mode().Perm()); err != nil {
			return fmt.Errorf("copy %s onto %s: %w", f, e.Data, err)
		}
		binds = append(binds, b)
		size += st.Size()
	}
	if len(binds) == 0 {
		return nil
	}
	e.daemonBinds = append(e.daemonBinds, binds...)
	e.logf("matrix: docker: %d files of Docker's programs (%d MiB) copied onto %s, bound over the originals for the daemons", len(binds), size>>20, e.Data)
	return nil
}

func copyFile(from, to string, perm fs.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		return err
	}
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// shellQuote quotes s for sh.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func startDockerd(ctx context.Context, e *Env) (*dockerd, error) {
	runtimeDir := filepath.Join(e.Cgroup, "docker-daemons")
	if err := os.MkdirAll(runtimeDir, 0o755); err != nil {
		return nil, err
	}
	base := filepath.Join(e.Work, "docker")
	if err := os.MkdirAll(e.inRoot(base), 0o755); err != nil {
		return nil, err
	}
	// The daemons' state (sockets, containerd's state, dockerd's exec
	// root, the shims' bundles) lives on a tmpfs, as /run is on a deployed
	// host. Under the lab's /tmp (an overlay on the host's virtiofs root)
	// a file the daemons removed during a cell put 25 fs/fuse and 24
	// overlay functions into the runtime's part of some runs only.
	if err := unix.Mount("tmpfs", e.inRoot(base), "tmpfs", 0, "mode=0711"); err != nil {
		return nil, fmt.Errorf("mount a tmpfs for the Docker daemons' state on %s: %w", e.inRoot(base), err)
	}
	started := false
	defer func() {
		if !started {
			unix.Unmount(e.inRoot(base), unix.MNT_DETACH)
		}
	}()
	// Their temporary files too: the lab's /tmp is that overlay (in a
	// 180 s window dockerd's part held a removal through it: vfs_unlink,
	// shmem_undo_range, 25 fs/fuse functions). A deployed Debian 13 host's
	// /tmp is a tmpfs.
	e.daemonTmp = filepath.Join(base, "tmp")
	if err := os.Mkdir(e.inRoot(e.daemonTmp), 0o755); err != nil {
		return nil, fmt.Errorf("the Docker daemons' TMPDIR: %w", err)
	}
	cfg := map[string]any{}
	runtimes := map[string]any{}
	for _, opt := range e.dockerRuntimes {
		if opt.Runtime == "runsc" {
			runtimes[runscRuntime(opt)] = map[string]any{"path": opt.Runsc, "runtimeArgs": opt.RunscFlags}
		}
	}
	if len(runtimes) > 0 {
		cfg["runtimes"] = runtimes
	}
	data, _ := json.Marshal(cfg)
	if err := os.WriteFile(e.inRoot(filepath.Join(base, "daemon.json")), data, 0o644); err != nil {
		return nil, err
	}
	if err := e.writableDockerConf(); err != nil {
		return nil, err
	}
	if err := e.offVirtiofs(); err != nil {
		return nil, fmt.Errorf("run Docker's programs off the virtiofs root: %w", err)
	}
	if err := e.saveTables(ctx); err != nil {
		return nil, err
	}
	// containerd runs as its own service, as Debian's containerd.service
	// runs it, rather than supervised by dockerd: dockerd gives its own
	// containerd a fixed time to start, which a containerd starting with
	// every kernel function traced under emulation does not meet.
	ctrdSock := filepath.Join(base, "ctrd.sock")
	os.Remove(e.inRoot(ctrdSock))
	ctrdConf := fmt.Sprintf("version = 2\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n[plugins.\"io.containerd.internal.v1.opt\"]\n  path = %q\n",
		filepath.Join(e.data(), "containerd-opt"))
	if err := os.WriteFile(e.inRoot(filepath.Join(base, "containerd.toml")), []byte(ctrdConf), 0o644); err != nil {
		return nil, err
	}
	// The daemons outlive the cell whose context started them (exec
	// kills a command when its context ends): stopDocker stops them.
	daemonCtx := context.WithoutCancel(ctx)
	ctrd, err := e.startDaemon(daemonCtx, runtimeDir, nil, []string{"containerd",
		"--config", filepath.Join(base, "containerd.toml"),
		"--address", ctrdSock,
		"--root", filepath.Join(e.data(), "containerd"),
		"--state", filepath.Join(base, "containerd-state"),
		"--log-level", "warn",
	})
	if err != nil {
		return nil, fmt.Errorf("start containerd: %w", err)
	}
	// Both daemons' start-up: 2.5 min in the lab's 6.12 guest alone (one
	// emulated CPU, every kernel function traced), more when make test's
	// 6.1 guest shares the host's CPUs; a bound for a wedged daemon only.
	wctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	err = poll(wctx, func() error {
		if err := ctrd.exited(); err != nil {
			return stopPoll{fmt.Errorf("containerd: %w", err)}
		}
		c, err := net.Dial("unix", e.inRoot(ctrdSock))
		if err == nil {
			c.Close()
		}
		return err
	})
	if err != nil {
		ctrd.stop()
		return nil, fmt.Errorf("containerd did not listen: %w; its log: %s", err, tail(ctrd.out.String(), 2000))
	}
	// A short socket path: sun_path holds 108 bytes.
	sock := filepath.Join(base, "d.sock")
	os.Remove(e.inRoot(sock))
	argv := []string{"dockerd",
		"--containerd", ctrdSock,
		"--data-root", filepath.Join(e.data(), "docker"),
		"--exec-root", filepath.Join(base, "exec"),
		"--pidfile", filepath.Join(base, "dockerd.pid"),
		"--config-file", filepath.Join(base, "daemon.json"),
		"-H", "unix://" + sock,
		"--log-level", "warn",
	}
	h, err := e.startDaemon(daemonCtx, runtimeDir, ctrd, argv)
	if err != nil {
		ctrd.stop()
		return nil, fmt.Errorf("start dockerd: %w", err)
	}
	d := &dockerd{e: e, h: h, ctrd: ctrd, sock: e.inRoot(sock), cgroup: runtimeDir, state: e.inRoot(base)}
	d.client = &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var nd net.Dialer
			return nd.DialContext(ctx, "unix", d.sock)
		},
	}}
	// dockerd sets up its bridge and NAT chains: tens of seconds under
	// emulation with every kernel function traced.
	err = poll(wctx, func() error {
		if err := h.exited(); err != nil {
			return stopPoll{fmt.Errorf("dockerd: %w", err)}
		}
		_, err := d.call(wctx, "GET", "/_ping", nil, nil)
		return err
	})
	if err != nil {
		d.stop()
		return nil, fmt.Errorf("dockerd did not answer: %w; its log: %s", err, tail(h.out.String(), 2000))
	}
	started = true
	return d, nil
}

func tail(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// call makes one Engine API request; body is JSON-encoded unless it is an
// io.Reader. It returns the response body, or an error with the daemon's
// message for a status ≥ 300.
func (d *dockerd) call(ctx context.Context, method, path string, query url.Values, body any) ([]byte, error) {
	var rd io.Reader
	ctype := "application/json"
	switch b := body.(type) {
	case nil:
	case io.Reader:
		rd, ctype = b, "application/x-tar"
	default:
		data, err := json.Marshal(b)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(data)
	}
	u := "http://docker/v1.41" + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, err
	}
	if rd != nil {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := d.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 300 {
		var m struct{ Message string }
		if json.Unmarshal(out, &m) == nil && m.Message != "" {
			return out, &dockerError{resp.StatusCode, m.Message}
		}
		return out, &dockerError{resp.StatusCode, strings.TrimSpace(string(out))}
	}
	return out, nil
}

type dockerError struct {
	Status  int
	Message string
}

func (e *dockerError) Error() string { return fmt.Sprintf("docker API %d: %s", e.Status, e.Message) }

// image makes sure the daemon has the service's image, importing it from
// the service's files when not, and returns its reference.
func (d *dockerd) image(ctx context.Context, name string, svc Service) (string, error) {
	ref := "hapscope/" + name + ":latest"
	if _, err := d.call(ctx, "GET", "/images/"+ref+"/json", nil, nil); err == nil {
		return ref, nil
	}
	files, err := imageFiles(d.e.inRoot("/"), svc)
	if err != nil {
		return "", fmt.Errorf("image of %s: %w", name, err)
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(writeImage(pw, d.e.inRoot("/"), files)) }()
	q := url.Values{"fromSrc": {"-"}, "repo": {"hapscope/" + name}, "tag": {"latest"}}
	out, err := d.call(ctx, "POST", "/images/create", q, pr)
	pr.Close()
	if err != nil {
		return "", fmt.Errorf("docker import of %s (%d files): %w", name, len(files), err)
	}
	// The import streams JSON progress; an error arrives as a message in it.
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		var m struct{ Error string }
		if json.Unmarshal(sc.Bytes(), &m) == nil && m.Error != "" {
			return "", fmt.Errorf("docker import of %s: %s", name, m.Error)
		}
	}
	d.e.logf("matrix: docker: imported %s (%d files)", ref, len(files))
	return ref, nil
}

// stop stops dockerd, then containerd: SIGTERM, SIGKILL after 30 s; then
// it unmounts the tmpfs of their state.
func (d *dockerd) stop() error {
	err := errors.Join(terminate(d.h), terminate(d.ctrd))
	if d.state != "" {
		if uerr := unix.Unmount(d.state, unix.MNT_DETACH); uerr != nil {
			err = errors.Join(err, fmt.Errorf("unmount the Docker daemons' state (%s): %w", d.state, uerr))
		}
	}
	return err
}

func terminate(h *processHandle) error {
	syscall.Kill(-h.pid(), syscall.SIGTERM)
	select {
	case <-h.done:
		return nil
	case <-time.After(30 * time.Second):
	}
	return h.stop()
}

// prepareDocker starts the plan's Docker daemons if they do not run and
// imports svc's image; it returns svc with its program's path in the root.
// The image is imported before the daemons join a cell, and the daemons'
// work after their start or an import (containerd's garbage collection,
// dockerd's bookkeeping) must be over before a cell: a deployed host's
// daemons have been up for hours.
func prepareDocker(ctx context.Context, e *Env, svc Service) (*dockerd, Service, string, error) {
	d, err := e.dockerd(ctx)
	if err != nil {
		return nil, svc, "", err
	}
	prog, err := e.lookPath(svc.Argv[0])
	if err != nil {
		return nil, svc, "", err
	}
	svc.Argv = append([]string{prog}, svc.Argv[1:]...)
	ref, err := d.image(ctx, svcImageName(svc), svc)
	return d, svc, ref, err
}

func startDocker(ctx context.Context, e *Env, opt DockerOptions, id, dir string, svc Service) (*Instance, error) {
	if opt.Runtime == "runsc" {
		if _, ok := e.dockerRuntimes[runscRuntime(opt)]; !ok {
			return nil, fmt.Errorf("runtime %s is not registered with dockerd: Docker rows run through Plan.Run", runscRuntime(opt))
		}
	}
	d, svc, ref, err := prepareDocker(ctx, e, svc)
	if err != nil {
		return nil, err
	}
	if _, err := e.awaitQuiet(ctx, d.cgroup, id+": the Docker daemons"); err != nil {
		return nil, err
	}
	runtimeDir := filepath.Join(dir, "runtime")
	moveBack := func() error { return nil }
	if !opt.daemonsApart {
		if err := os.Mkdir(runtimeDir, 0o755); err != nil && !os.IsExist(err) {
			return nil, err
		}
		// The daemons join the cell; they go back when it stops.
		if err := moveProcs(d.cgroup, runtimeDir); err != nil {
			return nil, fmt.Errorf("move the Docker daemons into %s: %w", runtimeDir, err)
		}
		moveBack = func() error { return moveProcs(runtimeDir, d.cgroup) }
	}
	fail := func(err error) (*Instance, error) {
		moveBack()
		return nil, err
	}
	parent, err := e.cgroupPath(dir)
	if err != nil {
		return fail(err)
	}
	port := strconv.Itoa(svc.Port) + "/tcp"
	host := map[string]any{
		"CgroupParent": parent,
		"SecurityOpt":  opt.SecurityOpt,
	}
	exposed := map[string]any{}
	if svc.Port != 0 {
		host["PortBindings"] = map[string]any{port: []map[string]string{{"HostPort": strconv.Itoa(svc.Port)}}}
		exposed[port] = map[string]any{}
	}
	if opt.Runtime == "runsc" {
		host["Runtime"] = runscRuntime(opt)
	} else if opt.Runtime != "" {
		host["Runtime"] = opt.Runtime
	}
	if opt.HostNetwork {
		host["NetworkMode"] = "host"
		delete(host, "PortBindings")
	}
	create := map[string]any{
		"Image":        ref,
		"Entrypoint":   svc.Argv[:1],
		"Cmd":          svc.Argv[1:],
		"WorkingDir":   "/tmp",
		"ExposedPorts": exposed,
		"HostConfig":   host,
	}
	cname := fmt.Sprintf("%s-%d", id, time.Now().UnixNano())
	out, err := d.call(ctx, "POST", "/containers/create", url.Values{"name": {cname}}, create)
	if err != nil {
		return fail(fmt.Errorf("docker create: %w", err))
	}
	var created struct{ Id string }
	if err := json.Unmarshal(out, &created); err != nil || created.Id == "" {
		return fail(fmt.Errorf("docker create answered %s", out))
	}
	if _, err := d.call(ctx, "POST", "/containers/"+created.Id+"/start", nil, nil); err != nil {
		d.remove(created.Id)
		return fail(fmt.Errorf("docker start: %w", err))
	}
	desc := d.describe(ctx, created.Id, opt, svc.Port != 0)
	e.logf("matrix: %s: %s", id, desc)
	ctr := filepath.Join(dir, created.Id)
	parts := map[string]string{"container": ctr}
	if !opt.daemonsApart {
		parts["runtime"] = runtimeDir
	}
	var undos []func() error // the splits', in the order they must be undone
	undoSplits := func() error {
		var errs []error
		for _, u := range undos {
			errs = append(errs, u())
		}
		return errors.Join(errs...)
	}
	if opt.Runtime == "runsc" {
		sp, undo, err := splitSandbox(ctr)
		if err != nil {
			d.remove(created.Id)
			return fail(err)
		}
		e.logf("matrix: %s: gVisor's processes: %s", id, sp)
		maps.Copy(parts, sp.parts())
		undos = append(undos, undo)
	}
	if !opt.daemonsApart {
		// The shim and docker-proxy exist now: each daemon gets its part.
		sp, undo, err := splitDaemons(runtimeDir)
		if err != nil {
			undoSplits()
			d.remove(created.Id)
			return fail(err)
		}
		e.logf("matrix: %s: the runtime's processes: %s", id, sp)
		maps.Copy(parts, sp.parts())
		undos = append(undos, undo)
	}
	exited := func() error {
		if err := d.h.exited(); err != nil {
			return fmt.Errorf("dockerd: %w", err)
		}
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		out, err := d.call(cctx, "GET", "/containers/"+created.Id+"/json", nil, nil)
		if err != nil {
			return nil // the daemon is busy: not an exit
		}
		var st struct {
			State struct {
				Running  bool
				ExitCode int
				Error    string
			}
		}
		if json.Unmarshal(out, &st) == nil && !st.State.Running {
			logs, _ := d.call(cctx, "GET", "/containers/"+created.Id+"/logs", url.Values{"stdout": {"1"}, "stderr": {"1"}, "tail": {"20"}}, nil)
			return fmt.Errorf("the container exited (code %d) %s: %s", st.State.ExitCode, st.State.Error, tail(demuxLogs(logs), 2000))
		}
		return nil
	}
	return &Instance{
		Exited: exited,
		Stop: func() error {
			// Before runsc removes the container's cgroup, and before the
			// daemons leave the cell.
			err := undoSplits()
			d.remove(created.Id)
			return errors.Join(err, moveBack())
		},
		Runtime: desc,
		Parts:   parts,
	}, nil
}

// moveProcs moves every process of cgroup from into cgroup to, until from
// holds none but zombies (which run no kernel code and cannot move). A
// process may fork while it moves, or be exiting: it tries for a few
// seconds.
func moveProcs(from, to string) error {
	var left []string
	for range 50 {
		b, err := os.ReadFile(filepath.Join(from, "cgroup.procs"))
		if err != nil {
			return err
		}
		left = left[:0]
		for _, pid := range strings.Fields(string(b)) {
			if zombie(pid) {
				continue
			}
			if err := os.WriteFile(filepath.Join(to, "cgroup.procs"), []byte(pid), 0o644); err != nil && !errors.Is(err, syscall.ESRCH) {
				return fmt.Errorf("move pid %s to %s: %w", pid, to, err)
			}
			left = append(left, pid)
		}
		if len(left) == 0 {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	var who []string
	for _, pid := range left {
		comm, _ := os.ReadFile("/proc/" + pid + "/comm")
		who = append(who, pid+" "+strings.TrimSpace(string(comm)))
	}
	return fmt.Errorf("%s did not empty in 5 s: %s still there", from, strings.Join(who, ", "))
}

// zombie reports whether process pid has exited and waits to be reaped
// (or is gone).
func zombie(pid string) bool {
	state, _, ok := procStat(pid)
	return !ok || state == "Z"
}

// procStat returns the state and the parent's pid of process pid from
// /proc/PID/stat ("pid (comm) state ppid …", where comm may hold spaces
// and parentheses); ok is false when the process is gone.
func procStat(pid string) (state, ppid string, ok bool) {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return "", "", false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return "", "", false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return "", "", false
	}
	return f[0], f[1], true
}

// remove force-removes a container, bounded in time.
func (d *dockerd) remove(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d.call(ctx, "DELETE", "/containers/"+id, url.Values{"force": {"1"}}, nil)
}

// svcImageName names a service's image after its program.
func svcImageName(svc Service) string {
	return strings.ToLower(filepath.Base(svc.Argv[0]))
}

// describe says which Docker ran a container and how: version, OCI
// runtime, network, storage and its backing file system, seccomp and
// AppArmor as the daemon and the container report them.
func (d *dockerd) describe(ctx context.Context, id string, opt DockerOptions, published bool) string {
	var info struct {
		ServerVersion   string
		Driver          string
		DriverStatus    [][2]string
		CgroupDriver    string
		CgroupVersion   string
		SecurityOptions []string
	}
	var ctr struct {
		State           struct{ Pid int }
		AppArmorProfile string
		HostConfig      struct {
			Runtime     string
			NetworkMode string
			SecurityOpt []string
		}
	}
	if out, err := d.call(ctx, "GET", "/info", nil, nil); err == nil {
		json.Unmarshal(out, &info)
	}
	if out, err := d.call(ctx, "GET", "/containers/"+id+"/json", nil, nil); err == nil {
		json.Unmarshal(out, &ctr)
	}
	backing := ""
	for _, kv := range info.DriverStatus {
		if kv[0] == "Backing Filesystem" {
			backing = " on " + kv[1]
		}
	}
	runtime := cmp.Or(ctr.HostConfig.Runtime, "runc")
	if opt.Runtime == "runsc" {
		runtime += " " + strings.Join(opt.RunscFlags, " ")
	}
	network := ctr.HostConfig.NetworkMode
	network += " network"
	if !opt.HostNetwork && published {
		network += ", port published (-p)"
	}
	seccomp := "default profile"
	for _, o := range ctr.HostConfig.SecurityOpt {
		if v, ok := strings.CutPrefix(o, "seccomp="); ok {
			seccomp = o
			if strings.HasPrefix(strings.TrimSpace(v), "{") {
				seccomp = "custom profile" // the profile's JSON itself, as the Engine API takes it
			}
		}
	}
	if opt.Runtime == "runsc" && !slices.ContainsFunc(opt.RunscFlags, func(f string) bool { return strings.HasPrefix(f, "--oci-seccomp") }) {
		// runsc applies the OCI spec's seccomp filter only with
		// --oci-seccomp; its sentry runs under its own filter either way.
		seccomp += " requested but not applied (runsc without --oci-seccomp; the sentry runs under gVisor's own filter)"
	}
	// What the kernel says confines the container's first process, not
	// what Docker asked for: without apparmor_parser the profile Docker
	// names is never loaded.
	apparmor := "unknown (" + cmp.Or(ctr.AppArmorProfile, "none") + " requested)"
	if ctr.State.Pid > 0 {
		for _, f := range []string{"attr/apparmor/current", "attr/current"} {
			if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", ctr.State.Pid, f)); err == nil {
				apparmor = fmt.Sprintf("%s (%s requested)", strings.TrimSpace(strings.TrimRight(string(b), "\x00")), cmp.Or(ctr.AppArmorProfile, "none"))
				break
			}
		}
	}
	return fmt.Sprintf("Docker %s (Debian docker.io), runtime %s, %s, storage %s%s, seccomp %s, AppArmor %s, cgroup v%s %s driver; daemon security options %s",
		cmp.Or(info.ServerVersion, "unknown"), runtime, network, info.Driver, backing, seccomp, apparmor,
		info.CgroupVersion, info.CgroupDriver, strings.Join(info.SecurityOptions, " "))
}

// demuxLogs turns the Engine API's log stream of a container without a
// TTY (frames of an 8-byte header: stream, three zero bytes, big-endian
// length; then the payload) into text. Bytes that are not such frames
// are kept as they are.
func demuxLogs(b []byte) string {
	var sb strings.Builder
	for len(b) >= 8 && b[0] <= 2 && b[1] == 0 && b[2] == 0 && b[3] == 0 {
		n := int(binary.BigEndian.Uint32(b[4:8]))
		if n > len(b)-8 {
			break
		}
		sb.Write(b[8 : 8+n])
		b = b[8+n:]
	}
	sb.Write(b)
	return sb.String()
}
