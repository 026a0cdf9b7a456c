"""hearth: run large open LLMs on the machines a household already owns."""

from __future__ import annotations

__version__ = "0.1.0"
