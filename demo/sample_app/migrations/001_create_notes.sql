-- The notes the service stores. created_at is an ISO 8601 UTC timestamp.
CREATE TABLE notes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    body TEXT NOT NULL CHECK (length(body) > 0),
    created_at TEXT NOT NULL
);
