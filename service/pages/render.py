"""Jinja2 templates of the results page (autoescaped), and where the static files live."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

PAGES_DIR = Path(__file__).resolve().parent
STATIC_DIR = PAGES_DIR / "static"
TEMPLATES_DIR = PAGES_DIR / "templates"

_env = Environment(loader=FileSystemLoader(TEMPLATES_DIR), autoescape=select_autoescape(["html"]),
                   undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def render_page(template: str, **context: Any) -> str:
    return _env.get_template(template).render(**context)
