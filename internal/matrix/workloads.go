package matrix

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// redisPort is the port the redis workloads listen on.
const redisPort = 6390

// Redis is redis-server driven by redis-benchmark running test ("set" or
// "get"), as in the 2018 study.
func Redis(test string) Workload {
	return Workload{
		Name: "redis-" + test,
		Service: Service{
			Argv:  []string{"redis-server", "--port", strconv.Itoa(redisPort), "--save", "", "--appendonly", "no", "--protected-mode", "no", "--dir", "/tmp"},
			Port:  redisPort,
			Ready: func(ctx context.Context, addr string) error { return tcpCheck(ctx, addr, "PING\r\n", "+PONG") },
		},
		Load: func(ctx context.Context, e *Env, addr string) (LoadResult, error) {
			return redisLoad(ctx, e, addr, test)
		},
		Served: func(ctx context.Context, addr string) (int, error) {
			c, err := redisStats(ctx, addr)
			return c.commands, err
		},
	}
}

// redisLoad runs one redis-benchmark for test until ctx ends, outside the
// measured cgroup. The requests it completed are counted by the server
// itself (INFO stats before and after), so a load cut off at the end of the
// window is still counted exactly; error replies count as errors.
func redisLoad(ctx context.Context, e *Env, addr, test string) (LoadResult, error) {
	var r LoadResult
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return r, err
	}
	before, err := redisStats(ctx, addr)
	if err != nil {
		return r, err
	}
	start := time.Now()
	c := e.command(ctx, -1, "redis-benchmark", "-h", host, "-p", port,
		"-t", test, "-n", "1000000000", "-c", "4", "-q")
	var out bytes.Buffer
	c.Stdout, c.Stderr = &out, &out
	err = c.Run()
	r.Elapsed = time.Since(start)
	if ctx.Err() == nil {
		return r, fmt.Errorf("redis-benchmark ended before the window did: %v: %s", err, strings.TrimSpace(out.String()))
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	after, err := redisStats(sctx, addr)
	if err != nil {
		return r, fmt.Errorf("after the load: %w", err)
	}
	// Minus the INFO command that took the first reading.
	r.Requests = after.commands - before.commands - 1
	r.Errors = after.errors - before.errors
	return r, nil
}

type redisCounters struct{ commands, errors int }

// redisStats reads the server's command and error-reply counters.
func redisStats(ctx context.Context, addr string) (redisCounters, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return redisCounters{}, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write([]byte("INFO stats\r\n")); err != nil {
		return redisCounters{}, err
	}
	return parseRedisInfo(bufio.NewReader(conn))
}

// parseRedisInfo reads one RESP bulk-string reply to INFO and extracts
// total_commands_processed and total_error_replies.
func parseRedisInfo(rd *bufio.Reader) (redisCounters, error) {
	var c redisCounters
	head, err := rd.ReadString('\n')
	if err != nil {
		return c, fmt.Errorf("redis INFO: %w", err)
	}
	head = strings.TrimSpace(head)
	if !strings.HasPrefix(head, "$") {
		return c, fmt.Errorf("redis INFO: unexpected reply %q", head)
	}
	n, err := strconv.Atoi(head[1:])
	if err != nil || n < 0 || n > 1<<20 {
		return c, fmt.Errorf("redis INFO: bad length %q", head)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(rd, body); err != nil {
		return c, fmt.Errorf("redis INFO: %w", err)
	}
	found := 0
	for _, line := range strings.Split(string(body), "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok {
			continue
		}
		switch k {
		case "total_commands_processed":
			c.commands, err = strconv.Atoi(v)
			found++
		case "total_error_replies":
			c.errors, err = strconv.Atoi(v)
		}
		if err != nil {
			return c, fmt.Errorf("redis INFO: %s: %w", k, err)
		}
	}
	if found == 0 {
		return c, fmt.Errorf("redis INFO stats lacks total_commands_processed")
	}
	return c, nil
}
