"""What a run changed in its workspace: git snapshots before and after it, or the files codex
reported where there is no git."""
