//! Real servers for the remote-repository tests, started by the tests on
//! loopback ports in temporary directories: Garage (an S3-compatible,
//! distributed object store) and OpenSSH's sshd (SFTP).
//!
//! A missing server is a failure, never a skip: `bash scripts/test.sh`
//! (and CI's `.ci/run`) installs both.
//!
//! Each server runs under `sh`, which kills it when the test process's end
//! of a pipe closes: servers never outlive the test binary, however it
//! ends.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The S3 credentials the test Garage knows (imported, not generated).
pub const ACCESS_KEY: &str = "GK4c1e5f7a9b2d3c4e5f6a7b8c";
pub const SECRET_KEY: &str = "5e1f0c2b9a8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f";
/// The bucket every S3 test uses, each under its own prefix.
pub const BUCKET: &str = "litevault-tests";

/// A free TCP port on loopback (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A unique name for one test's objects.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn find_program(env: &str, name: &str, candidates: &[&str]) -> PathBuf {
    if let Some(p) = std::env::var_os(env) {
        return PathBuf::from(p);
    }
    let mut all: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join(name)).collect())
        .unwrap_or_default();
    all.extend(candidates.iter().map(PathBuf::from));
    if let Some(home) = std::env::var_os("HOME") {
        all.push(PathBuf::from(home).join(".cargo/bin").join(name));
    }
    all.into_iter().find(|p| p.is_file()).unwrap_or_else(|| {
        panic!(
            "{name} is not installed, and the remote-repository tests need it: run `bash scripts/install-test-servers.sh` (or set {env})"
        )
    })
}

/// A server process that dies with its guard (or with the test process).
pub struct Supervised {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Supervised {
    /// Starts `program args...` with its output in `log`; once it is
    /// stopped, `cleanup` (a scratch directory) is removed.
    pub fn start(program: &Path, args: &[&str], log: &Path, cleanup: Option<&Path>) -> Self {
        let cmd: Vec<String> = (0..=args.len()).map(|i| format!("\"${i}\"")).collect();
        let cmd = cmd.join(" ");
        let rm = cleanup.map_or_else(String::new, |d| format!("; rm -rf '{}'", d.display()));
        let script = format!(
            "{cmd} >>'{}' 2>&1 & pid=$!; cat >/dev/null; kill $pid 2>/dev/null; wait $pid{rm}",
            log.display()
        );
        let child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start sh");
        let mut s = Self { child, stdin: None };
        s.stdin = s.child.stdin.take();
        s
    }

    /// Stops the server and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut s) = self.stdin.take() {
            let _ = s.flush();
        }
        let _ = self.child.wait();
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Waits until `ready` returns true, or panics with `what` and the log.
fn wait_for(what: &str, log: &Path, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        if ready() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "{what} did not start within 30 s; its log ({}):\n{}",
        log.display(),
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

// ---------------------------------------------------------------- Garage

/// One Garage node: its config, ports and process.
pub struct GarageNode {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub s3_port: u16,
    pub rpc_port: u16,
    pub admin_port: u16,
    /// Remove the node's directory when it stops (the shared node, which
    /// lives as long as the test process).
    pub cleanup: bool,
    process: Option<Supervised>,
}

/// The garage binary.
pub fn garage_bin() -> PathBuf {
    find_program("LITEVAULT_GARAGE", "garage", &["/usr/local/bin/garage"])
}

const RPC_SECRET: &str = "3f1b6c0e2a9d8b7c6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d";
const ADMIN_TOKEN: &str = "litevault-test-admin-token";

impl GarageNode {
    /// Writes a node's config in `dir` (replication factor `rf`).
    pub fn new(dir: &Path, rf: u8) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let (s3_port, rpc_port, admin_port) = (free_port(), free_port(), free_port());
        let config = dir.join("garage.toml");
        std::fs::write(
            &config,
            format!(
                r#"metadata_dir = "{d}/meta"
data_dir = "{d}/data"
db_engine = "sqlite"
metadata_fsync = false
data_fsync = false
replication_factor = {rf}
rpc_bind_addr = "127.0.0.1:{rpc_port}"
rpc_public_addr = "127.0.0.1:{rpc_port}"
rpc_secret = "{RPC_SECRET}"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:{s3_port}"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:{admin_port}"
admin_token = "{ADMIN_TOKEN}"
metrics_token = "{ADMIN_TOKEN}"
"#,
                d = dir.display()
            ),
        )
        .unwrap();
        Self {
            dir: dir.to_path_buf(),
            config,
            s3_port,
            rpc_port,
            admin_port,
            cleanup: false,
            process: None,
        }
    }

    /// Starts the node and waits for its ports.
    pub fn start(&mut self) {
        let log = self.dir.join("garage.log");
        let config = self.config.to_string_lossy().into_owned();
        self.process = Some(Supervised::start(
            &garage_bin(),
            &["-c", &config, "server"],
            &log,
            self.cleanup.then_some(self.dir.as_path()),
        ));
        let (rpc, s3) = (self.rpc_port, self.s3_port);
        wait_for("garage", &log, || port_open(rpc) && port_open(s3));
    }

    /// Stops the node.
    pub fn stop(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.stop();
        }
    }

    /// Runs the garage CLI against this node; returns stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new(garage_bin())
            .arg("-c")
            .arg(&self.config)
            .args(args)
            .output()
            .expect("run garage");
        assert!(
            out.status.success(),
            "garage {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until this node sees `n` healthy nodes and no failed one.
    pub fn wait_healthy(&self, n: usize) {
        let log = self.dir.join("status.log");
        wait_for("a healthy garage cluster", &log, || {
            let Ok(out) = Command::new(garage_bin())
                .arg("-c")
                .arg(&self.config)
                .arg("status")
                .output()
            else {
                return false;
            };
            let text = String::from_utf8_lossy(&out.stdout);
            let _ = std::fs::write(&log, text.as_bytes());
            let Some(healthy) = text.split("==== HEALTHY NODES ====").nth(1) else {
                return false;
            };
            let healthy = healthy.split("====").next().unwrap_or("");
            out.status.success()
                && !text.contains("FAILED NODES")
                && healthy.lines().filter(|l| l.contains("127.0.0.1:")).count() >= n
        });
    }

    /// Connects this node to `other` at once (a restarted node is
    /// otherwise found again only after the peers' reconnection backoff).
    pub fn connect(&self, other: &GarageNode) {
        let id = other.node_id();
        self.cli(&[
            "node",
            "connect",
            &format!("{id}@127.0.0.1:{}", other.rpc_port),
        ]);
    }

    /// This node's id (`garage node id`, without the address).
    pub fn node_id(&self) -> String {
        let out = self.cli(&["node", "id", "-q"]);
        let line = out.lines().find(|l| !l.trim().is_empty()).unwrap().trim();
        line.split('@').next().unwrap().to_string()
    }

    /// The S3 endpoint.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port)
    }

    /// Counters of S3 requests by API endpoint (PutObject, GetObject,
    /// ListObjectsV2, ...), from the node's Prometheus metrics.
    pub fn s3_requests(&self) -> std::collections::BTreeMap<String, u64> {
        let body = http_get(
            self.admin_port,
            "/metrics",
            &format!("Authorization: Bearer {ADMIN_TOKEN}"),
        );
        let mut out = std::collections::BTreeMap::new();
        for line in body.lines() {
            let Some(rest) = line.strip_prefix("api_s3_request_counter{") else {
                continue;
            };
            let Some((labels, value)) = rest.split_once("} ") else {
                continue;
            };
            let Some(ep) = labels
                .split(',')
                .find_map(|l| l.strip_prefix("api_endpoint=\""))
            else {
                continue;
            };
            let ep = ep.trim_end_matches('"').to_string();
            *out.entry(ep).or_insert(0) += value.trim().parse::<f64>().unwrap_or(0.0) as u64;
        }
        out
    }
}

impl Drop for GarageNode {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A minimal HTTP/1.0 GET on loopback, for the metrics endpoint.
fn http_get(port: u16, path: &str, header: &str) -> String {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n{header}\r\n\r\n"
    )
    .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    body
}

/// Lays out a cluster of started nodes (one zone each), creates the test
/// key and bucket through the first.
pub fn garage_setup(nodes: &[&GarageNode]) {
    let first = nodes[0];
    let ids: Vec<String> = nodes.iter().map(|n| n.node_id()).collect();
    for (n, id) in nodes.iter().zip(&ids).skip(1) {
        first.cli(&["node", "connect", &format!("{id}@127.0.0.1:{}", n.rpc_port)]);
    }
    for (i, id) in ids.iter().enumerate() {
        let zone = format!("dc{}", i + 1);
        first.cli(&["layout", "assign", "-z", &zone, "-c", "1G", id]);
    }
    first.cli(&["layout", "apply", "--version", "1"]);
    let key_ok = || {
        Command::new(garage_bin())
            .arg("-c")
            .arg(&first.config)
            .args([
                "key",
                "import",
                "--yes",
                "-n",
                "litevault-test",
                ACCESS_KEY,
                SECRET_KEY,
            ])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    // The layout takes a moment to reach every node.
    wait_for("the garage layout", &first.dir.join("garage.log"), key_ok);
    first.cli(&["bucket", "create", BUCKET]);
    first.cli(&[
        "bucket",
        "allow",
        "--read",
        "--write",
        "--owner",
        BUCKET,
        "--key",
        "litevault-test",
    ]);
}

/// The single-node Garage shared by the S3 tests of this process.
pub fn garage() -> &'static GarageNode {
    static G: OnceLock<GarageNode> = OnceLock::new();
    G.get_or_init(|| {
        let dir = std::env::temp_dir().join(unique("litevault-garage"));
        let mut node = GarageNode::new(&dir, 1);
        node.cleanup = true;
        node.start();
        garage_setup(&[&node]);
        set_s3_env();
        node
    })
}

/// The S3 credentials, for this process's own backends (values never
/// change once set; the binary's runs get them explicitly).
pub fn set_s3_env() {
    std::env::set_var("AWS_ACCESS_KEY_ID", ACCESS_KEY);
    std::env::set_var("AWS_SECRET_ACCESS_KEY", SECRET_KEY);
    std::env::set_var("AWS_DEFAULT_REGION", "garage");
}

/// A fresh S3 location on the shared Garage: the test bucket, a unique prefix.
pub fn s3_location(name: &str) -> String {
    format!("s3:{}/{BUCKET}/{}", garage().endpoint(), unique(name))
}

// ---------------------------------------------------------------- sshd

/// The append-only SFTP session the README's guide sets up: new files are
/// read-only (`-u 0222`), and removing, renaming, linking, changing modes
/// and making directories are refused.
pub const APPEND_ONLY_SFTP: &str = "internal-sftp -u 0222 -P remove,rmdir,rename,posix-rename,hardlink,symlink,setstat,fsetstat,lsetstat,copy-data,mkdir";

/// The account the append-only tests log in as: not root, whom file modes
/// do not stop (`.ci/run` makes it).
pub const APPEND_ONLY_USER: &str = "litevault-append";

/// An OpenSSH server on loopback, its keys, and an `ssh` that knows them.
pub struct Sshd {
    pub port: u16,
    /// Its keys, configs and known hosts files (`known_hosts`,
    /// `known_hosts_wrong`, `known_hosts_empty`, the user key
    /// `id_ed25519`).
    pub dir: PathBuf,
    /// A directory with an `ssh` wrapper (for PATH) that uses this
    /// server's client config: its user key and known hosts.
    pub bin: PathBuf,
    /// A directory with an `ssh` wrapper whose known hosts hold a wrong
    /// key for the server.
    pub bin_wrong_host_key: PathBuf,
    /// The same, with a known_hosts that has no key for the server.
    pub bin_unknown_host: PathBuf,
    /// A key authorized only for read-only SFTP (`internal-sftp -R`).
    pub read_only_key: PathBuf,
    /// A key authorized only for append-only SFTP ([`APPEND_ONLY_SFTP`]),
    /// and an ssh client config that logs in with it alone.
    pub append_only_key: PathBuf,
    pub append_only_config: PathBuf,
    /// Where the tests' repositories go.
    pub root: PathBuf,
    _process: Supervised,
}

fn keygen(path: &Path) {
    let ok = Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "litevault-test",
            "-f",
        ])
        .arg(path)
        .status()
        .expect("ssh-keygen (openssh-client) is needed")
        .success();
    assert!(ok, "ssh-keygen failed");
}

fn sshd_bin() -> PathBuf {
    find_program("LITEVAULT_SSHD", "sshd", &["/usr/sbin/sshd"])
}

fn ssh_wrapper(dir: &Path, config: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("ssh");
    std::fs::write(
        &path,
        format!(
            // The first value of an option wins: a master connection left
            // by a process the tests kill (SIGKILL: no `ssh -O exit`) ends
            // 30 s after its last use instead of persisting.
            "#!/bin/sh\nexec /usr/bin/ssh -F '{}' -o ControlPersist=30 \"$@\"\n",
            config.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn client_config(path: &Path, known_hosts: &Path, key: &Path) {
    std::fs::write(
        path,
        format!(
            "Host *\n  UserKnownHostsFile {}\n  GlobalKnownHostsFile /dev/null\n  IdentityFile {}\n  IdentitiesOnly yes\n  BatchMode yes\n  StrictHostKeyChecking yes\n  ConnectTimeout 10\n",
            known_hosts.display(),
            key.display()
        ),
    )
    .unwrap();
}

impl Sshd {
    fn start() -> Self {
        let dir = std::env::temp_dir().join(unique("litevault-sshd"));
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        let host_key = dir.join("host_ed25519");
        let other_host_key = dir.join("other_host_ed25519");
        let user_key = dir.join("id_ed25519");
        let read_only_key = dir.join("id_read_only");
        let append_only_key = dir.join("id_append_only");
        for k in [
            &host_key,
            &other_host_key,
            &user_key,
            &read_only_key,
            &append_only_key,
        ] {
            keygen(k);
        }
        let pubkey_of = |k: &Path| std::fs::read_to_string(format!("{}.pub", k.display())).unwrap();
        std::fs::write(
            dir.join("authorized_keys"),
            format!(
                "{}restrict,command=\"internal-sftp -R\" {}restrict,command=\"{APPEND_ONLY_SFTP}\" {}",
                pubkey_of(&user_key),
                pubkey_of(&read_only_key),
                pubkey_of(&append_only_key)
            ),
        )
        .unwrap();
        let host_line = |k: &Path| {
            let p = pubkey_of(k);
            let mut parts = p.split_whitespace();
            format!(
                "[127.0.0.1]:{port} {} {}\n",
                parts.next().unwrap(),
                parts.next().unwrap()
            )
        };
        std::fs::write(dir.join("known_hosts"), host_line(&host_key)).unwrap();
        std::fs::write(dir.join("known_hosts_wrong"), host_line(&other_host_key)).unwrap();
        std::fs::write(dir.join("known_hosts_empty"), "").unwrap();
        let config = dir.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {hk}\nAuthorizedKeysFile {d}/authorized_keys\nPidFile {d}/sshd.pid\nStrictModes no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nPermitRootLogin prohibit-password\nMaxStartups 100\nMaxSessions 100\nSubsystem sftp internal-sftp\n",
                hk = host_key.display(),
                d = dir.display()
            ),
        )
        .unwrap();
        // sshd's privilege separation directory.
        let _ = std::fs::create_dir_all("/run/sshd");
        let log = dir.join("sshd.log");
        let process = Supervised::start(
            &sshd_bin(),
            &["-D", "-e", "-f", &config.to_string_lossy()],
            &log,
            Some(&dir),
        );
        wait_for("sshd", &log, || port_open(port));
        client_config(&dir.join("ssh_config"), &dir.join("known_hosts"), &user_key);
        client_config(
            &dir.join("ssh_config_wrong"),
            &dir.join("known_hosts_wrong"),
            &user_key,
        );
        ssh_wrapper(&dir.join("bin"), &dir.join("ssh_config"));
        ssh_wrapper(&dir.join("bin-wrong"), &dir.join("ssh_config_wrong"));
        client_config(
            &dir.join("ssh_config_unknown"),
            &dir.join("known_hosts_empty"),
            &user_key,
        );
        ssh_wrapper(&dir.join("bin-unknown"), &dir.join("ssh_config_unknown"));
        let append_only_config = dir.join("ssh_config_append_only");
        client_config(
            &append_only_config,
            &dir.join("known_hosts"),
            &append_only_key,
        );
        let root = dir.join("root");
        std::fs::create_dir_all(&root).unwrap();
        Self {
            bin: dir.join("bin"),
            bin_wrong_host_key: dir.join("bin-wrong"),
            bin_unknown_host: dir.join("bin-unknown"),
            read_only_key,
            append_only_key,
            append_only_config,
            root,
            port,
            dir,
            _process: process,
        }
    }

    /// `PATH` with `bin` first.
    pub fn path_with(bin: &Path) -> std::ffi::OsString {
        let mut paths = vec![bin.to_path_buf()];
        if let Some(p) = std::env::var_os("PATH") {
            paths.extend(std::env::split_paths(&p));
        }
        std::env::join_paths(paths).unwrap()
    }

    /// A fresh SFTP location for the current user on this server.
    pub fn location(&self, name: &str) -> String {
        format!(
            "sftp:{}@127.0.0.1:{}:{}",
            whoami(),
            self.port,
            self.root.join(unique(name)).display()
        )
    }
}

/// The user name the tests log in as.
pub fn whoami() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| {
            String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout)
                .unwrap()
                .trim()
                .to_string()
        })
}

/// The sshd shared by the SFTP tests of this process. This process's own
/// SFTP backends find its `ssh` wrapper first on PATH (set once).
pub fn sshd() -> &'static Sshd {
    static S: OnceLock<Sshd> = OnceLock::new();
    S.get_or_init(|| {
        let s = Sshd::start();
        std::env::set_var("PATH", Sshd::path_with(&s.bin));
        s
    })
}

// ---------------------------------------------------------------- moto

/// A moto S3 server on loopback (`python3 -m moto.server`): the tests' S3
/// store that enforces Object Lock, which Garage does not implement.
pub struct Moto {
    pub port: u16,
    _process: Supervised,
}

impl Moto {
    /// Its endpoint, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// The moto server shared by the tests of this process.
pub fn moto() -> &'static Moto {
    static M: OnceLock<Moto> = OnceLock::new();
    M.get_or_init(|| {
        let ok = Command::new("python3")
            .args(["-c", "import moto.server, boto3, flask_cors"])
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "moto's server is not installed, and the Object Lock tests need it: run `bash scripts/install-test-servers.sh`"
        );
        let dir = std::env::temp_dir().join(unique("litevault-moto"));
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        let log = dir.join("moto.log");
        let process = Supervised::start(
            Path::new("python3"),
            &["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()],
            &log,
            Some(&dir),
        );
        wait_for("moto", &log, || port_open(port));
        Moto {
            port,
            _process: process,
        }
    })
}
