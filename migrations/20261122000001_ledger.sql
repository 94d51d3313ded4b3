-- The permanent record. Redis holds the live counts; everything here can
-- rebuild them: skus.on_hand is the persisted on_hand, and outbox entries not
-- yet applied (see outbox_applied / outbox_watermark) are the rest.

CREATE TABLE skus (
    sku                text PRIMARY KEY,
    -- on_hand as of every applied outbox entry.
    on_hand            bigint NOT NULL,
    backorder_limit    bigint NOT NULL DEFAULT 0,
    per_customer_limit bigint,
    sale_starts_at     timestamptz,
    -- The outbox entry the settings came from: entries may be applied out of
    -- order, and only a newer entry may overwrite settings.
    settings_ms        bigint NOT NULL,
    settings_seq       bigint NOT NULL,
    created_at         timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL
);

-- Append-only history of every change of on_hand.
CREATE TABLE stock_movements (
    id            bigserial PRIMARY KEY,
    sku           text NOT NULL REFERENCES skus (sku),
    at            timestamptz NOT NULL,
    kind          text NOT NULL CHECK (kind IN ('created', 'adjustment', 'commit', 'return', 'repair')),
    delta         bigint NOT NULL,
    on_hand_after bigint NOT NULL,
    ref           text NOT NULL,
    outbox_ms     bigint,
    outbox_seq    bigint
);
CREATE INDEX stock_movements_by_sku ON stock_movements (sku, id DESC);

CREATE FUNCTION stock_movements_are_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'stock_movements rows are never updated or deleted';
END;
$$;
CREATE TRIGGER stock_movements_append_only
    BEFORE UPDATE OR DELETE ON stock_movements
    FOR EACH ROW EXECUTE FUNCTION stock_movements_are_append_only();

CREATE TABLE orders (
    order_id       text PRIMARY KEY,
    reservation_id text NOT NULL UNIQUE,
    customer_id    text,
    channel        text,
    payment_ref    text,
    committed_at   timestamptz NOT NULL,
    persisted_at   timestamptz NOT NULL DEFAULT now(),
    outbox_ms      bigint NOT NULL,
    outbox_seq     bigint NOT NULL
);
CREATE INDEX orders_by_customer ON orders (customer_id) WHERE customer_id IS NOT NULL;

CREATE TABLE order_lines (
    order_id     text NOT NULL REFERENCES orders (order_id),
    -- Position in the basket, so an order reads back in the order it was held.
    line_no      int NOT NULL,
    sku          text NOT NULL REFERENCES skus (sku),
    qty          bigint NOT NULL CHECK (qty > 0),
    returned_qty bigint NOT NULL DEFAULT 0 CHECK (returned_qty >= 0 AND returned_qty <= qty),
    PRIMARY KEY (order_id, sku)
);

CREATE TABLE returns (
    return_id text PRIMARY KEY,
    order_id  text NOT NULL REFERENCES orders (order_id),
    restock   boolean NOT NULL,
    at        timestamptz NOT NULL
);

CREATE TABLE return_lines (
    return_id text NOT NULL REFERENCES returns (return_id),
    sku       text NOT NULL,
    qty       bigint NOT NULL CHECK (qty > 0),
    PRIMARY KEY (return_id, sku)
);

-- Every outbox entry applied, by stream id: the idempotency key of the
-- ledger. Entries can be applied out of order (a commit persists its own
-- entry at once), so this is a set, not only a position.
CREATE TABLE outbox_applied (
    partition  text NOT NULL,
    stream_ms  bigint NOT NULL,
    stream_seq bigint NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (partition, stream_ms, stream_seq)
);

-- Per partition: every entry up to here is applied. Moved forward by the
-- outbox drain in the same transaction as the rows it covers.
CREATE TABLE outbox_watermark (
    partition  text PRIMARY KEY,
    stream_ms  bigint NOT NULL,
    stream_seq bigint NOT NULL
);
