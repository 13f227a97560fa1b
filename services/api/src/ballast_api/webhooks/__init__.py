"""Webhooks: inbound POST /v1/webhooks/{source}; admin subscriptions and deliveries."""
