-- Reference data every environment needs.
INSERT INTO shop.products (sku, title, price_cents) VALUES
    ('TEA-001', 'Green tea, 100 g', 650),
    ('TEA-002', 'Earl Grey; loose leaf, 250 g', 1190),
    ('MUG-001', 'Stoneware mug', 1500);

INSERT INTO shop.customers (name, email) VALUES
    ('Ada Lovelace', 'ada@example.com'),
    ('Grace Hopper', 'grace@example.org'),
    ('Edsger Dijkstra', 'ewd@example.net');
