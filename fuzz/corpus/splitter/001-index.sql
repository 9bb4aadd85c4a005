-- 0004: faster "orders of a customer" lookups.
CREATE INDEX orders_customer_placed_idx ON shop.orders (customer_id, placed_at DESC);
