"""Sample data for the database integration tests, and independent fingerprints of it.

Fingerprints are computed with the Python drivers (psycopg2, pymysql, sqlite3), not with the
code under test, so a test compares what the database really holds."""

import sqlite3

PG_SCHEMA = """
CREATE SCHEMA billing;
CREATE TABLE users (id serial PRIMARY KEY, email text NOT NULL UNIQUE, name text, created_at timestamptz DEFAULT now());
CREATE TABLE orders (id bigserial PRIMARY KEY, user_id int NOT NULL REFERENCES users(id), total numeric(12,2),
                     note text, payload jsonb);
CREATE TABLE billing.invoices (id serial PRIMARY KEY, order_id bigint REFERENCES orders(id), pdf bytea);
CREATE VIEW big_orders AS SELECT * FROM orders WHERE total > 100;
CREATE INDEX orders_user ON orders(user_id);
INSERT INTO users (email, name) SELECT 'u' || g || '@example.com', 'User ' || g FROM generate_series(1, %(users)d) g;
INSERT INTO orders (user_id, total, note, payload)
  SELECT 1 + g %% %(users)d, (g * 7 %% 500)::numeric + 0.99, E'line\\ttab ''quoted'' ' || g, jsonb_build_object('g', g)
  FROM generate_series(1, %(orders)d) g;
INSERT INTO billing.invoices (order_id, pdf) SELECT g, decode(md5(g::text), 'hex') FROM generate_series(1, %(invoices)d) g;
"""

PG_TABLES = ["users", "orders", "billing.invoices"]
MYSQL_TABLES = ["users", "orders", "invoices"]
SQLITE_TABLES = ["users", "orders", "invoices"]

MYSQL_SCHEMA = [
    "CREATE TABLE users (id int AUTO_INCREMENT PRIMARY KEY, email varchar(200) NOT NULL UNIQUE, name text)",
    "CREATE TABLE orders (id bigint AUTO_INCREMENT PRIMARY KEY, user_id int NOT NULL, total decimal(12,2), note text,"
    " FOREIGN KEY (user_id) REFERENCES users(id))",
    "CREATE TABLE invoices (id int AUTO_INCREMENT PRIMARY KEY, order_id bigint, pdf blob,"
    " FOREIGN KEY (order_id) REFERENCES orders(id))",
    "CREATE VIEW big_orders AS SELECT * FROM orders WHERE total > 100",
    "CREATE TRIGGER orders_note BEFORE INSERT ON orders FOR EACH ROW SET NEW.note = COALESCE(NEW.note, 'none')",
]


def seed_postgres(server, database, users=200, orders=1000, invoices=300):
    server.create_database(database)
    server.execute(PG_SCHEMA % dict(users=users, orders=orders, invoices=invoices), database)
    return {"users": users, "orders": orders, "billing.invoices": invoices}


def fingerprint_postgres(server, database):
    """{table: (rows, md5 of all rows in id order)}"""
    out = {}
    for table in PG_TABLES:
        rows = server.execute("SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t.id), '')) FROM %s t"
                              % table, database)
        out[table] = tuple(rows[0])
    return out


def seed_mysql(server, database, users=200, orders=1000, invoices=300):
    server.create_database(database)
    conn = server.connect(database)
    try:
        with conn.cursor() as cur:
            for statement in MYSQL_SCHEMA:
                cur.execute(statement)
            cur.executemany("INSERT INTO users (email, name) VALUES (%s, %s)",
                            [("u%d@example.com" % i, "User %d" % i) for i in range(1, users + 1)])
            cur.executemany("INSERT INTO orders (user_id, total, note) VALUES (%s, %s, %s)",
                            [(1 + i % users, (i * 7 % 500) + 0.99, "line\ttab 'q' %d" % i) for i in range(1, orders + 1)])
            cur.executemany("INSERT INTO invoices (order_id, pdf) VALUES (%s, %s)",
                            [(i, bytes(range(i % 256)) * 2) for i in range(1, invoices + 1)])
        conn.commit()
    finally:
        conn.close()
    return {"users": users, "orders": orders, "invoices": invoices}


def fingerprint_mysql(server, database):
    out = {}
    conn = server.connect(database)
    try:
        with conn.cursor() as cur:
            for table in MYSQL_TABLES:
                cur.execute("SELECT COUNT(*) FROM `%s`" % table)
                count = cur.fetchone()[0]
                cur.execute("CHECKSUM TABLE `%s`" % table)
                out[table] = (count, cur.fetchone()[1])
    finally:
        conn.close()
    return out


def seed_sqlite(path, users=200, orders=1000, invoices=300):
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE, name TEXT);
        CREATE TABLE orders (id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES users(id), total REAL, note TEXT);
        CREATE TABLE invoices (id INTEGER PRIMARY KEY, order_id INTEGER REFERENCES orders(id), pdf BLOB);
        CREATE VIEW big_orders AS SELECT * FROM orders WHERE total > 100;
    """)
    conn.executemany("INSERT INTO users (email, name) VALUES (?, ?)",
                     [("u%d@example.com" % i, "User %d" % i) for i in range(1, users + 1)])
    conn.executemany("INSERT INTO orders (user_id, total, note) VALUES (?, ?, ?)",
                     [(1 + i % users, (i * 7 % 500) + 0.99, "line\ttab 'q' %d" % i) for i in range(1, orders + 1)])
    conn.executemany("INSERT INTO invoices (order_id, pdf) VALUES (?, ?)",
                     [(i, bytes(range(i % 256))) for i in range(1, invoices + 1)])
    conn.commit()
    conn.close()
    return {"users": users, "orders": orders, "invoices": invoices}


def fingerprint_sqlite(path):
    conn = sqlite3.connect(path)
    try:
        out = {}
        for table in SQLITE_TABLES:
            rows = conn.execute("SELECT * FROM %s ORDER BY id" % table).fetchall()
            out[table] = (len(rows), hash(tuple(rows)))
        return out
    finally:
        conn.close()
