"""Faults: crashes, signals, a full disk, a missing binary, a restarting upstream, load, a soak."""
