//go:build amd64

package bpf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"
)

// ModuleLoad is one kernel module load seen by a ModuleWatch.
type ModuleLoad struct {
	Name string
	// At is when the kernel hit the module_load tracepoint
	// (CLOCK_MONOTONIC, as time.Duration since boot).
	At time.Duration
}

// ModuleWatch reports kernel module loads as they happen: a tp_btf
// program on module:module_load, read through a ring buffer.
type ModuleWatch struct {
	coll *ebpf.Collection
	l    link.Link
	rd   *ringbuf.Reader
}

// WatchModules attaches the module_load watcher.
func WatchModules() (*ModuleWatch, error) {
	spec, err := loadModload()
	if err != nil {
		return nil, err
	}
	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		return nil, fmt.Errorf("watch module loads: load program: %w", err)
	}
	w := &ModuleWatch{coll: coll}
	w.l, err = link.AttachTracing(link.TracingOptions{Program: coll.Programs[modloadProgHapModuleLoad], AttachType: ebpf.AttachTraceRawTp})
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("watch module loads: attach to module:module_load: %w", err)
	}
	w.rd, err = ringbuf.NewReader(coll.Maps[modloadMapModloads])
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("watch module loads: %w", err)
	}
	return w, nil
}

// ErrWatchClosed is returned by Next once the watch is closed.
var ErrWatchClosed = errors.New("module watch closed")

// Next blocks until a module loads, and returns it.
func (w *ModuleWatch) Next() (ModuleLoad, error) {
	rec, err := w.rd.Read()
	if errors.Is(err, ringbuf.ErrClosed) {
		return ModuleLoad{}, ErrWatchClosed
	}
	if err != nil {
		return ModuleLoad{}, fmt.Errorf("module watch: %w", err)
	}
	if len(rec.RawSample) < 8 {
		return ModuleLoad{}, fmt.Errorf("module watch: short record of %d bytes", len(rec.RawSample))
	}
	name := rec.RawSample[8:]
	if i := bytes.IndexByte(name, 0); i >= 0 {
		name = name[:i]
	}
	return ModuleLoad{Name: string(name), At: time.Duration(binary.NativeEndian.Uint64(rec.RawSample))}, nil
}

// Monotonic is CLOCK_MONOTONIC now, comparable with ModuleLoad.At.
func Monotonic() time.Duration {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return time.Duration(ts.Nano())
}

// Close detaches the watcher; a blocked Next returns ErrWatchClosed.
func (w *ModuleWatch) Close() error {
	var errs []error
	if w.rd != nil {
		errs = append(errs, w.rd.Close())
	}
	if w.l != nil {
		errs = append(errs, w.l.Close())
	}
	if w.coll != nil {
		w.coll.Close()
	}
	return errors.Join(errs...)
}
