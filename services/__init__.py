"""Long-running services: the listener consumers (heartbeats, statuses) and the HTTP API.

They are not flows: they run beside the Prefect server (`storeflow listeners serve`)
and drive flow runs from what arrives on RabbitMQ and over HTTP.
"""
