// Swagger UI for the OpenAPI description, from the bundled copy (no CDN).
window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
});
