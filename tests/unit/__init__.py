"""Unit tests: single modules, no daemon."""
