-- Webhook subscriptions (issue 14): each receives the events of its types,
-- in order per partition (so per SKU), at least once, signed as the
-- Standard Webhooks specification says. One instance at a time delivers a
-- subscription (the lease); `position` is where it stands in the events
-- streams (as an SSE Last-Event-ID).
CREATE TABLE webhooks (
    id              uuid PRIMARY KEY,
    url             text NOT NULL,
    types           text[] NOT NULL,
    secret          text NOT NULL,
    description     text,
    status          text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'paused')),
    paused_reason   text,
    position        text NOT NULL,
    failures        integer NOT NULL DEFAULT 0,
    failing_since   timestamptz,
    next_attempt_at timestamptz,
    delivered       bigint NOT NULL DEFAULT 0,
    lease_owner     text,
    lease_until     timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- Every attempt to deliver an event (successful or not), kept for the
-- dispatcher's retention window.
CREATE TABLE webhook_deliveries (
    id          bigserial PRIMARY KEY,
    webhook_id  uuid NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event_id    text NOT NULL,
    event_type  text NOT NULL,
    attempt     integer NOT NULL,
    status      integer,
    error       text,
    duration_ms integer NOT NULL,
    delivered   boolean NOT NULL,
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_deliveries_by_webhook ON webhook_deliveries (webhook_id, id);
CREATE INDEX webhook_deliveries_by_time ON webhook_deliveries (at);
