package api

import (
	"fmt"
	"net/url"

	"github.com/gofiber/fiber/v2"
)

// SinksAPI is what the sink endpoints need (appliance/sinks's Manager,
// adapted by the appliance).
type SinksAPI interface {
	// List is the body of GET /api/v1/sinks.
	List() any
	// Get returns one sink's status; ok is false when it is not configured.
	Get(name string) (any, bool)
	// Pause and Resume stop and restart shipping; DeleteCheckpoint
	// forgets a removed sink's checkpoint. Their errors say why.
	Pause(name string) error
	Resume(name string) error
	DeleteCheckpoint(name string) error
	// IsNotFound and IsConflict classify those errors.
	IsNotFound(err error) bool
	IsConflict(err error) bool
}

func (s *Server) sinksOr404(c *fiber.Ctx) (SinksAPI, error) {
	if s.opts.Sinks == nil {
		return nil, apiErr(fiber.StatusNotFound, "sinks need the journal (journal.enabled = true)")
	}
	return s.opts.Sinks, nil
}

func (s *Server) listSinks(c *fiber.Ctx) error {
	m, err := s.sinksOr404(c)
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"sinks": m.List()})
}

func (s *Server) getSink(c *fiber.Ctx) error {
	m, err := s.sinksOr404(c)
	if err != nil {
		return err
	}
	st, ok := m.Get(c.Params("name"))
	if !ok {
		return apiErr(fiber.StatusNotFound, fmt.Sprintf("no sink named %q is configured", c.Params("name")))
	}
	return c.JSON(st)
}

func (s *Server) sinkAction(do func(SinksAPI, string) error, word string) fiber.Handler {
	return func(c *fiber.Ctx) error {
		m, err := s.sinksOr404(c)
		if err != nil {
			return err
		}
		name := c.Params("name")
		if err := do(m, name); err != nil {
			switch {
			case m.IsNotFound(err):
				return apiErr(fiber.StatusNotFound, err.Error())
			case m.IsConflict(err):
				return apiErr(fiber.StatusConflict, err.Error())
			}
			return apiErr(fiber.StatusConflict, err.Error())
		}
		if st, ok := m.Get(name); ok {
			return c.JSON(st)
		}
		return c.JSON(fiber.Map{"sink": name, "result": word})
	}
}

// ProducerHighest, when set, answers GET /api/v1/producers/{producer}: the
// highest producer sequence this node holds for producer.
type ProducerHighest func(producer string) (int64, bool)

func (s *Server) getProducer(c *fiber.Ctx) error {
	raw := c.Params("name")
	producer, err := url.PathUnescape(raw)
	if err != nil || producer == "" {
		return apiErr(fiber.StatusBadRequest, "the producer id must be a non-empty, URL-escaped path segment")
	}
	high, ok := s.p.ProducerHighest(producer)
	if !ok {
		return apiErr(fiber.StatusNotFound, fmt.Sprintf("no event from producer %q is remembered (api.idempotency_window, api.max_producers)", producer), "producer", producer)
	}
	return c.JSON(fiber.Map{"producer": producer, "highest_sequence": high})
}

// errBacklogFull is the 507 a publish gets while a sink with
// on_backlog_full = "reject" keeps the journal at its cap.
func errBacklogFull(blocker string) error {
	return apiErr(fiber.StatusInsufficientStorage, fmt.Sprintf("the journal is at journal.retention_bytes and %s has not shipped its oldest events (on_backlog_full = \"reject\"); nothing accepted is lost: retry once the upstream catches up", blocker), "blocked_by", blocker)
}
