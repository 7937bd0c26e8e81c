"""What starts runs on its own (triggers, the file watcher) and what reports them (webhooks)."""
