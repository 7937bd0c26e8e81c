"""One run, from a validated request to its result: slots, prompt, workspace, environment."""
