-- Seed data for the `shop` example's staging database. Applied after the catalog's `migrate` job created the schema.
INSERT INTO products (name, price_cents) VALUES
    ('Espresso cup', 1200),
    ('Pour-over kettle', 4900),
    ('Burr grinder', 12900);

INSERT INTO customers (email, full_name, phone) VALUES
    ('ada@example.test', 'Ada Lovelace', '+44 20 7946 0001'),
    ('grace@example.test', 'Grace Hopper', '+1 202 555 0102');

INSERT INTO orders (customer_email, product_id) VALUES
    ('ada@example.test', 1),
    ('grace@example.test', 3);
