-- Keep orders.total_cents equal to the sum of its lines.
CREATE FUNCTION shop.refresh_order_total() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE shop.orders o
       SET total_cents = (SELECT coalesce(sum(quantity * price_cents), 0)
                            FROM shop.order_lines l
                           WHERE l.order_id = o.id)
     WHERE o.id = coalesce(NEW.order_id, OLD.order_id);
    RETURN NULL;  -- an AFTER trigger; the result is ignored
END;
$$;

CREATE TRIGGER order_lines_total
    AFTER INSERT OR UPDATE OR DELETE ON shop.order_lines
    FOR EACH ROW EXECUTE FUNCTION shop.refresh_order_total();

INSERT INTO shop.orders (customer_id) SELECT id FROM shop.customers WHERE email = 'ada@example.com';
INSERT INTO shop.order_lines (order_id, product_id, quantity, price_cents)
SELECT o.id, p.id, 2, p.price_cents
  FROM shop.orders o, shop.products p
 WHERE p.sku IN ('TEA-001', 'MUG-001');
