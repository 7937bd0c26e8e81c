"""The codex process: how it is invoked, started and stopped, and what it prints."""
