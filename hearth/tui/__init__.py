"""The Textual dashboard (dashboard issue)."""
