"""Fault agents: executable stand-ins for the codex binary (``*_agent.py``, ``tiny_agent.c``)."""
