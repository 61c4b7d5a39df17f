//! A full disk, on a real small filesystem (a tmpfs the test mounts): writes are refused with a
//! typed `unavailable` and change nothing, reads, sessions and new connections go on, writing
//! resumes by itself once there is room, and after a `kill -9` every acknowledged message is
//! there exactly once (the refused ones only once retried with their client ids).

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use tally_shared::ErrorCode;

/// A tmpfs of `kib` KiB, unmounted when dropped; `None` where mounting is not allowed (the
/// test then says it was skipped).
struct SmallDisk {
    at: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(kib: u64) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().ok()?;
        let at = dir.path().join("disk");
        std::fs::create_dir(&at).ok()?;
        let mounted = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={kib}k"),
                "tally-test",
                at.to_str()?,
            ])
            .stderr(std::process::Stdio::null())
            .status()
            .ok()?
            .success();
        mounted.then_some(SmallDisk { at, _dir: dir })
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.at)
            .status();
    }
}

/// Fills the filesystem of `dir` with a file until it is full, then gives back `room` bytes.
fn fill(dir: &Path, room: u64) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    let mut written = 0u64;
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
            Err(e) => panic!("filling: {e}"),
        }
    }
    f.set_len(written.saturating_sub(room)).unwrap();
    f.sync_all().unwrap();
    path
}

#[tokio::test]
async fn a_full_disk_refuses_writes_keeps_serving_and_loses_nothing_acknowledged() {
    if sqlite_only("a full disk") {
        return;
    }
    let Some(disk) = SmallDisk::mount(24 * 1024) else {
        eprintln!("skipped: mounting a small tmpfs needs root (CAP_SYS_ADMIN)");
        return;
    };
    let data = disk.at.join("data");
    add_staff(&data, &["alice", "bob", "carol"]);
    let (child, addr) = spawn(&data, &UNLIMITED, None);
    let keys = keys_for(&data);
    let token = |who: &str| keys.mint(&sid(who), Duration::from_secs(600));
    let mut alice = Client::connect(addr, &token("alice"), None).await;
    let mut bob = Client::connect(addr, &token("bob"), None).await;
    let direct = alice.direct_with("bob").await;
    bob.sync().await;

    // Room for a few messages, then none.
    let filler = fill(&disk.at, 192 * 1024);
    let body = "x".repeat(8 * 1024);
    let mut acked = Vec::new();
    let mut refused = Vec::new();
    for i in 0..400 {
        let id = format!("m-{i}");
        match alice.call(send(direct, &id, &body)).await {
            Ok(_) => acked.push(id),
            Err(e) => {
                assert_eq!(e.code, ErrorCode::Unavailable, "{e:?}");
                assert!(e.message.contains("disk is full"), "{}", e.message);
                refused.push(id);
                if refused.len() == 3 {
                    break;
                }
            }
        }
    }
    assert!(
        !acked.is_empty() && refused.len() == 3,
        "acked {}, refused {refused:?}",
        acked.len()
    );
    assert!(metric_at(addr, "tally_storage_failures_total").await >= 1);

    // Still serving: the connections stay open, a history page reads, a new tab connects and
    // gets a snapshot with the right count.
    let (status, _, _) = http(
        addr,
        "GET",
        &format!("/api/conversations/{direct}/messages"),
        &[("Authorization", &bearer(&token("bob")))],
        b"",
    )
    .await;
    assert_eq!(status, 200);
    let carol = Client::connect(addr, &token("carol"), None).await;
    drop(carol);
    let bob_again = Client::connect(addr, &token("bob"), None).await;
    assert_eq!(bob_again.store.counts(direct).unread as usize, acked.len());
    drop(bob_again);
    bob.sync().await;
    assert_eq!(
        bob.store.counts(direct).unread as usize,
        acked.len(),
        "bob saw exactly the acknowledged ones"
    );

    // Room again: the refused sends, retried with their client ids, go through by themselves.
    std::fs::remove_file(&filler).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    for id in &refused {
        loop {
            match alice.call(send(direct, id, &body)).await {
                Ok(_) => break,
                Err(e) if e.code == ErrorCode::Unavailable && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(e) => panic!("{id} after room came back: {e:?}"),
            }
        }
    }
    bob.sync().await;
    let expected = acked.len() + refused.len();
    assert_eq!(bob.store.counts(direct).unread as usize, expected);

    // Killed and restarted: every acknowledged message exactly once, in order.
    drop(alice);
    drop(bob);
    drop(child);
    let (_child, addr) = spawn(&data, &UNLIMITED, None);
    let stored = all_messages(addr, &token("bob"), direct).await;
    let ids: Vec<&str> = stored.iter().filter_map(|m| m["client_id"].as_str()).collect();
    let want: Vec<&str> = acked.iter().chain(&refused).map(String::as_str).collect();
    assert_eq!(ids, want);
    let bob = Client::connect(addr, &token("bob"), None).await;
    assert_eq!(bob.store.counts(direct).unread as usize, expected);
}
