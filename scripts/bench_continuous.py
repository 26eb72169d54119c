#!/usr/bin/env python3
"""Driver of scripts/bench-continuous.sh: litevault `replicate` beside
Litestream 0.5 on ../shared/bench/writer.py (see the shell script for the
protocol and the environment). Progress goes to stderr, the markdown report
to stdout, every figure also to BENCH_DIR/results.json.
"""
import datetime
import json
import os
import random
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

E = os.environ
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.normpath(os.path.join(ROOT, "..", "shared", "bench"))
WORKLOAD = os.path.join(SHARED, "workload.py")
WRITER = os.path.join(SHARED, "writer.py")

TARGET = E.get("BENCH_TARGET", "file")
RATES = [int(r) for r in E.get("BENCH_RATES", "200 1000").split()]
SIZE = int(E.get("BENCH_SIZE_MB", "512"))
SECONDS = float(E.get("BENCH_SECONDS", "120"))
KILLS = int(E.get("BENCH_KILLS", "4"))
WORK = os.path.abspath(E.get("BENCH_DIR", "/tmp/litevault-bench-continuous"))
SEED = int(E.get("BENCH_SEED", "42"))
RUNS = int(E.get("BENCH_RESTORE_RUNS", "3"))
TOOLS = E.get("BENCH_TOOLS", "litevault litestream").split()
WIDE = int(E.get("BENCH_WIDE_ROWS", str(min(SIZE * 3125, 1_600_000))))
MIN_UP = float(E.get("BENCH_MIN_UP", "3"))
READY_TIMEOUT = float(E.get("BENCH_READY_TIMEOUT", "3600"))
LV = E.get("BENCH_LV") or E.get("LV") or os.path.join(ROOT, "target/release/litevault")
LS = E.get("BENCH_LITESTREAM") or shutil.which("litestream")
S3 = TARGET == "s3"
ENDPOINT = E.get("BENCH_S3_ENDPOINT", "")
ADMIN = E.get("BENCH_GARAGE_ADMIN", "")
TOKEN = E.get("BENCH_GARAGE_TOKEN", "bench")
PAYLOAD = 200 + 300  # writer.py: --pad 200 random bytes into ticks, 300 random bytes into wide
CLK = os.sysconf("SC_CLK_TCK")

LIVE = []  # every child process still running, for the cleanup


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class ToolFailed(Exception):
    pass


def fail(msg):
    raise ToolFailed(msg)


def die(msg):
    log("bench: " + msg)
    sys.exit(1)


def cleanup():
    for p in LIVE:
        if p.returncode is None:
            try:
                p.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.time() + 10
    for p in LIVE:
        try:
            p.wait(max(0.1, deadline - time.time()))
        except (subprocess.TimeoutExpired, ChildProcessError):
            try:
                p.kill()
                p.wait(5)
            except Exception:
                pass
        except Exception:
            pass
    LIVE.clear()


def spawn(argv, **kw):
    p = subprocess.Popen(argv, **kw)
    LIVE.append(p)
    return p


def forget(p):
    if p in LIVE:
        LIVE.remove(p)


def rm_db(path):
    for suffix in ("", "-wal", "-shm", "-journal"):
        try:
            os.remove(path + suffix)
        except FileNotFoundError:
            pass


def tree_bytes(path):
    total = 0
    for d, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(d, f)).st_size
            except FileNotFoundError:
                pass
    return total


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def p99(xs):
    if not xs:
        return None
    xs = sorted(xs)
    return xs[max(0, int(round(0.99 * len(xs))) - 1)]


def iso(t):
    """RFC 3339 UTC with milliseconds; the moment itself, truncated to the ms."""
    ms = int(t * 1000)
    d = datetime.datetime.fromtimestamp(ms // 1000, datetime.timezone.utc)
    return d.strftime("%Y-%m-%dT%H:%M:%S") + f".{ms % 1000:03d}Z", ms / 1000


def max_tick(db):
    con = sqlite3.connect(db, timeout=30)
    try:
        return con.execute("SELECT max(t), count(*) FROM ticks").fetchone()
    finally:
        con.close()


def proc_cpu(pid):
    """utime + stime of a running process (all its threads), seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


# ---------------------------------------------------------------- Garage


def garage_requests():
    """Garage's counters of S3 calls, by API endpoint."""
    if not S3:
        return {}
    req = urllib.request.Request(ADMIN + "/metrics", headers={"Authorization": "Bearer " + TOKEN})
    text = urllib.request.urlopen(req, timeout=10).read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("api_s3_request_counter{"):
            m = re.search(r'api_endpoint="([^"]*)"', line)
            if m:
                out[m.group(1)] = out.get(m.group(1), 0) + float(line.split()[-1])
    return out


def req_delta(a, b):
    d = {k: b.get(k, 0) - a.get(k, 0) for k in set(a) | set(b)}
    return {k: v for k, v in d.items() if v}


def req_add(a, b, sign=1):
    out = dict(a)
    for k, v in b.items():
        out[k] = out.get(k, 0) + sign * v
    return {k: v for k, v in out.items() if v}


def bucket_bytes(bucket):
    req = urllib.request.Request(ADMIN + "/v2/GetBucketInfo?globalAlias=" + bucket,
                                 headers={"Authorization": "Bearer " + TOKEN})
    return int(json.load(urllib.request.urlopen(req, timeout=10))["bytes"])


# ---------------------------------------------------------------- the tools


class Tool:
    name = ""
    ready = None  # regex in its log once its first snapshot is stored

    def __init__(self, run_dir, db, rate):
        self.dir, self.db, self.rate = run_dir, db, rate
        self.env = dict(E, XDG_CACHE_HOME=os.path.join(run_dir, "cache"))

    def stored(self):
        return bucket_bytes(self.bucket) if S3 else tree_bytes(self.replica)


class Litevault(Tool):
    name = "litevault"
    ready = re.compile(r"snapshot \w+ saved")

    def __init__(self, run_dir, db, rate):
        super().__init__(run_dir, db, rate)
        self.bucket = f"lv-{rate}"
        self.replica = os.path.join(run_dir, "repo")
        self.repo = f"s3:{ENDPOINT}/{self.bucket}/app" if S3 else self.replica
        self.state = os.path.join(run_dir, "state")
        self.pw = os.path.join(run_dir, "password")
        with open(self.pw, "w") as f:
            f.write(os.urandom(18).hex() + "\n")
        self.base = [LV, "-r", self.repo, "-p", self.pw] + (["-o", "s3.region=garage"] if S3 else [])

    def setup(self):
        r = subprocess.run(self.base + ["init"], env=dict(self.env, LITEVAULT_TEST_ONLY_INSECURE_KDF="1"),
                           capture_output=True, text=True)
        if r.returncode:
            die("litevault init failed: " + r.stderr)

    def replicate(self):
        return self.base + ["replicate", "--state-dir", self.state, self.db]

    def restore(self, out, at=None, check=None):
        return self.base + ["restore", "--db", self.db, "--at", at or "latest", "--target", out,
                            "--no-pre-restore"] + (["--no-cache"] if S3 else [])

    def local_state(self):
        return tree_bytes(self.state)


class Litestream(Tool):
    name = "litestream"
    ready = re.compile(r'msg="snapshot complete"')

    def __init__(self, run_dir, db, rate):
        super().__init__(run_dir, db, rate)
        self.bucket = f"ls-{rate}"
        self.replica = os.path.join(run_dir, "replica")
        self.cfg = os.path.join(run_dir, "litestream.yml")
        if S3:
            replica = (f"      type: s3\n      bucket: {self.bucket}\n      path: app.db\n"
                       f"      endpoint: {ENDPOINT}\n      region: garage\n      force-path-style: true\n"
                       f"      access-key-id: {E['AWS_ACCESS_KEY_ID']}\n"
                       f"      secret-access-key: {E['AWS_SECRET_ACCESS_KEY']}\n")
        else:
            replica = f"      type: file\n      path: {self.replica}\n"
        # Defaults everywhere: sync-interval 1s, monitor 1s, checkpoints, compaction levels.
        with open(self.cfg, "w") as f:
            f.write(f"dbs:\n  - path: {self.db}\n    replica:\n{replica}")

        # An AWS_CA_BUNDLE in the environment makes Litestream's S3 client fail at start
        # ("unable to add custom RootCAs HTTPClient"); Garage is plain HTTP on loopback.
        self.env.pop("AWS_CA_BUNDLE", None)

    def setup(self):
        pass

    def replicate(self):
        return [LS, "replicate", "-config", self.cfg]

    def restore(self, out, at=None, check=None):
        return ([LS, "restore", "-config", self.cfg, "-o", out]
                + (["-timestamp", at] if at else []) + (["-integrity-check", check] if check else [])
                + [self.db])

    def local_state(self):
        d, b = os.path.split(self.db)
        return tree_bytes(os.path.join(d, f".{b}-litestream"))


TOOL_CLASSES = {"litevault": Litevault, "litestream": Litestream}


class Running:
    """One run of a tool's replicate process; CPU from wait4's rusage once it ends."""

    def __init__(self, tool, idx):
        self.log = os.path.join(tool.dir, f"{tool.name}.{idx}.log")
        self.f = open(self.log, "w")
        self.p = spawn(tool.replicate(), stdout=self.f, stderr=subprocess.STDOUT, env=tool.env)
        self.started = time.time()
        self.cpu = None
        self.status = None

    def _reap(self, options=0):
        pid, status, ru = os.wait4(self.p.pid, options)
        if pid == 0:
            return False
        self.cpu = ru.ru_utime + ru.ru_stime
        self.cpu_sys = ru.ru_stime
        self.status = status
        self.p.returncode = os.waitstatus_to_exitcode(status)
        forget(self.p)
        self.f.close()
        return True

    def alive(self):
        return self.status is None and not self._reap(os.WNOHANG)

    def kill9(self):
        os.kill(self.p.pid, signal.SIGKILL)
        self._reap()

    def stop(self, timeout=120):
        """SIGTERM, as an operator's stop; returns the exit code and the seconds it took."""
        t0 = time.time()
        if self.alive():
            os.kill(self.p.pid, signal.SIGTERM)
            while not self._reap(os.WNOHANG):
                if time.time() - t0 > timeout:
                    log(f"  did not stop within {timeout} s of SIGTERM: SIGKILL")
                    self.kill9()
                    break
                time.sleep(0.05)
        return self.p.returncode, time.time() - t0


class WalSampler(threading.Thread):
    def __init__(self, db):
        super().__init__(daemon=True)
        self.path = db + "-wal"
        self.max = 0
        self.stop_ev = threading.Event()

    def run(self):
        while not self.stop_ev.wait(0.05):
            try:
                self.max = max(self.max, os.stat(self.path).st_size)
            except FileNotFoundError:
                pass

    def stop(self):
        self.stop_ev.set()
        self.join()
        return self.max


# ---------------------------------------------------------------- pieces


def base_db():
    path = os.path.join(WORK, f"base-{SIZE}-w{WIDE}.db")
    if os.path.exists(path):
        return path
    tmp = path + ".tmp"
    rm_db(tmp)
    log(f"creating the base database: workload.py create --size-mb {SIZE} --seed 42, "
        f"then writer.py's tables ({WIDE} wide rows)")
    subprocess.run([sys.executable, WORKLOAD, "create", tmp, "--size-mb", str(SIZE), "--seed", "42"],
                   check=True, stdout=subprocess.DEVNULL)
    subprocess.run([sys.executable, WRITER, tmp, "--rate", "1", "--seconds", "0", "--wide-rows", str(WIDE)],
                   check=True)
    con = sqlite3.connect(tmp)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    mode = con.execute("PRAGMA journal_mode").fetchone()[0]
    con.close()
    if mode != "wal":
        die(f"the base database is in {mode} mode")
    for s in ("-wal", "-shm"):
        if os.path.exists(tmp + s):
            os.remove(tmp + s)
    os.rename(tmp, path)
    return path


def fresh_copy(base, run_dir):
    os.makedirs(run_dir, exist_ok=True)
    db = os.path.join(run_dir, "app.db")
    rm_db(db)
    shutil.copyfile(base, db)
    return db


def start_writer(db, rate, run_dir):
    lat = os.path.join(run_dir, "lat.txt")
    out = open(os.path.join(run_dir, "writer.log"), "w")
    p = spawn([sys.executable, WRITER, db, "--rate", str(rate), "--seconds", str(SECONDS),
               "--wide-rows", str(WIDE), "--lat", lat, "--seed", str(SEED)],
              stdout=out, stderr=subprocess.STDOUT)
    # The writer's clock starts after it has counted `wide`: wait for its first commit.
    con = sqlite3.connect(db, timeout=30)
    try:
        while True:
            n = con.execute("SELECT count(*) FROM (SELECT 1 FROM ticks LIMIT 1)").fetchone()[0]
            if n:
                break
            if p.poll() is not None:
                die(f"writer.py exited ({p.returncode}) before its first commit; see {out.name}")
            time.sleep(0.02)
    finally:
        con.close()
    return p, time.time(), lat


def writer_figures(lat_file):
    with open(lat_file) as f:
        lat = [float(x) for x in f if x.strip()]
    return {"commits": len(lat), "p99_ms": p99(lat), "max_ms": max(lat) if lat else None,
            "rate": len(lat) / SECONDS}


def timed(argv, env=None):
    t0 = time.monotonic()
    r = subprocess.run(argv, env=env, capture_output=True, text=True)
    return r, time.monotonic() - t0


def kill_plan(rate):
    """The same seeded moments (seconds after the writer's first commit) for every tool."""
    rng = random.Random(f"kills:{SEED}:{rate}")
    lo, hi = 0.1 * SECONDS, 0.9 * SECONDS
    slot = (hi - lo) / max(KILLS, 1)
    return [lo + i * slot + rng.uniform(0, slot) for i in range(KILLS)]


def moment_offset(rate):
    return random.Random(f"at:{SEED}:{rate}").uniform(0.2 * SECONDS, 0.8 * SECONDS)


NOTABLE = re.compile(r"gap|error|warn|note:|fail|panic|refus|bridg|missing|corrupt|retry|truncated|overwritten"
                     r"|reason=|level=(WARN|ERROR)", re.I)


def notable_lines(paths):
    seen = {}
    for path in paths:
        try:
            with open(path, errors="replace") as f:
                for line in f:
                    line = line.rstrip()
                    if NOTABLE.search(line) and "LITEVAULT_TEST_ONLY_INSECURE_KDF" not in line:
                        key = re.sub(r"time=\S+ ", "", line)
                        seen[key] = seen.get(key, 0) + 1
        except FileNotFoundError:
            pass
    return seen


def whole_db_copies(tool, logs):
    """Copies of the whole database the tool stored after its first snapshot.

    litevault: the snapshots it reports (`snapshot X saved`: bridges after a
    gap, folds) past the first. Litestream: the LTX files that hold every page,
    as `litestream ltx -level all` lists them (after the requests were
    counted): the first snapshot's copies at L1 and up (files from TXID 1),
    and L0 files about as large as the first snapshot (re-snapshots after a
    restart), counted as those at least half its size.
    """
    if tool.name == "litevault":
        n = 0
        for path in logs:
            with open(path, errors="replace") as f:
                n += len(re.findall(r"snapshot \w+ saved", f.read()))
        return {"count": max(0, n - 1), "bytes": None}
    r = subprocess.run([LS, "ltx", "-config", tool.cfg, "-level", "all", "-json", tool.db],
                       capture_output=True, text=True, env=tool.env)
    try:
        files = json.loads(r.stdout)
    except ValueError:
        return {"count": None, "bytes": None, "error": (r.stderr or r.stdout).strip()[-500:]}
    first = [f for f in files if int(f["min_txid"], 16) == 1]
    ref = max((f["size"] for f in first), default=0)
    copies = [f for f in first if f["level"] not in (0, 9)]
    resnaps = [f for f in files if f["level"] == 0 and int(f["min_txid"], 16) > 1 and f["size"] >= ref / 2]
    return {"count": len(resnaps), "bytes": sum(f["size"] for f in resnaps),
            "first_copies": len(copies), "first_copies_bytes": sum(f["size"] for f in copies),
            "levels": sorted({f["level"] for f in files})}


# ---------------------------------------------------------------- runs


def baseline(base, rate):
    run_dir = os.path.join(WORK, f"{rate}-baseline")
    db = fresh_copy(base, run_dir)
    log(f"rate {rate}: baseline (writer alone, {SECONDS:.0f} s)")
    sampler = WalSampler(db)
    sampler.start()
    w, _, lat = start_writer(db, rate, run_dir)
    w.wait()
    forget(w)
    res = writer_figures(lat)
    res["wal_max"] = sampler.stop()
    log(f"  {res['commits']} commits, p99 {res['p99_ms']:.2f} ms, largest -wal {res['wal_max'] / 2**20:.1f} MiB")
    shutil.rmtree(run_dir, ignore_errors=True)
    return res


def bench_tool(base, rate, name):
    run_dir = os.path.join(WORK, f"{rate}-{name}")
    db = fresh_copy(base, run_dir)
    tool = TOOL_CLASSES[name](run_dir, db, rate)
    tool.setup()
    res = {"tool": name, "kills": [], "restarts": 0, "logs": []}
    stored0 = tool.stored()
    sampler = WalSampler(db)
    sampler.start()
    req0 = garage_requests()

    log(f"rate {rate}: {name}: start, wait for its first snapshot")
    t_start = time.time()
    runs = [Running(tool, 0)]
    res["logs"].append(runs[0].log)
    while True:
        with open(runs[0].log, errors="replace") as f:
            if tool.ready.search(f.read()):
                break
        if not runs[0].alive():
            fail(f"{name} exited ({runs[0].p.returncode}) before its first snapshot; see {runs[0].log}")
        if time.time() - t_start > READY_TIMEOUT:
            fail(f"{name}: no first snapshot within {READY_TIMEOUT} s; see {runs[0].log}")
        time.sleep(0.1)
    res["ready_s"] = time.time() - t_start
    res["cpu_initial"] = proc_cpu(runs[0].p.pid)
    res["stored_initial"] = tool.stored() - stored0
    req_ready = garage_requests()
    res["req_initial"] = req_delta(req0, req_ready)
    log(f"  first snapshot stored after {res['ready_s']:.1f} s ({res['cpu_initial']:.1f} CPU s, "
        f"{res['stored_initial'] / 2**20:.1f} MiB)")

    w, t_first, lat = start_writer(db, rate, run_dir)
    req_w0 = garage_requests()
    req_restores = {}
    log(f"  writer at {rate} tx/s for {SECONDS:.0f} s")
    last_restart = t_first
    for i, off in enumerate(kill_plan(rate)):
        planned = t_first + off
        at = max(planned, last_restart + MIN_UP)
        if at > t_first + SECONDS - 1:
            log(f"  kill {i + 1}: no time left in the writer's run, skipped")
            continue
        while time.time() < at:
            time.sleep(min(0.01, max(0, at - time.time())))
        if not runs[-1].alive():
            log(f"  {name} had exited ({runs[-1].p.returncode}) before kill {i + 1}; see {runs[-1].log}")
        K = time.time()
        if runs[-1].status is None:
            runs[-1].kill9()
        out = os.path.join(run_dir, f"kill{i + 1}.db")
        rm_db(out)
        r0 = garage_requests()
        r, dt = timed(tool.restore(out), env=tool.env)
        req_r = req_delta(r0, garage_requests())
        req_restores = req_add(req_restores, req_r)
        k = {"K": K, "offset": K - t_first, "restore_s": dt, "restore_rc": r.returncode,
             "restore_requests": sum(req_r.values())}
        if r.returncode == 0:
            mt, n = max_tick(out)
            k["max_t"], k["rows"] = mt, n
            k["loss"] = K - mt if mt is not None else K - t_first
        else:
            k["loss"] = None
            k["restore_err"] = (r.stderr or r.stdout).strip()[-2000:]
        rm_db(out)
        res["kills"].append(k)
        runs.append(Running(tool, len(runs)))
        res["logs"].append(runs[-1].log)
        res["restarts"] += 1
        last_restart = k["restarted"] = time.time()
        loss = "restore FAILED" if k["loss"] is None else f"loss {k['loss']:.3f} s"
        log(f"  kill {i + 1} at +{k['offset']:.1f} s: {loss} (restore {dt:.2f} s, down {last_restart - K:.2f} s)")
        if k["loss"] is None:
            log("    " + k["restore_err"].replace("\n", "\n    "))

    w.wait()
    forget(w)
    t_writer_end = time.time()
    if not runs[-1].alive():
        log(f"  {name} had exited ({runs[-1].p.returncode}) before the end; see {runs[-1].log}")
    time.sleep(1.0)
    rc, stop_s = runs[-1].stop()
    t_stop = time.time()
    res["stop_rc"], res["stop_s"] = rc, stop_s
    res["wal_max"] = sampler.stop()
    req_end = garage_requests()
    res["writer"] = writer_figures(lat)
    res["cpu_total"] = sum(r.cpu for r in runs)
    res["cpu_runs"] = [round(r.cpu, 3) for r in runs]
    res["cpu_sys"] = sum(r.cpu_sys for r in runs)
    res["cpu_run"] = res["cpu_total"] - res["cpu_initial"]
    res["stored_end"] = tool.stored() - stored0
    res["stored_run"] = res["stored_end"] - res["stored_initial"]
    res["local_state"] = tool.local_state()
    res["changed"] = res["writer"]["commits"] * PAYLOAD
    res["window_s"] = t_stop - t_first
    res["req_run"] = req_add(req_delta(req_w0, req_end), req_restores, -1)
    log(f"  stopped by SIGTERM: exit {rc} in {stop_s:.2f} s; CPU {res['cpu_total']:.1f} s "
        f"({res['cpu_run']:.1f} s after the first snapshot); stored +{res['stored_run'] / 2**20:.2f} MiB "
        f"during the run")

    # The newest state after a graceful stop must hold the writer's last commit.
    live_max, live_n = max_tick(db)
    res["live_rows"] = live_n
    restores = {"latest": [], "latest_full": [], "at": []}
    req_latest = []
    # A random moment while the tool runs: one that falls while it is down (a kill until
    # a second after its restart) moves to 1.5 s after the restart.
    t_at = t_first + moment_offset(rate)
    for k in res["kills"]:
        if k["K"] <= t_at < k["restarted"] + 1.0:
            t_at = k["restarted"] + 1.5
    T, T_used = iso(min(t_at, t_writer_end - 0.5))
    res["at"], res["at_offset"] = T, T_used - t_first
    checks = [None] if name == "litevault" else [None, "full"]
    for n in range(RUNS):
        for check in checks:
            out = os.path.join(run_dir, "restored.db")
            rm_db(out)
            subprocess.run(["sync"])
            r0 = garage_requests()
            r, dt = timed(tool.restore(out, check=check), env=tool.env)
            if check is None:
                req_latest.append(sum(req_delta(r0, garage_requests()).values()))
            if r.returncode:
                log(f"  restore latest failed: {(r.stderr or r.stdout).strip()}")
                res.setdefault("restore_errors", []).append((r.stderr or r.stdout).strip()[-2000:])
                continue
            mt, rows = max_tick(out)
            restores["latest_full" if check else "latest"].append(dt)
            if n == 0 and check is None:
                res["final_missing_rows"] = live_n - rows
                res["final_missing_s"] = (live_max or 0) - (mt or 0)
                if rows != live_n:
                    log(f"  after the graceful stop, latest holds {rows} of {live_n} ticks "
                        f"(last one {res['final_missing_s']:.3f} s older)")
            rm_db(out)
        out = os.path.join(run_dir, "restored-at.db")
        rm_db(out)
        r, dt = timed(tool.restore(out, at=T), env=tool.env)
        if r.returncode:
            log(f"  restore at {T} failed: {(r.stderr or r.stdout).strip()}")
            res.setdefault("restore_errors", []).append((r.stderr or r.stdout).strip()[-2000:])
            continue
        mt, _ = max_tick(out)
        restores["at"].append(dt)
        # Negative: the restore holds commits made after T.
        res["at_staleness"] = T_used - mt if mt is not None else None
        rm_db(out)
    res["restore_latest"] = median(restores["latest"])
    res["restore_latest_full"] = median(restores["latest_full"])
    res["restore_at"] = median(restores["at"])
    res["restore_latest_requests"] = median(req_latest) if S3 else None
    res["notable"] = notable_lines(res["logs"])
    res["whole_db"] = whole_db_copies(tool, res["logs"])
    res["restore_stderr"] = [k.get("restore_err") for k in res["kills"] if k.get("restore_err")]
    log(f"  restore latest {res['restore_latest']}, at T {res['restore_at']} s "
        f"(T - newest tick {res.get('at_staleness')})")
    # Keep the logs, free the space (a 10 GiB run holds several copies of the database).
    keep = os.path.join(WORK, "logs", f"{rate}-{name}")
    os.makedirs(keep, exist_ok=True)
    for f in os.listdir(run_dir):
        if f.endswith((".log", ".yml", ".txt")):
            shutil.move(os.path.join(run_dir, f), os.path.join(keep, f))
    res["logs"] = [os.path.join(keep, os.path.basename(p)) for p in res["logs"]]
    shutil.rmtree(run_dir, ignore_errors=True)
    return res


# ---------------------------------------------------------------- report


def fmt(x, unit="", nd=2):
    if x is None:
        return "–"
    return f"{x:.{nd}f}{unit}"


def mib(b):
    return "–" if b is None else f"{b / 2**20:.2f} MiB"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def check_mark(ok):
    return "" if ok is None else (" ✓" if ok else " ✗")


def report(rate, base_info, bl, res):
    lv, ls = res.get("litevault"), res.get("litestream")
    tools = [t for t in (lv, ls) if t]
    print()
    print(f"### {rate} tx/s, {SECONDS:.0f} s, {KILLS} kills, target {TARGET}")
    print()
    head = "| | " + " | ".join(t["tool"] for t in tools) + " | litevault / Litestream | target |"
    print(head)
    print("|---|" + "---:|" * len(tools) + "---:|---|")

    def row(label, vals, r=None, target=""):
        print(f"| {label} | " + " | ".join(vals) + f" | {r or ''} | {target} |")

    def losses(t):
        return [k["loss"] for k in t["kills"] if k["loss"] is not None]

    def lossfig(t, f):
        xs = losses(t)
        return f(xs) if xs else None

    def ok(x, lim):
        return None if x is None else x <= lim

    failed = {t["tool"]: sum(1 for k in t["kills"] if k["loss"] is None) for t in tools}
    row("kills (restore failed)", [f"{len(t['kills'])} ({failed[t['tool']]})" for t in tools])
    row("loss per kill, median", [fmt(lossfig(t, statistics.median), " s", 3)
                                  + check_mark(ok(lossfig(t, statistics.median), 0.5)) for t in tools],
        target="≤ 0.5 s")
    row("loss per kill, max", [fmt(lossfig(t, max), " s", 3) + check_mark(ok(lossfig(t, max), 1.0))
                               for t in tools], target="≤ 1.0 s")
    row("losses", [" ".join(fmt(k["loss"], "", 2) for k in t["kills"]) or "–" for t in tools])

    def r_(key, f=lambda x: x):
        if lv and ls:
            return ratio(f(lv[key]) if lv.get(key) is not None else None,
                         f(ls[key]) if ls.get(key) is not None else None)
        return None

    rc = r_("cpu_run")
    row("tool CPU during the run (restarts summed)", [fmt(t["cpu_run"], " s") for t in tools],
        (fmt(rc, "", 3) + check_mark(ok(rc, 1 / 3))) if rc is not None else None, "litevault ≤ 1/3")
    row("  per process (the first with its first snapshot; restarts)", [" ".join(f"{c:.2f}" for c in t["cpu_runs"]) for t in tools])
    row("  of which system (kernel) time, all processes", [fmt(t["cpu_sys"], " s") for t in tools])
    row("tool CPU, first snapshot", [fmt(t["cpu_initial"], " s") for t in tools], fmt(r_("cpu_initial"), "", 3))
    row("first snapshot stored after", [fmt(t["ready_s"], " s", 1) for t in tools])
    rs = r_("stored_run")
    row("stored during the run", [mib(t["stored_run"]) for t in tools],
        (fmt(rs, "", 3) + check_mark(ok(rs, 0.1))) if rs is not None else None, "litevault ≤ 1/10")
    def whole(t):
        w = t["whole_db"]
        if w.get("count") is None:
            return "?"
        if t["tool"] == "litevault":
            return f"{w['count']} snapshots after the first (bridges, folds)"
        return (f"{w['count']} re-snapshots at L0 ({mib(w['bytes'])}); the first snapshot copied to "
                f"{w['first_copies']} levels ({mib(w['first_copies_bytes'])})")
    row("  of which whole-database copies", [whole(t) for t in tools])
    row("stored / changed (commits × 500 B)", [fmt(ratio(t["stored_run"], t["changed"]), "×", 2) for t in tools])
    row("stored at the end (with the first snapshot)", [mib(t["stored_end"]) for t in tools],
        fmt(r_("stored_end"), "", 3))
    row("local state (state dir / meta dir) at the end", [mib(t["local_state"]) for t in tools])
    rl = r_("restore_latest")
    row(f"restore latest at the end (median of {RUNS})",
        [fmt(t["restore_latest"], " s") + (" (integrity_check)" if t["tool"] == "litevault" else " (no check)")
         for t in tools], fmt(rl, "", 3))
    if ls:
        rlf = ratio(lv["restore_latest"], ls["restore_latest_full"]) if lv else None
        row("  Litestream with -integrity-check full", ["" if t is lv else fmt(t["restore_latest_full"], " s")
                                                       for t in tools],
            (fmt(rlf, "", 3) + check_mark(ok(rlf, 0.25))) if rlf is not None else None, "litevault ≤ 1/4")
    row(f"restore at a random moment (median of {RUNS})", [fmt(t["restore_at"], " s") for t in tools],
        fmt(r_("restore_at"), "", 3))
    row("  the moment (s after the writer's first commit)", [fmt(t.get("at_offset"), " s", 1) for t in tools])
    row("  moment − its newest tick", [fmt(t.get("at_staleness"), " s", 3) for t in tools])
    row("ticks missing from latest after SIGTERM", [str(t.get("final_missing_rows", "–")) for t in tools],
        target="0")
    row("writer commits (rate)", [f"{t['writer']['commits']} ({t['writer']['rate']:.0f}/s)" for t in tools]
        + [], None, f"baseline {bl['commits']} ({bl['rate']:.0f}/s)")
    row("writer commit p99", [fmt(t["writer"]["p99_ms"], " ms") for t in tools], None,
        f"baseline {fmt(bl['p99_ms'], ' ms')}")
    row("writer commit max", [fmt(t["writer"]["max_ms"], " ms", 1) for t in tools], None,
        f"baseline {fmt(bl['max_ms'], ' ms', 1)}")
    row("largest -wal (every 50 ms)", [mib(t["wal_max"]) for t in tools], None, f"baseline {mib(bl['wal_max'])}")
    if S3:
        def per_hour(t):
            h = t["window_s"] / 3600
            return ", ".join(f"{k} {v / h:.0f}" for k, v in sorted(t["req_run"].items(), key=lambda kv: -kv[1]))
        row("requests per hour while replicating (by type)", [per_hour(t) for t in tools])
        tot = {t["tool"]: sum(t["req_run"].values()) * 3600 / t["window_s"] for t in tools}
        row("  total per hour", [f"{tot[t['tool']]:.0f}" for t in tools],
            fmt(ratio(tot.get("litevault"), tot.get("litestream")), "", 3))
        row("ListObjects while replicating (count)",
            [str(int(sum(v for k, v in t["req_run"].items() if k.startswith("List")))) for t in tools], None, "0")
        row("requests, first snapshot", [", ".join(f"{k} {int(v)}" for k, v in sorted(t["req_initial"].items()))
                                         for t in tools])
        row("requests per restore latest (median)", [fmt(t["restore_latest_requests"], "", 0) for t in tools])
    print()
    for t in tools:
        if t["notable"] or t["restore_stderr"] or t.get("restore_errors") or t["stop_rc"] != 0:
            print(f"{t['tool']} (rate {rate}): exit {t['stop_rc']} after SIGTERM; notable log lines (count × line):")
            print("```")
            for line, n in list(t["notable"].items())[:40]:
                print(f"{n} × {line}")
            for e in t["restore_stderr"] + t.get("restore_errors", []):
                print("restore: " + e)
            print("```")


def main():
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if not (LV and os.access(LV, os.X_OK)):
        die(f"no litevault binary at {LV}")
    if "litestream" in TOOLS and not (LS and os.access(LS, os.X_OK)):
        die("no litestream binary")
    if S3 and not (ENDPOINT and ADMIN):
        die("BENCH_TARGET=s3 needs the Garage started by scripts/bench-continuous.sh")
    os.makedirs(WORK, exist_ok=True)
    base = base_db()
    base_size = os.path.getsize(base)
    free = shutil.disk_usage(WORK).free
    if free < 6 * base_size:
        log(f"warning: {free / 2**30:.1f} GiB free in {WORK}; a run may need about 6 times the database "
            f"({6 * base_size / 2**30:.1f} GiB: a copy, a restore, Litestream's replica and meta dir)")
    lsv = subprocess.run([LS, "version"], capture_output=True, text=True).stdout.strip() if LS else "?"
    lvv = subprocess.run([LV, "--version"], capture_output=True, text=True).stdout.strip()
    results = {"config": {"target": TARGET, "rates": RATES, "size_mb": SIZE, "db_bytes": base_size,
                          "wide_rows": WIDE, "seconds": SECONDS, "kills": KILLS, "seed": SEED,
                          "restore_runs": RUNS, "litevault": lvv, "litestream": lsv}, "rates": {}}
    all_out = []
    for rate in RATES:
        bl = baseline(base, rate)
        res = {}
        for name in TOOLS:
            try:
                res[name] = bench_tool(base, rate, name)
            except ToolFailed as e:
                log(f"{name} at {rate} tx/s: {e}; its column is left out")
                cleanup()
        results["rates"][rate] = {"baseline": bl, **res}
        with open(os.path.join(WORK, "results.json"), "w") as f:
            json.dump(results, f, indent=1, default=str)
        all_out.append((rate, bl, res))
    print(f"## Continuous capture: {lvv} beside Litestream {lsv}")
    print()
    garage = f"single-node Garage {E.get('BENCH_GARAGE_VERSION', '')} on loopback" if S3 else "a local directory"
    print(f"Database: workload.py create --size-mb {SIZE} --seed 42 plus writer.py's `wide` ({WIDE} rows): "
          f"{base_size / 2**20:.0f} MiB. Writer: ../shared/bench/writer.py (pad 200 B + 300 B per commit). "
          f"Replica: {garage}. Both tools with their default intervals (1 s). Kills: SIGKILL at seeded random "
          f"moments (the same for both tools); restores while the writer goes on. {os.cpu_count()} cores.")
    for rate, bl, res in all_out:
        report(rate, None, bl, res)


if __name__ == "__main__":
    try:
        main()
    finally:
        cleanup()
