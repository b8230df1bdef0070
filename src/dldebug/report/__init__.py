"""Renderers: draw a Report as console text, JSON or one self-contained HTML file."""

from dldebug.report.atomic import write_bytes_atomic, write_text_atomic
from dldebug.report.console import render_console
from dldebug.report.html import render_html, write_html

__all__ = ["render_console", "render_html", "write_bytes_atomic", "write_html", "write_text_atomic"]
