"""The web application: server-rendered pages (Jinja2 + htmx) over the same services as the
REST routes; charts fetch JSON from the public API routes with the session cookie."""
