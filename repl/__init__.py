"""codex-repl: an interactive client for the Codex Gateway, over REST or gRPC."""
