'use strict';
// npm run migrate: applies the SQL files of migrations/ not yet recorded in the `migrations`
// table, in name order, each with its row, in one transaction; the file is written back only if
// all of them applied. Run again, it applies nothing.
const fs = require('fs');
const path = require('path');
const db = require('./db');

const file = process.env.DATABASE_PATH;
if (!file) {
  console.error('migrate: DATABASE_PATH is not set (the SQLite database file, e.g. shared/data/app.sqlite)');
  process.exit(2);
}
const dir = path.join(__dirname, 'migrations');
const ids = fs.readdirSync(dir).filter((f) => f.endsWith('.sql')).map((f) => f.slice(0, -4)).sort();

db.init().then(() => {
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  const applied = db.write(file, (d) => {
    d.run('CREATE TABLE IF NOT EXISTS migrations (id TEXT PRIMARY KEY, applied_at TEXT NOT NULL)');
    const done = new Set(db.all(d, 'SELECT id FROM migrations').map((row) => row.id));
    // A newer release's migrations, when this older one runs after a rollback: they stay.
    const newer = [...done].filter((id) => !ids.includes(id));
    if (newer.length) console.log(`applied by a newer release, kept: ${newer.join(', ')}`);
    const pending = ids.filter((id) => !done.has(id));
    if (pending.length === 0) return false; // nothing to write back
    d.run('BEGIN');
    for (const id of pending) {
      try {
        d.exec(fs.readFileSync(path.join(dir, `${id}.sql`), 'utf8'));
      } catch (err) {
        throw new Error(`${id} failed, nothing was applied: ${err.message}`);
      }
      d.run('INSERT INTO migrations (id, applied_at) VALUES (?, ?)', [id, new Date().toISOString()]);
    }
    d.run('COMMIT');
    return pending;
  }, true);
  if (applied) {
    for (const id of applied) console.log(`applied ${id}`);
  } else {
    console.log(`nothing to apply: the ${ids.length} migration(s) of this release are applied to ${file}`);
  }
}).catch((err) => {
  console.error(`migrate: ${err.message}`);
  process.exit(1);
});
