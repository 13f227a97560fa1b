"""Webhooks in and out, signed with the Standard Webhooks scheme (standardwebhooks.com).

- `signing`: sign and verify (the `standardwebhooks` package), secrets.
- `inbound`: accept a verified webhook once per webhook id (the receipt is the replay
  store), process it as a job, keep failures as dead letters (`ballast webhooks`).
- `deliveries`: subscriptions of admins to events, signed deliveries sent by workers
  through `ballast_common.outbound` (retries with jitter, a breaker per endpoint).

Events are emitted by `ballast_common.models.webhook` from audit rows, in the
transaction of the change.
"""
