package manager

import (
	"net/http"
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/baicommit/baicommit/api"
)

// metrics are this replica's Prometheus metrics. Outcomes of freezes are
// counted when this replica first sees a task finished (a status or list
// answer); scrape every replica and sum.
type metrics struct {
	reg          *prometheus.Registry
	requests     *prometheus.CounterVec
	freezes      *prometheus.CounterVec
	bytes        prometheus.Counter
	duration     prometheus.Histogram
	agentUp      *prometheus.GaugeVec
	agentSeconds prometheus.Histogram
	sessions     prometheus.Counter

	mu   sync.Mutex
	seen map[string]struct{} // finished tasks already counted
	fifo []string            // seen, oldest first, to bound it
}

// maxSeen bounds how many finished task ids a replica remembers.
const maxSeen = 100_000

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "baicommit_manager_requests_total", Help: "API requests by route and status code.",
		}, []string{"route", "code"}),
		freezes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "baicommit_manager_freezes_total",
			Help: "Freezes by outcome: started and refused when asked for; succeeded and failed when first seen finished.",
		}, []string{"outcome"}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "baicommit_manager_archive_bytes_written_total", Help: "Bytes of archives written by succeeded freezes.",
		}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "baicommit_manager_freeze_duration_seconds", Help: "Time from a freeze's start to its end.",
			Buckets: []float64{1, 5, 15, 30, 60, 120, 300, 600, 1200, 3600},
		}),
		agentUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "baicommit_manager_agent_up", Help: "1 if the node's agent answered the last request, else 0.",
		}, []string{"node"}),
		// One histogram for all agents: one per node would be ten series
		// per node, and grow with the cluster.
		agentSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "baicommit_manager_agent_request_seconds", Help: "Time agents took to answer.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 8),
		}),
		sessions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "baicommit_manager_agent_sessions_opened_total",
			Help: "Sessions opened with agents: each cost one MUNGE credential here and one decode on the agent.",
		}),
		seen: map[string]struct{}{},
	}
	m.reg.MustRegister(m.requests, m.freezes, m.bytes, m.duration, m.agentUp, m.agentSeconds, m.sessions)
	for _, o := range []string{"started", "refused", "succeeded", "failed"} {
		m.freezes.WithLabelValues(o)
	}
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// counted reports whether the end of task id was counted already.
func (m *metrics) counted(id string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.seen[id]
	return ok
}

// observe counts t's outcome the first time it is seen finished.
func (m *metrics) observe(t *api.Task) {
	if t.State != api.StateSucceeded && t.State != api.StateFailed {
		return
	}
	m.mu.Lock()
	if _, ok := m.seen[t.ID]; ok {
		m.mu.Unlock()
		return
	}
	m.seen[t.ID] = struct{}{}
	m.fifo = append(m.fifo, t.ID)
	if len(m.fifo) > maxSeen {
		delete(m.seen, m.fifo[0])
		m.fifo = m.fifo[1:]
	}
	m.mu.Unlock()

	m.freezes.WithLabelValues(t.State).Inc()
	if t.State == api.StateSucceeded && t.Archive != nil {
		m.bytes.Add(float64(t.Archive.Size))
	}
	if t.State == api.StateSucceeded && t.Store != nil {
		m.bytes.Add(float64(t.Store.Written))
	}
	if !t.Finished.IsZero() && !t.Created.IsZero() {
		m.duration.Observe(t.Finished.Sub(t.Created).Seconds())
	}
}

// instrument counts requests by route pattern and status.
func (m *metrics) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(rec, r)
		route := r.Pattern
		if route == "" {
			route = "unmatched"
		}
		m.requests.WithLabelValues(route, strconv.Itoa(rec.status)).Inc()
	})
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}
