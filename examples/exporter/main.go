// Command exporter serves the HAP of cgroups as Prometheus gauges. It keeps
// one tracer attached and scores each cgroup in turn, one window each.
//
//	exporter -listen :9464 -window 30s -vmlinux /usr/lib/debug/boot/vmlinux-$(uname -r) /sys/fs/cgroup/a /sys/fs/cgroup/b
//
// It takes the scoring flags of `hapscope score` (-vmlinux, -index-cache,
// -estimate, -backend, -counts, …; see -h). A window that cannot be scored is
// logged and counted, and the exporter goes on serving and scoring; only a
// tracer or line index that cannot be set up at start-up ends it (exit 1).
//
// Metrics, each with the label cgroup:
//
//	hapscope_functions                      unique kernel functions driven in the last scored window
//	hapscope_lines{kind=own|inlined|total}  unique kernel source lines of that window
//	hapscope_latent_bugs                    lines × bug density
//	hapscope_probe_misses                   probe misses the profile reports (Profile.Misses)
//	hapscope_profile_info{backend,mode,probes}  1; how the last scored window was measured
//	hapscope_last_score_timestamp_seconds   when the cgroup was last scored
//	hapscope_last_window_success            1 if the last window was scored, 0 if it failed
//	hapscope_window_errors_total            windows that could not be scored
//
// After a failed window the gauges keep the last scored window's values;
// hapscope_last_window_success and the timestamp say how current they are.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/hapscope/hapscope/coverage"
	"github.com/hapscope/hapscope/examples/internal/hapcli"
	"github.com/hapscope/hapscope/hap"
)

func main() {
	os.Exit(run())
}

func run() int {
	listen := flag.String("listen", ":9464", "address to serve /metrics on")
	sf := hapcli.ScoreFlags{Warmup: 0, Window: 30 * time.Second, Samples: 10}
	sf.Register(flag.CommandLine)
	flag.Usage = func() {
		fmt.Fprintln(flag.CommandLine.Output(), "usage: exporter [-listen ADDR] [-window D] [-vmlinux PATH | -index-cache DIR | -estimate] [flags] CGROUP_V2_DIR...")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() == 0 {
		flag.Usage()
		return 2
	}
	if err := sf.Validate(); err != nil {
		fmt.Fprintf(os.Stderr, "exporter: %v\n", err)
		return 2
	}
	var cgroups []string
	for _, cg := range flag.Args() {
		dir, err := coverage.CgroupDir(cg)
		if err != nil {
			log.Printf("exporter: %v", err)
			return 1
		}
		cgroups = append(cgroups, dir)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	// Listen first: a busy address fails before the attach, not after.
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Printf("exporter: %v", err)
		return 1
	}
	m := newMetrics(string(sf.ProbeMode()))
	srv := &http.Server{Handler: promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Printf("exporter: serve: %v", err)
			stop()
		}
	}()
	defer srv.Shutdown(context.Background())

	o, err := sf.Options()
	if err != nil {
		log.Printf("exporter: %v", err)
		return 1
	}
	scorer, err := hap.NewScorer(ctx, o)
	if err != nil {
		log.Printf("exporter: %v", err)
		return 1
	}
	defer func() {
		if err := scorer.Close(); err != nil {
			log.Printf("exporter: %v", err)
		}
	}()
	log.Printf("exporter: serving %d cgroups on %s/metrics", len(cgroups), ln.Addr())
	for ctx.Err() == nil {
		for _, cg := range cgroups {
			p, err := scorer.Score(ctx, cg)
			if ctx.Err() != nil {
				break
			}
			if err != nil {
				log.Printf("exporter: %s: window not scored: %v", cg, err)
				m.failed(cg)
				// A failed window still takes a window's time, so that
				// a cgroup that is gone does not spin the loop.
				select {
				case <-time.After(sf.Window):
				case <-ctx.Done():
				}
				continue
			}
			m.scored(cg, p)
		}
	}
	return 0
}

// metrics are the exporter's gauges and counters.
type metrics struct {
	reg                            *prometheus.Registry
	probes                         string // coverage mode: "counts" or "pruned"
	functions, lines, bugs, misses *prometheus.GaugeVec
	info, stamp, success           *prometheus.GaugeVec
	errors                         *prometheus.CounterVec
}

func newMetrics(probes string) *metrics {
	gauge := func(name, help string, labels ...string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, append([]string{"cgroup"}, labels...))
	}
	m := &metrics{
		reg:       prometheus.NewRegistry(),
		probes:    probes,
		functions: gauge("hapscope_functions", "Unique kernel functions the cgroup drove in the last scored window."),
		lines:     gauge("hapscope_lines", "Unique kernel source lines (own, inlined, total) driven in the last scored window.", "kind"),
		bugs:      gauge("hapscope_latent_bugs", "Lines × bug density: latent kernel bugs within reach."),
		misses:    gauge("hapscope_probe_misses", "Probe misses (events lost) as the last scored profile reports them."),
		info:      gauge("hapscope_profile_info", "Always 1; its labels say how the last scored window was measured.", "backend", "mode", "probes"),
		stamp:     gauge("hapscope_last_score_timestamp_seconds", "When the cgroup was last scored."),
		success:   gauge("hapscope_last_window_success", "1 if the cgroup's last window was scored, 0 if it failed."),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hapscope_window_errors_total",
			Help: "Windows of the cgroup that could not be scored."}, []string{"cgroup"}),
	}
	m.reg.MustRegister(m.functions, m.lines, m.bugs, m.misses, m.info, m.stamp, m.success, m.errors)
	return m
}

func (m *metrics) scored(cg string, p *hap.Profile) {
	m.functions.WithLabelValues(cg).Set(float64(len(p.Functions)))
	m.lines.WithLabelValues(cg, "own").Set(float64(p.Lines.Own))
	m.lines.WithLabelValues(cg, "inlined").Set(float64(p.Lines.Inlined))
	m.lines.WithLabelValues(cg, "total").Set(float64(p.Lines.Total))
	m.bugs.WithLabelValues(cg).Set(p.Bugs)
	m.misses.WithLabelValues(cg).Set(float64(p.Misses))
	m.info.DeletePartialMatch(prometheus.Labels{"cgroup": cg})
	m.info.WithLabelValues(cg, p.Backend, p.Mode, m.probes).Set(1)
	m.stamp.WithLabelValues(cg).SetToCurrentTime()
	m.success.WithLabelValues(cg).Set(1)
	m.errors.WithLabelValues(cg).Add(0) // present from the first window on
}

func (m *metrics) failed(cg string) {
	m.success.WithLabelValues(cg).Set(0)
	m.errors.WithLabelValues(cg).Inc()
}
