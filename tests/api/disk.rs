//! A full disk: orders are refused with 503 `storage_unavailable` before any
//! charge (a charge whose order then cannot be stored is refunded at once:
//! `faults.rs`, with an injected failure), no answer names a file,
//! `/readyz` is 503 while the store cannot write, and crema takes orders again
//! by itself once space returns — with nothing acknowledged lost.
//!
//! Needs a small file system of its own: a tmpfs, mounted when the tests run
//! as root; otherwise the test says so and passes without running.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::helpers::{spawn_app_with, wait_until};

/// A tmpfs mounted for one test, unmounted when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Option<SmallDisk> {
        // SAFETY: geteuid has no preconditions and touches no memory of ours.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: mounting a small tmpfs needs root");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status();
        match mounted {
            Ok(status) if status.success() => Some(SmallDisk { dir }),
            other => {
                eprintln!("skipped: cannot mount a tmpfs here ({other:?})");
                None
            }
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn filler(&self) -> PathBuf {
        self.dir.path().join("filler")
    }

    /// Writes a file until the file system is full.
    fn fill(&self) {
        use std::io::Write;
        let mut file = std::fs::File::create(self.filler()).unwrap();
        let block = vec![0u8; 1 << 20];
        while file.write_all(&block).is_ok() {}
        let _ = file.sync_all();
    }

    fn free(&self) {
        std::fs::remove_file(self.filler()).unwrap();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

async fn problem(response: reqwest::Response) -> (u16, Option<String>, Value) {
    let status = response.status().as_u16();
    let retry_after = response.headers().get("retry-after").map(|value| value.to_str().unwrap().to_owned());
    (status, retry_after, response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_orders_honestly_and_crema_resumes_when_space_returns() {
    // RocksDB resumes once 64 MiB (two write buffers) are free again: the
    // disk must be bigger than that for "space returns" to be reachable.
    let Some(disk) = SmallDisk::mount("160m") else { return };
    let data = disk.path().join("data");
    let app = spawn_app_with(|settings| {
        settings.store.data_dir = data.clone();
        // Else the WAL's preallocated space takes writes for a long while after the disk is full.
        settings.store.wal_preallocate = false;
    })
    .await;
    let before = app.place_ok(&[("americano", 1)]).await;

    // The disk fills. A write may still fit in the last page of the WAL, so
    // the first refusal may come an order or two later.
    disk.fill();
    let refused = wait_until(Duration::from_secs(10), || async {
        let (status, retry_after, body) = problem(app.place(&[("espresso", 1)]).await).await;
        (status == 503).then(|| {
            assert_eq!(retry_after.as_deref(), Some("5"));
            body
        })
    })
    .await
    .expect("a full disk refuses new orders");
    assert_eq!(refused["code"], "storage_unavailable");
    let text = refused.to_string();
    assert!(!text.contains(disk.path().to_str().unwrap()) && !text.contains(".log"), "no file names: {text}");
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 503);
    assert_eq!(ready.json::<Value>().await.unwrap()["status"], "storage_unavailable");
    let captured = app.stats().await["payment"]["captured"].as_u64().unwrap();
    assert_eq!(app.place(&[("espresso", 1)]).await.status(), 503);
    assert_eq!(app.stats().await["payment"]["captured"], captured, "refused before any charge");

    disk.free();
    let resumed = wait_until(Duration::from_secs(30), || async { (app.get("/readyz").await.status() == 200).then_some(()) }).await;
    assert!(resumed.is_some(), "crema resumes by itself once space returns");
    let after = app.place_ok(&[("espresso", 1)]).await;
    for order in [&before, &after] {
        let id = order["id"].as_str().unwrap();
        app.wait_for(id, "ready", Duration::from_secs(20)).await;
    }
    let dir = app.shutdown().await;
    drop(dir);
    check_reopens(&data).await;
}

/// Everything acknowledged is on disk: the store reopens with the orders.
async fn check_reopens(data: &Path) {
    let store = crema::persistence::Store::open(data).unwrap();
    let mut orders = 0;
    store.for_each_order(|_| orders += 1).unwrap();
    assert!(orders >= 2, "{orders} orders on disk");
}

