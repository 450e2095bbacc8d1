package agent

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the agent's Prometheus collectors.
type metrics struct {
	running  prometheus.Gauge
	starts   prometheus.Counter
	restarts prometheus.Counter
}

// newMetrics creates the collectors and registers them with reg, if any.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		running: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "herd_agent_tasks_running",
			Help: "Tasks the agent currently runs.",
		}),
		starts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herd_agent_task_starts_total",
			Help: "Task starts, restarts included.",
		}),
		restarts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herd_agent_task_restarts_total",
			Help: "Task restarts made by the restart policy.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.running, m.starts, m.restarts} {
		if err := reg.Register(c); err != nil {
			var already prometheus.AlreadyRegisteredError
			if errors.As(err, &already) {
				return nil, fmt.Errorf("agent metrics: %w (one agent per registry)", err)
			}
			return nil, fmt.Errorf("agent metrics: %w", err)
		}
	}
	return m, nil
}
