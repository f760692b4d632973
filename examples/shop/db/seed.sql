-- Seed data for the `shop` example's staging database: applied once, in one transaction, to a new empty database
-- before the catalog's `migrate` job runs (which then finds the schema up to date). A seed file holds schema and
-- data, like a dump.
CREATE TABLE products (
    id          bigserial PRIMARY KEY,
    name        text   NOT NULL,
    price_cents bigint NOT NULL CHECK (price_cents >= 0)
);
CREATE TABLE customers (
    id        bigserial PRIMARY KEY,
    email     text NOT NULL UNIQUE,
    full_name text NOT NULL,
    phone     text
);
CREATE TABLE orders (
    id             bigserial PRIMARY KEY,
    customer_email text   NOT NULL REFERENCES customers (email),
    product_id     bigint NOT NULL REFERENCES products (id),
    created_at     timestamptz NOT NULL DEFAULT now()
);

INSERT INTO products (name, price_cents) VALUES
    ('Espresso cup', 1200),
    ('Pour-over kettle', 4900),
    ('Burr grinder', 12900);

INSERT INTO customers (email, full_name, phone) VALUES
    ('ada@example.test', 'Ada Lovelace', '+44 20 7946 0001'),
    ('grace@example.test', 'Grace Hopper', '+1 202 555 0102'),
    ('alan@example.test', 'Alan Turing', '+44 161 496 0003');

INSERT INTO orders (customer_email, product_id) VALUES
    ('ada@example.test', 1),
    ('grace@example.test', 3),
    ('ada@example.test', 2);
