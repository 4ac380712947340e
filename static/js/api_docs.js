// The API docs page (/api/docs/): Swagger UI (static/vendor/swagger-ui) on the schema the site serves.
// "Try it out" runs as the logged-in user: a session must send its CSRF token with writes.

function csrfToken() {
  const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : "";
}

window.addEventListener("DOMContentLoaded", () => {
  const root = document.getElementById("swagger-ui");
  window.ui = window.SwaggerUIBundle({
    url: root.dataset.schemaUrl,
    domNode: root,
    deepLinking: true,
    tryItOutEnabled: false,
    persistAuthorization: false,
    requestInterceptor: (request) => {
      const token = csrfToken();
      if (token && !request.headers.Authorization) request.headers["X-CSRFToken"] = token;
      return request;
    },
  });
});
