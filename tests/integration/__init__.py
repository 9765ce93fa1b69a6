"""Integration tests of corral that run real provider CLIs against fake servers."""
