#!/usr/bin/env python3
"""Fake codex that prints nothing at all and exits 0."""

import sys

sys.stdin.buffer.read()  # codex reads its stdin to EOF before it starts
sys.exit(0)
