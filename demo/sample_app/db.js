'use strict';
// sql.js runs SQLite in memory (WebAssembly): each use loads the database file, and a change is
// written back whole, to a temp file that is then renamed over the old one, so a reader never sees
// half a file. Writers (the live release, a candidate started beside it, migrate.js) take a lock
// directory first: without it two processes could each load, change and save, and one change
// would be lost.
const fs = require('fs');
const initSqlJs = require('sql.js');

const LOCK_WAIT_MS = 5000;
const LOCK_STALE_MS = 30000; // a lock this old was left by a killed process
let SQL = null;

async function init() {
  SQL = await initSqlJs();
}

function sleep(ms) {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function lock(file) {
  const dir = `${file}.lock`;
  const deadline = Date.now() + LOCK_WAIT_MS;
  for (;;) {
    try {
      fs.mkdirSync(dir); // atomic: fails with EEXIST while another process holds it
      return () => fs.rmdirSync(dir);
    } catch (err) {
      if (err.code !== 'EEXIST') throw err;
    }
    try {
      if (Date.now() - fs.statSync(dir).mtimeMs > LOCK_STALE_MS) fs.rmdirSync(dir);
    } catch (err) {
      if (err.code !== 'ENOENT') throw err;
    }
    if (Date.now() > deadline) throw new Error(`${file} is locked (${dir} exists)`);
    sleep(20);
  }
}

function open(file, create) {
  if (!fs.existsSync(file)) {
    if (!create) throw new Error(`database ${file} does not exist: run npm run migrate`);
    return new SQL.Database();
  }
  return new SQL.Database(fs.readFileSync(file));
}

function save(db, file) {
  const tmp = `${file}.${process.pid}.tmp`;
  const fd = fs.openSync(tmp, 'w', 0o640);
  try {
    fs.writeSync(fd, db.export());
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
}

// fn(db) with the database as it is now, nothing written back.
function read(file, fn) {
  const db = open(file, false);
  try {
    return fn(db);
  } finally {
    db.close();
  }
}

// fn(db) under the lock; the database is written back unless fn returns false or throws.
// create: start from an empty database when the file does not exist (migrate.js only).
function write(file, fn, create = false) {
  const unlock = lock(file);
  try {
    const db = open(file, create);
    try {
      const result = fn(db);
      if (result !== false) save(db, file);
      return result;
    } finally {
      db.close();
    }
  } finally {
    unlock();
  }
}

// Rows of a query as objects.
function all(db, sql, params = []) {
  const stmt = db.prepare(sql);
  try {
    stmt.bind(params);
    const rows = [];
    while (stmt.step()) rows.push(stmt.getAsObject());
    return rows;
  } finally {
    stmt.free();
  }
}

module.exports = { init, read, write, all };
