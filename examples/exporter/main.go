// Command exporter serves the HAP of cgroups as Prometheus gauges. It keeps
// one tracer attached and scores each cgroup in turn, one window each.
//
//	exporter -listen :9464 -window 30s /sys/fs/cgroup/a /sys/fs/cgroup/b
//
// Metrics (label cgroup): hapscope_functions, hapscope_lines{kind=own|inlined|total},
// hapscope_latent_bugs, hapscope_probe_misses, hapscope_last_score_timestamp_seconds,
// and hapscope_score_errors_total.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/hapscope/hapscope/hap"
)

func main() {
	listen := flag.String("listen", ":9464", "address to serve /metrics on")
	window := flag.Duration("window", 30*time.Second, "measured window per cgroup")
	flag.Usage = func() {
		fmt.Fprintln(flag.CommandLine.Output(), "usage: exporter [-listen ADDR] [-window D] CGROUP_V2_DIR...")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() == 0 {
		flag.Usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	reg := prometheus.NewRegistry()
	labels := []string{"cgroup"}
	functions := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "hapscope_functions", Help: "Unique kernel functions the cgroup drove in the last window."}, labels)
	lines := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "hapscope_lines", Help: "Unique kernel source lines (own, inlined, total) driven in the last window."}, append(labels, "kind"))
	bugs := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "hapscope_latent_bugs", Help: "Lines × bug density: latent kernel bugs within reach."}, labels)
	misses := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "hapscope_probe_misses", Help: "Probe runs the kernel skipped during the last window (events lost)."}, labels)
	stamp := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "hapscope_last_score_timestamp_seconds", Help: "When the cgroup was last scored."}, labels)
	failures := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hapscope_score_errors_total", Help: "Windows that could not be scored."}, labels)
	reg.MustRegister(functions, lines, bugs, misses, stamp, failures)

	scorer, err := hap.NewScorer(ctx, hap.ScoreOptions{Warmup: time.Millisecond, Window: *window})
	if err != nil {
		log.Fatalf("exporter: %v", err)
	}
	defer scorer.Close()

	srv := &http.Server{Addr: *listen, Handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{})}
	go func() {
		if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Fatalf("exporter: %v", err)
		}
	}()
	log.Printf("exporter: serving %d cgroups on %s/metrics", flag.NArg(), *listen)
	for ctx.Err() == nil {
		for _, cg := range flag.Args() {
			p, err := scorer.Score(ctx, cg)
			if err != nil {
				if ctx.Err() == nil {
					log.Printf("exporter: %s: %v", cg, err)
					failures.WithLabelValues(cg).Inc()
				}
				continue
			}
			functions.WithLabelValues(cg).Set(float64(len(p.Functions)))
			lines.WithLabelValues(cg, "own").Set(float64(p.Lines.Own))
			lines.WithLabelValues(cg, "inlined").Set(float64(p.Lines.Inlined))
			lines.WithLabelValues(cg, "total").Set(float64(p.Lines.Total))
			bugs.WithLabelValues(cg).Set(p.Bugs)
			misses.WithLabelValues(cg).Set(float64(p.Misses))
			stamp.WithLabelValues(cg).SetToCurrentTime()
		}
	}
	srv.Shutdown(context.Background())
}
