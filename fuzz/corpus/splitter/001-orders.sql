-- 0002-create-orders: orders and their lines.
CREATE TABLE shop.orders (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id  bigint NOT NULL REFERENCES shop.customers (id),
    placed_at    timestamptz NOT NULL DEFAULT now(),
    total_cents  integer NOT NULL DEFAULT 0
);

CREATE TABLE shop.order_lines (
    order_id    bigint NOT NULL REFERENCES shop.orders (id) ON DELETE CASCADE,
    product_id  bigint NOT NULL REFERENCES shop.products (id),
    quantity    integer NOT NULL CHECK (quantity > 0),
    price_cents integer NOT NULL,
    PRIMARY KEY (order_id, product_id)
);
