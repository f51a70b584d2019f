package api

import (
	"bytes"
	"crypto/subtle"

	"github.com/gofiber/fiber/v2"
)

// Scope is the access an endpoint needs.
type Scope int

const (
	// ScopeOpen endpoints need no token (probes, metrics, node info, cluster view, OpenAPI).
	ScopeOpen Scope = iota
	// ScopePublish endpoints (publish and read events) accept a publish or an admin token.
	ScopePublish
	// ScopeAdmin endpoints need an admin token.
	ScopeAdmin
)

// String names the scope.
func (sc Scope) String() string {
	switch sc {
	case ScopePublish:
		return "publish"
	case ScopeAdmin:
		return "admin"
	}
	return "open"
}

// auth enforces bearer tokens. With no tokens configured at all the API is
// open (the appliance logs a warning at start).
func (s *Server) auth(scope Scope) fiber.Handler {
	return func(c *fiber.Ctx) error {
		if scope == ScopeOpen {
			return c.Next()
		}
		l := s.limits.Load()
		if len(l.PublishTokens) == 0 && len(l.AdminTokens) == 0 {
			return c.Next()
		}
		h := c.Request().Header.Peek(fiber.HeaderAuthorization)
		const prefix = "Bearer "
		if len(h) <= len(prefix) || !bytes.EqualFold(h[:len(prefix)], []byte(prefix)) {
			c.Set(fiber.HeaderWWWAuthenticate, `Bearer realm="badbatch"`)
			return apiErr(fiber.StatusUnauthorized, "missing bearer token (Authorization: Bearer <token>)")
		}
		tok := h[len(prefix):]
		if match(tok, l.AdminTokens) {
			return c.Next()
		}
		if match(tok, l.PublishTokens) {
			if scope == ScopePublish {
				return c.Next()
			}
			return apiErr(fiber.StatusForbidden, "this token may publish and read events; "+c.Method()+" "+c.Path()+" needs an admin token")
		}
		c.Set(fiber.HeaderWWWAuthenticate, `Bearer realm="badbatch", error="invalid_token"`)
		return apiErr(fiber.StatusUnauthorized, "invalid bearer token")
	}
}

// match compares tok with every configured token in constant time.
func match(tok []byte, tokens []string) bool {
	found := 0
	for _, t := range tokens {
		found |= subtle.ConstantTimeCompare(tok, []byte(t))
	}
	return found == 1
}
