//! Real database servers on loopback, started for a test: PostgreSQL and
//! MariaDB, each in a temporary directory, stopped when dropped.
//! `scripts/test.sh` installs them.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A TCP port on loopback that nothing listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn wait_for_port(port: u16, what: &str, child: &mut Child) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited ({status}) before listening on {port}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} did not listen on {port} within a minute");
}

fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A PostgreSQL 15 server with prepared transactions enabled.
pub struct Postgres {
    child: Child,
    _dir: tempfile::TempDir,
    pub port: u16,
}

fn pg_bin(name: &str) -> PathBuf {
    for v in ["17", "16", "15"] {
        let p = PathBuf::from(format!("/usr/lib/postgresql/{v}/bin/{name}"));
        if p.exists() {
            return p;
        }
    }
    panic!("PostgreSQL's {name} is not installed: run the tests with scripts/test.sh");
}

/// A command that runs as the `postgres` user when we are root (the
/// server refuses to run as root).
fn as_postgres(bin: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin);
        c
    } else {
        Command::new(bin)
    }
}

impl Postgres {
    pub fn start() -> Postgres {
        let dir = tempfile::Builder::new()
            .prefix("weir-pg-")
            .tempdir()
            .unwrap();
        let data = dir.path().join("data");
        if is_root() {
            run(
                Command::new("chown").arg("postgres").arg(dir.path()),
                "chown",
            );
        }
        run(
            as_postgres(&pg_bin("initdb"))
                .args(["-A", "trust", "-U", "weir", "-D"])
                .arg(&data),
            "initdb",
        );
        let port = free_port();
        let mut child = as_postgres(&pg_bin("postgres"))
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-k"])
            .arg(dir.path())
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "max_prepared_transactions=64",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start postgres");
        wait_for_port(port, "postgres", &mut child);
        let pg = Postgres {
            child,
            _dir: dir,
            port,
        };
        // Accepting connections may lag listening a little.
        let start = Instant::now();
        while pg.try_sql("SELECT 1").is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "postgres never answered"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        pg
    }

    pub fn url(&self) -> String {
        format!("postgres://weir@127.0.0.1:{}/postgres", self.port)
    }

    fn try_sql(&self, sql: &str) -> Result<String, String> {
        let out = Command::new(pg_bin("psql"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args([
                "-U",
                "weir",
                "-d",
                "postgres",
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ])
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Runs SQL; returns rows as lines of `|`-separated fields.
    pub fn sql(&self, sql: &str) -> String {
        self.try_sql(sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A MariaDB server (no authentication, loopback only).
pub struct MariaDb {
    child: Child,
    _dir: tempfile::TempDir,
    pub port: u16,
}

impl MariaDb {
    pub fn start() -> MariaDb {
        let dir = tempfile::Builder::new()
            .prefix("weir-mariadb-")
            .tempdir()
            .unwrap();
        let data = dir.path().join("data");
        let install = ["mariadb-install-db", "mysql_install_db"]
            .into_iter()
            .find(|b| {
                Command::new("which")
                    .arg(b)
                    .output()
                    .is_ok_and(|o| o.status.success())
            })
            .expect("MariaDB is not installed: run the tests with scripts/test.sh");
        let mut c = Command::new(install);
        c.arg(format!("--datadir={}", data.display()))
            .args(["--auth-root-authentication-method=normal", "--skip-test-db"]);
        if is_root() {
            c.arg("--user=root");
        }
        run(&mut c, "mariadb-install-db");
        let port = free_port();
        let mut c = Command::new("mariadbd");
        c.arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", dir.path().join("sock").display()))
            .arg(format!("--pid-file={}", dir.path().join("pid").display()))
            .args([
                &format!("--port={port}"),
                "--bind-address=127.0.0.1",
                "--skip-grant-tables",
                "--innodb-flush-log-at-trx-commit=2",
                "--innodb-buffer-pool-size=64M",
                "--skip-log-bin",
            ]);
        if is_root() {
            c.arg("--user=root");
        }
        let mut child = c
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mariadbd");
        wait_for_port(port, "mariadbd", &mut child);
        let db = MariaDb {
            child,
            _dir: dir,
            port,
        };
        db.client("CREATE DATABASE IF NOT EXISTS weir");
        db
    }

    fn client(&self, sql: &str) -> String {
        let out = Command::new("mariadb")
            .args([
                "-h",
                "127.0.0.1",
                "-P",
                &self.port.to_string(),
                "-u",
                "root",
                "-N",
                "-B",
            ])
            .args(["-e", sql])
            .output()
            .expect("mariadb client");
        assert!(
            out.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn url(&self) -> String {
        format!("mysql://root@127.0.0.1:{}/weir", self.port)
    }

    /// Runs SQL in database `weir`; returns rows as tab-separated lines.
    pub fn sql(&self, sql: &str) -> String {
        self.client(&format!("USE weir; {sql}"))
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A record read back from a topic: its value and headers.
pub type TopicRecord = (Vec<u8>, Vec<(String, Vec<u8>)>);

/// A Kafka-protocol broker for a test: librdkafka's mock cluster in this
/// process, or the broker at `WEIR_KAFKA_BOOTSTRAP` when that is set (so
/// users with Kafka can check transactions for real).
pub struct Kafka {
    mock: Option<rdkafka::mocking::MockCluster<'static, rdkafka::producer::DefaultProducerContext>>,
    servers: String,
}

impl Kafka {
    pub fn start() -> Kafka {
        if let Ok(servers) = std::env::var("WEIR_KAFKA_BOOTSTRAP") {
            return Kafka {
                mock: None,
                servers,
            };
        }
        let mock = rdkafka::mocking::MockCluster::new(3).expect("librdkafka mock cluster");
        let servers = mock.bootstrap_servers();
        Kafka {
            mock: Some(mock),
            servers,
        }
    }

    pub fn servers(&self) -> &str {
        &self.servers
    }

    /// Whether transactions are for real (not the mock's).
    pub fn real(&self) -> bool {
        self.mock.is_none()
    }

    /// A new topic with a name unique to this run.
    pub fn topic(&self, name: &str, partitions: i32) -> String {
        let name = format!("{name}-{:08x}", rand::random::<u32>());
        match &self.mock {
            Some(m) => m.create_topic(&name, partitions, 1).expect("create topic"),
            None => {
                use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
                use rdkafka::client::DefaultClientContext;
                let admin: AdminClient<DefaultClientContext> = rdkafka::ClientConfig::new()
                    .set("bootstrap.servers", &self.servers)
                    .create()
                    .expect("admin client");
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(admin.create_topics(
                    &[NewTopic::new(&name, partitions, TopicReplication::Fixed(1))],
                    &AdminOptions::new(),
                ))
                .expect("create topic");
            }
        }
        name
    }

    /// Sends values (with keys `k<i>`) round-robin over `partitions`.
    pub fn produce(&self, topic: &str, values: &[Vec<u8>], partitions: i32) {
        use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
        let p: ThreadedProducer<DefaultProducerContext> = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &self.servers)
            .set("linger.ms", "5")
            .create()
            .unwrap();
        for (i, v) in values.iter().enumerate() {
            let key = format!("k{i}");
            loop {
                let r = BaseRecord::to(topic)
                    .key(&key)
                    .payload(v)
                    .partition(i as i32 % partitions);
                match p.send(r) {
                    Ok(()) => break,
                    Err(_) => {
                        p.poll(Duration::from_millis(10));
                    }
                }
            }
        }
        p.flush(Duration::from_secs(60)).unwrap();
    }

    /// Every record of a topic: (value, headers), in partition order.
    pub fn read(&self, topic: &str) -> Vec<TopicRecord> {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        use rdkafka::message::{Headers, Message};
        let c: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &self.servers)
            .set("group.id", format!("reader-{:08x}", rand::random::<u32>()))
            .set("isolation.level", "read_committed")
            .create()
            .unwrap();
        let md = c
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .unwrap();
        let mut tpl = rdkafka::TopicPartitionList::new();
        let mut ends = Vec::new();
        for t in md.topics() {
            for p in t.partitions() {
                let (_, high) = c
                    .fetch_watermarks(topic, p.id(), Duration::from_secs(10))
                    .unwrap();
                ends.push((p.id(), high));
                tpl.add_partition_offset(topic, p.id(), rdkafka::Offset::Beginning)
                    .unwrap();
            }
        }
        c.assign(&tpl).unwrap();
        let mut out = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut quiet = 0;
        while quiet < 10 && Instant::now() < deadline {
            match c.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    quiet = 0;
                    let headers = m
                        .headers()
                        .map(|h| {
                            h.iter()
                                .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                                .collect()
                        })
                        .unwrap_or_default();
                    out.push((m.payload().unwrap_or_default().to_vec(), headers));
                }
                _ => quiet += 1,
            }
        }
        out
    }
}

/// The SQL upsert sink's connector for a `(word, n)` table keyed by word,
/// with `more` options.
pub fn word_count_sink(
    url: &str,
    table: &str,
    exactly_once: bool,
    more: &[(&str, &str)],
) -> weir_core::plan::Connector {
    let guarantee = if exactly_once {
        "exactly-once"
    } else {
        "at-least-once"
    };
    let options: Vec<(String, String)> = [
        ("url", url),
        ("table-name", table),
        ("columns", "word,n"),
        ("primary-key", "word"),
        ("sink.delivery-guarantee", guarantee),
    ]
    .iter()
    .chain(more)
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    weir_core::plan::Connector {
        kind: "jdbc".into(),
        options,
    }
}
