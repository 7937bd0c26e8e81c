"""Sessions: the store and its model, their log files, the numbered items, reading them back."""
