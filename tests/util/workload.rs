//! A deterministic application database and its daily churn, in Rust, so
//! the tests need neither Python nor `../shared` (the benchmarks keep using
//! `../shared/bench/workload.py`, whose shape this follows).
//!
//! Tables: `events` (append-mostly log with an index on `ts`, oldest rows
//! deleted), `users` (scattered updates), `attachments` (incompressible
//! blobs, about a fifth of the bytes). One day of churn: +0.5% events, 1%
//! of users updated, -0.2% oldest events, a few attachments added and two
//! removed. The database is in WAL mode and checkpointed when closed.

// Counts here are small and positive; the generator follows workload.py
// step by step rather than splitting its day into helper functions.
#![allow(clippy::cast_possible_wrap, clippy::too_many_lines)]

use std::path::Path;

use rusqlite::{params, Connection};

const DAY: i64 = 86_400;
const BASE_TS: i64 = 1_700_000_000;
const MIB: u64 = 1024 * 1024;

const VOCAB: &[&str] = &[
    "account",
    "active",
    "admin",
    "alert",
    "amount",
    "api",
    "approve",
    "archive",
    "audit",
    "backup",
    "balance",
    "batch",
    "billing",
    "blocked",
    "bucket",
    "cache",
    "cancel",
    "card",
    "cart",
    "charge",
    "checkout",
    "client",
    "cluster",
    "commit",
    "config",
    "confirm",
    "connect",
    "content",
    "coupon",
    "create",
    "credit",
    "cron",
    "customer",
    "dashboard",
    "data",
    "debit",
    "default",
    "delete",
    "deliver",
    "deploy",
    "device",
    "discount",
    "dispatch",
    "domain",
    "download",
    "draft",
    "email",
    "enable",
    "endpoint",
    "error",
    "event",
    "expire",
    "export",
    "failed",
    "feature",
    "fetch",
    "file",
    "filter",
    "finish",
    "flag",
    "forward",
    "gateway",
    "group",
    "health",
    "history",
    "host",
    "image",
    "import",
    "inbox",
    "index",
    "invoice",
    "item",
    "job",
    "key",
    "label",
    "latency",
    "ledger",
    "limit",
    "link",
    "list",
    "load",
    "locale",
    "lock",
    "login",
    "logout",
    "manifest",
    "merge",
    "message",
    "metric",
    "migrate",
    "mobile",
    "module",
    "monitor",
    "notify",
    "order",
    "origin",
    "owner",
    "package",
    "page",
    "paid",
    "parcel",
    "partner",
    "password",
    "payload",
    "payment",
    "pending",
    "permission",
    "plan",
    "policy",
    "pool",
    "post",
    "price",
    "primary",
    "profile",
    "promo",
    "publish",
    "purchase",
    "push",
    "queue",
    "quota",
    "rate",
    "receipt",
    "record",
    "redirect",
    "refund",
    "region",
    "release",
    "remote",
    "render",
    "report",
    "request",
    "reserve",
    "reset",
    "resource",
    "response",
    "retry",
    "return",
    "review",
    "role",
    "route",
    "rule",
    "sample",
    "schedule",
    "schema",
    "scope",
    "search",
    "secret",
    "segment",
    "send",
    "server",
    "session",
    "settle",
    "shard",
    "share",
    "shipment",
    "signup",
    "sku",
    "snapshot",
    "source",
    "stage",
    "status",
    "stock",
    "storage",
    "stream",
    "submit",
    "subscribe",
    "success",
    "summary",
    "support",
    "sync",
    "system",
    "tax",
    "team",
    "tenant",
    "ticket",
    "timeout",
    "token",
    "topic",
    "trace",
    "transfer",
    "trial",
    "update",
    "upload",
    "usage",
    "user",
    "validate",
    "vendor",
    "version",
    "view",
    "voucher",
    "wallet",
    "warehouse",
    "webhook",
    "widget",
    "window",
    "worker",
    "zone",
];
const KINDS: &[&str] = &[
    "login", "logout", "view", "click", "search", "purchase", "refund", "signup", "error", "share",
    "upload", "notify",
];
const DOMAINS: &[&str] = &[
    "example.com",
    "mail.test",
    "corp.example",
    "shop.test",
    "inbox.example",
];

/// A small deterministic generator (SplitMix64 seeded from a label).
pub struct Rng(u64);

impl Rng {
    /// A generator for `label` (e.g. "create:42").
    pub fn new(label: &str) -> Self {
        let h = blake3::hash(label.as_bytes());
        Self(u64::from_le_bytes(h.as_bytes()[..8].try_into().unwrap()))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as i64
    }

    /// One element of `v`.
    pub fn choose<'a>(&mut self, v: &'a [&'a str]) -> &'a str {
        v[self.next_u64() as usize % v.len()]
    }

    /// `n` random bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n + 8);
        while out.len() < n {
            out.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        out.truncate(n);
        out
    }

    /// `k` distinct numbers from `1..=n`.
    pub fn sample(&mut self, n: i64, k: usize) -> Vec<i64> {
        let mut picked = std::collections::BTreeSet::new();
        let k = k.min(n as usize);
        while picked.len() < k {
            picked.insert(self.range(1, n));
        }
        let mut v: Vec<i64> = picked.into_iter().collect();
        // A deterministic shuffle, so the first few are not the smallest.
        for i in (1..v.len()).rev() {
            let j = self.next_u64() as usize % (i + 1);
            v.swap(i, j);
        }
        v
    }
}

/// About 150-400 bytes of semi-compressible text.
fn payload(rng: &mut Rng, n_users: i64) -> String {
    let target = rng.range(150, 400) as usize;
    let mut s = format!(
        "{{\"req\":\"{:016x}\",\"user\":{},\"msg\":\"",
        rng.next_u64(),
        rng.range(1, n_users.max(1))
    );
    while s.len() < target - 2 {
        if rng.range(0, 4) == 0 {
            s.push_str(&(rng.next_u64() % (1 << 20)).to_string());
        } else {
            s.push_str(rng.choose(VOCAB));
        }
        s.push(' ');
    }
    s.truncate(target - 2);
    s.push_str("\"}");
    s
}

fn insert_user(con: &Connection, rng: &mut Rng, uid: i64, ts: i64) {
    let (a, b) = (rng.choose(VOCAB), rng.choose(VOCAB));
    let email = format!("{a}.{b}{uid}@{}", rng.choose(DOMAINS));
    let name = format!("{} {}", capital(a), capital(b));
    let balance = rng.range(0, 10_000_000);
    con.execute(
        "INSERT INTO users VALUES(?,?,?,?,?)",
        params![uid, email, name, balance, ts],
    )
    .unwrap();
}

fn insert_event(con: &Connection, rng: &mut Rng, id: i64, ts: i64, n_users: i64) {
    let kind = rng.choose(KINDS);
    let p = payload(rng, n_users);
    con.execute(
        "INSERT INTO events VALUES(?,?,?,?)",
        params![id, ts, kind, p],
    )
    .unwrap();
}

/// Inserts an incompressible attachment of 4-64 KiB; returns its size.
fn insert_attachment(con: &Connection, rng: &mut Rng, id: i64) -> u64 {
    let n = rng.range(4 * 1024, 64 * 1024) as usize;
    let name = format!("{}_{id}.bin", rng.choose(VOCAB));
    let data = rng.bytes(n);
    con.execute(
        "INSERT INTO attachments VALUES(?,?,?)",
        params![id, name, data],
    )
    .unwrap();
    n as u64
}

fn capital(w: &str) -> String {
    let mut c = w.chars();
    c.next()
        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}

fn connect(path: &Path) -> Connection {
    let con = Connection::open(path).unwrap();
    con.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;")
        .unwrap();
    con
}

fn db_bytes(con: &Connection) -> u64 {
    con.query_row(
        "SELECT page_count * page_size FROM pragma_page_count, pragma_page_size",
        [],
        |r| r.get::<_, i64>(0),
    )
    .unwrap() as u64
}

/// Builds a database of about `size_mb` MiB at `path` (which must not
/// exist).
pub fn create(path: &Path, size_mb: u64, seed: u64) {
    assert!(!path.exists(), "refusing to overwrite {}", path.display());
    let mut rng = Rng::new(&format!("create:{seed}"));
    let target = size_mb * MIB;
    let users_target = (size_mb as i64 * 200).max(1000);
    let con = connect(path);
    con.execute_batch(
        "CREATE TABLE events(id INTEGER PRIMARY KEY, ts INTEGER, kind TEXT, payload TEXT);
         CREATE INDEX events_ts ON events(ts);
         CREATE TABLE users(id INTEGER PRIMARY KEY, email TEXT UNIQUE, name TEXT,
                            balance INTEGER, updated_at INTEGER);
         CREATE TABLE attachments(id INTEGER PRIMARY KEY, name TEXT, data BLOB);",
    )
    .unwrap();
    let mut ts = BASE_TS - 365 * DAY;
    let (mut ev_id, mut user_id, mut att_id) = (0i64, 0i64, 0i64);
    let mut att_bytes = 0u64;
    let batch = 2000;
    loop {
        let cur = db_bytes(&con);
        if cur >= target {
            break;
        }
        let progress = cur as f64 / target as f64;
        let tx = con.unchecked_transaction().unwrap();
        let want_users = (users_target as f64 * progress) as i64 + 10;
        while user_id < want_users {
            user_id += 1;
            insert_user(&tx, &mut rng, user_id, ts);
        }
        for _ in 0..batch {
            ev_id += 1;
            ts += rng.range(1, 40);
            insert_event(&tx, &mut rng, ev_id, ts, user_id);
        }
        while (att_bytes as f64) < 0.20 * (cur as f64 + f64::from(batch) * 330.0) {
            att_id += 1;
            att_bytes += insert_attachment(&tx, &mut rng, att_id);
        }
        tx.commit().unwrap();
    }
    let tx = con.unchecked_transaction().unwrap();
    while user_id < users_target {
        user_id += 1;
        insert_user(&tx, &mut rng, user_id, ts);
    }
    tx.commit().unwrap();
    con.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
        .unwrap();
}

/// Applies day `step` of churn to the database at `path`.
pub fn mutate(path: &Path, step: u64, seed: u64) {
    assert!(path.exists(), "no database {}", path.display());
    let mut rng = Rng::new(&format!("mutate:{seed}:{step}"));
    let con = connect(path);
    let (n_ev, max_ev, max_ts): (i64, i64, i64) = con
        .query_row(
            "SELECT count(*), coalesce(max(id), 0), coalesce(max(ts), 0) FROM events",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    let (n_users, max_uid): (i64, i64) = con
        .query_row(
            "SELECT count(*), coalesce(max(id), 0) FROM users",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let day0 = max_ts + 1;
    // 1) new events, 0.5% of the rows, in application-sized transactions
    let n_new = ((0.005 * n_ev as f64).round() as i64).max(1);
    let gap = (DAY / n_new).max(1);
    let (mut ts, mut ev) = (day0, max_ev);
    let mut left = n_new;
    while left > 0 {
        let tx = con.unchecked_transaction().unwrap();
        for _ in 0..left.min(500) {
            ev += 1;
            ts += rng.range(1, 2 * gap);
            insert_event(&tx, &mut rng, ev, ts, n_users);
        }
        tx.commit().unwrap();
        left -= 500;
    }
    // 2) 1% of users updated, a few renamed
    let n_upd = ((0.01 * n_users as f64).round() as usize).max(1);
    let ids = rng.sample(max_uid.max(1), n_upd);
    let tx = con.unchecked_transaction().unwrap();
    for uid in &ids {
        let delta = rng.range(-5000, 5000);
        let at = day0 + rng.range(0, DAY - 1);
        tx.execute(
            "UPDATE users SET balance = balance + ?, updated_at = ? WHERE id = ?",
            params![delta, at, uid],
        )
        .unwrap();
    }
    for uid in ids.iter().take((n_upd / 20).max(1)) {
        let name = format!(
            "{} {}",
            capital(rng.choose(VOCAB)),
            capital(rng.choose(VOCAB))
        );
        tx.execute("UPDATE users SET name = ? WHERE id = ?", params![name, uid])
            .unwrap();
    }
    tx.commit().unwrap();
    // 3) the oldest 0.2% of events deleted
    let n_del = ((0.002 * n_ev as f64).round() as i64).max(1);
    con.execute(
        "DELETE FROM events WHERE id IN (SELECT id FROM events ORDER BY id LIMIT ?)",
        [n_del],
    )
    .unwrap();
    // 4) attachments: about 0.2% of their bytes added, two deleted
    let (att_total, att_max): (i64, i64) = con
        .query_row(
            "SELECT coalesce(sum(length(data)), 0), coalesce(max(id), 0) FROM attachments",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let want = ((0.002 * att_total as f64) as u64).max(4096);
    let att_ids: Vec<i64> = con
        .prepare("SELECT id FROM attachments ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let tx = con.unchecked_transaction().unwrap();
    let (mut added, mut aid) = (0u64, att_max);
    while added < want {
        aid += 1;
        added += insert_attachment(&tx, &mut rng, aid);
    }
    if !att_ids.is_empty() {
        for i in rng.sample(att_ids.len() as i64, 2) {
            tx.execute(
                "DELETE FROM attachments WHERE id = ?",
                [att_ids[(i - 1) as usize]],
            )
            .unwrap();
        }
    }
    tx.commit().unwrap();
    // The last connection closes: checkpoint, -wal removed.
    drop(con);
}
