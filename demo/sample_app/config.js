'use strict';
// Settings, read from the environment once at start. A missing required setting does not stop
// the process: /health answers 503 naming it, so a deploy's health check catches the mistake
// (and rolls back) instead of pm2 restarting a crashing app in a loop.
const required = ['DATABASE_PATH'];

module.exports = {
  port: Number(process.env.PORT || 3000),
  host: process.env.HOST || '127.0.0.1',
  databasePath: process.env.DATABASE_PATH || '',
  problems() {
    return required.filter((name) => !process.env[name]).map((name) => `${name} is not set`);
  },
};
