package api

import (
	_ "embed"

	"github.com/gofiber/fiber/v2"
)

//go:embed openapi.json
var openAPIDoc string

// OpenAPI returns the OpenAPI 3 document of the API.
func OpenAPI() []byte { return []byte(openAPIDoc) }

func (s *Server) openapi(c *fiber.Ctx) error {
	c.Response().Header.SetContentType(fiber.MIMEApplicationJSON)
	return c.SendString(openAPIDoc)
}
