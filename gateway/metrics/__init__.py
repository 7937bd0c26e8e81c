"""Prometheus metrics of the gateway process: the families (families.py), the RPC interceptor
(interceptor.py), what is read at scrape time (collector.py) and the event-loop lag sampler
(lag.py). One registry per `Gateway`, never prometheus-client's global one."""
