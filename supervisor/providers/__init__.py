"""Provider plugins (one package each), the reusable handle bases and the registry."""
