'use strict';
// The notes service. Zero-downtime contract with pm2 (wait_ready + kill_timeout), as
// roles/node_pm2/README.md asks: say 'ready' only once the port listens; on SIGINT stop accepting,
// let in-flight requests finish, then exit a second later.
const http = require('http');
const config = require('./config');
const db = require('./db');
const { name, version } = require('./package.json');

const MAX_BODY = 64 * 1024;

function json(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

// 200 with the row count when settings and database are fine; 503 naming the first problem.
function health(res) {
  const problem = config.problems()[0];
  if (problem) return json(res, 503, { status: 'error', version, error: problem });
  try {
    const notes = db.read(config.databasePath, (d) => db.all(d, 'SELECT count(*) AS n FROM notes')[0].n);
    json(res, 200, { status: 'ok', version, notes });
  } catch (err) {
    json(res, 503, { status: 'error', version, error: err.message });
  }
}

function listNotes(res) {
  const notes = db.read(config.databasePath, (d) => db.all(d, 'SELECT id, body, created_at FROM notes ORDER BY id'));
  json(res, 200, { notes });
}

function addNote(req, res) {
  let raw = '';
  req.setEncoding('utf8');
  req.on('data', (chunk) => {
    raw += chunk;
    if (raw.length > MAX_BODY) {
      json(res, 413, { error: `body larger than ${MAX_BODY} bytes` });
      req.destroy();
    }
  });
  req.on('end', () => {
    if (res.writableEnded) return;
    let body;
    try {
      body = JSON.parse(raw).body;
    } catch (err) {
      return json(res, 400, { error: 'send JSON: {"body": "..."}' });
    }
    if (typeof body !== 'string' || body.trim() === '') {
      return json(res, 400, { error: '"body" must be a non-empty string' });
    }
    guard(req, res, () => {
      const note = db.write(config.databasePath, (d) => {
        const createdAt = new Date().toISOString();
        d.run('INSERT INTO notes (body, created_at) VALUES (?, ?)', [body, createdAt]);
        const id = db.all(d, 'SELECT last_insert_rowid() AS id')[0].id;
        return { id, body, created_at: createdAt };
      });
      json(res, 201, note);
    });
  });
}

function route(req, res) {
  const url = req.url.split('?')[0];
  if (url === '/health') return health(res);
  if (url === '/') return json(res, 200, { app: name, version, greeting: `hello from ${name} ${version}` });
  if (url === '/notes') {
    if (!config.databasePath) return json(res, 503, { error: 'DATABASE_PATH is not set' });
    if (req.method === 'GET') return listNotes(res);
    if (req.method === 'POST') return addNote(req, res);
    res.setHeader('allow', 'GET, POST');
    return json(res, 405, { error: `${req.method} is not allowed on /notes` });
  }
  json(res, 404, { error: 'not found' });
}

// A missing or locked database file: say so with a 503 and keep serving.
function guard(req, res, fn) {
  try {
    fn();
  } catch (err) {
    console.error(`${req.method} ${req.url}: ${err.message}`);
    if (!res.headersSent) json(res, 503, { error: err.message });
  }
}

const server = http.createServer((req, res) => guard(req, res, () => route(req, res)));
server.keepAliveTimeout = 1000;

db.init().then(
  () => server.listen(config.port, config.host, () => {
    console.log(`${name} ${version} listening on ${config.host}:${config.port}`);
    if (process.send) process.send('ready');
  }),
  (err) => {
    console.error(`cannot load sql.js: ${err.message}`);
    process.exit(1);
  },
);

// In cluster mode the pm2 master may still be handing this worker a connection when the server
// closes: exiting at once would leave that client unanswered (see roles/node_pm2/README.md).
process.on('SIGINT', () => {
  console.log('SIGINT: closing the server');
  server.close(() => setTimeout(() => process.exit(0), 1000));
  server.closeIdleConnections();
});
