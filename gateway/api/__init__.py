"""The gRPC service: the servicer, its guard, the messages it answers with, status."""
