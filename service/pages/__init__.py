"""The results page: server-rendered HTML (Jinja2 templates in templates/, CSS and the offline Swagger UI assets in
static/; no build step, no CDN). `views` gathers what a page shows through db/ functions; `render` fills a
template; service.routes.pages serves them."""
