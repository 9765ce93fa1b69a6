"""Test support for corral: fake provider servers, real-CLI installers, fixtures."""
