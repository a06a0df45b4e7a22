// The "lean Node.js" reference for benches/load.rs: a plain `http` server on
// better-sqlite3 doing what a completed-task status poll needs — look the
// session up by cookie, look the task up by id and owner, answer its view as
// JSON. Seeds its own database (one user, one session, one completed task).
//
// Usage: PORT=… DB=/path/node.db node server.js
"use strict";
const http = require("http");
const Database = require("better-sqlite3");

const db = new Database(process.env.DB);
db.pragma("journal_mode = WAL");
db.pragma("synchronous = NORMAL");
db.exec(`
  CREATE TABLE IF NOT EXISTS sessions (id TEXT PRIMARY KEY, data TEXT NOT NULL, expiry_date INTEGER NOT NULL);
  CREATE TABLE IF NOT EXISTS tasks (
    id TEXT PRIMARY KEY, user_id TEXT NOT NULL, prompt TEXT NOT NULL, model TEXT NOT NULL,
    cost INTEGER NOT NULL, status TEXT NOT NULL, progress INTEGER, error TEXT,
    created_at INTEGER NOT NULL, finished_at INTEGER, refunded INTEGER NOT NULL DEFAULT 0);
`);
const now = Date.now();
db.prepare("INSERT OR REPLACE INTO sessions VALUES (?, ?, ?)").run(
  "bench-session", JSON.stringify({ user_id: "bench-user" }), now + 86400000);
db.prepare("INSERT OR REPLACE INTO tasks VALUES (?, ?, ?, ?, 10, 'completed', 100, NULL, ?, ?, 0)").run(
  "bench-task", "bench-user", "a lighthouse at dusk, oil on canvas", "bench/sim", now - 20000, now - 5000);

const session = db.prepare("SELECT data FROM sessions WHERE id = ? AND expiry_date > ?");
const task = db.prepare(
  "SELECT id, status, prompt, model, created_at, finished_at, progress, error, refunded, cost " +
  "FROM tasks WHERE id = ? AND user_id = ?");

function cookie(header, name) {
  for (const part of (header || "").split(";")) {
    const [k, v] = part.trim().split("=");
    if (k === name) return v;
  }
  return undefined;
}

function send(res, status, body) {
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
  res.end(body);
}

http.createServer((req, res) => {
  if (req.method !== "POST" || req.url !== "/api/check_image_status") return send(res, 404, '"not found"');
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    const form = new URLSearchParams(Buffer.concat(chunks).toString());
    const s = session.get(cookie(req.headers.cookie, "darkroom_session"), Date.now());
    if (!s) return send(res, 401, '"sign in first"');
    const user = JSON.parse(s.data).user_id;
    const t = task.get(form.get("task_id"), user);
    if (!t) return send(res, 404, '"not found"');
    send(res, 200, JSON.stringify({
      id: t.id, status: t.status, prompt: t.prompt, model: t.model,
      created_at: new Date(t.created_at).toISOString(), created_ms: t.created_at, finished_ms: t.finished_at,
      image_url: t.status === "completed" ? `/images/${t.id}` : null,
      error: t.error, refunded: !!t.refunded, progress: t.progress, cost: t.cost,
    }));
  });
}).listen(Number(process.env.PORT), "127.0.0.1");
