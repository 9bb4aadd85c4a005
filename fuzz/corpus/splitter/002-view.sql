CREATE VIEW shop.order_summary AS
SELECT c.id            AS customer_id,
       c.name,
       c.email_domain,
       count(o.id)     AS orders,
       coalesce(sum(o.total_cents), 0) AS spent_cents
  FROM shop.customers c
  LEFT JOIN shop.orders o ON o.customer_id = c.id
 GROUP BY c.id, c.name, c.email_domain;

COMMENT ON VIEW shop.order_summary IS 'Orders and spend per customer, for reporting.';
