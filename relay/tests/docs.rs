//! `docs/integration.md` is run, not just read: every `curl` line against a fresh relay, in
//! order, each answered 2xx; and its import example imported, with the counts it describes.
//! Every code block of it says who runs it (`e2e/django.test.mjs` runs the `run` and `file=`
//! blocks), or that it is an illustration.

mod common;

use common::*;
use serde_json::Value;

const GUIDE: &str = include_str!("../../docs/integration.md");

/// One `curl` line: method, path (after `$TALLY`), body.
fn parse_curl(line: &str) -> (String, String, Vec<u8>) {
    let method = line
        .split_once(" -X ")
        .map_or("GET", |(_, rest)| rest.split_whitespace().next().unwrap())
        .to_string();
    let url = line
        .split('"')
        .find(|p| p.starts_with("$TALLY"))
        .expect("a \"$TALLY/…\" URL");
    let path = url.trim_start_matches("$TALLY").to_string();
    let body = if let Some((_, rest)) = line.split_once(" -d '") {
        rest.as_bytes()[..rest.rfind('\'').unwrap()].to_vec()
    } else if line.contains("--data-binary @") {
        b"%PDF-1.4 a discharge letter".to_vec()
    } else {
        Vec::new()
    };
    (method, path, body)
}

#[tokio::test]
async fn every_curl_example_of_the_integration_guide_succeeds_in_order() {
    let relay = Binary::serve(&[], &UNLIMITED, None);
    let key = cli(relay.dir.path(), &["service-key", "create", "work-app"]);
    let auth = bearer(&key);
    let lines: Vec<&str> = GUIDE.lines().filter(|l| l.starts_with("curl ")).collect();
    assert!(lines.len() >= 8, "the guide shows every endpoint");
    for endpoint in [
        "/staff",
        "/conversations",
        "/participants",
        "/messages",
        "/attachments",
        "/unread",
    ] {
        assert!(
            lines.iter().any(|l| l.contains(endpoint)),
            "an example of {endpoint}"
        );
    }
    let mut last = Value::Null;
    for line in lines {
        let (method, path, body) = parse_curl(line);
        let headers = [
            ("Authorization", auth.as_str()),
            ("Content-Type", "application/json"),
        ];
        let (status, _, out) = http(relay.addr, &method, &path, &headers, &body).await;
        assert!(
            (200..300).contains(&status),
            "{method} {path}: {status} {}",
            String::from_utf8_lossy(&out)
        );
        last = serde_json::from_slice(&out).unwrap_or(Value::Null);
    }
    // The last example reads bob's counts: the group's notices and alice's direct message.
    assert_eq!(last["staff"], "bob");
    assert!(last["total"]["unread"].as_u64().unwrap() >= 2, "{last}");
}

#[tokio::test]
async fn the_import_example_imports_with_the_counts_the_guide_describes() {
    if sqlite_only("the import") {
        return;
    }
    let block = GUIDE
        .split("```jsonl import\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a jsonl example");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("export.jsonl");
    std::fs::write(&file, block).unwrap();
    let data = dir.path().join("data");
    let said = cli(&data, &["import", file.to_str().unwrap()]);
    assert!(said.contains("5 messages"), "{said}");
    // Alice read m5 but not m3 (a gap): both count for her, and the import says so.
    assert!(said.contains("1 people had gaps"), "{said}");
    let (_relay, addr) = spawn(&data, &UNLIMITED, None);
    let key = cli(&data, &["service-key", "create", "check"]);
    let auth = bearer(&key);
    let unread = |who: &'static str| {
        let auth = auth.clone();
        async move {
            let path = format!("/api/v1/service/staff/{who}/unread");
            let (_, _, out) = http(addr, "GET", &path, &[("Authorization", auth.as_str())], b"").await;
            serde_json::from_slice::<Value>(&out).unwrap()["total"].clone()
        }
    };
    assert_eq!(
        unread("alice").await,
        serde_json::json!({"unread": 2, "mentions": 1})
    );
    assert_eq!(
        unread("bob").await,
        serde_json::json!({"unread": 0, "mentions": 0})
    );
    assert_eq!(
        unread("carol").await,
        serde_json::json!({"unread": 0, "mentions": 0})
    );
}

/// Every fenced block of the guide is run by a test or marked as an illustration: `run` and
/// `file=PATH` (the Django quick start, `e2e/django.test.mjs`), `curl` and `import` (here).
#[test]
fn every_code_block_of_the_guide_is_run_by_a_test_or_marked_as_an_illustration() {
    let mut inside = false;
    let mut blocks = 0;
    for (n, line) in GUIDE.lines().enumerate() {
        let Some(info) = line.strip_prefix("```") else {
            continue;
        };
        if inside {
            assert!(info.is_empty(), "line {}: a block ends with a bare fence", n + 1);
            inside = false;
            continue;
        }
        inside = true;
        blocks += 1;
        let mut words = info.split_whitespace();
        let language = words.next().unwrap_or_default();
        assert!(!language.is_empty(), "line {}: a block names its language", n + 1);
        let marks: Vec<&str> = words.collect();
        let marked = marks
            .iter()
            .any(|m| ["run", "curl", "import", "illustration"].contains(m) || m.starts_with("file="));
        assert!(
            marked,
            "line {}: ```{info} is neither run by a test (run, file=PATH, curl, import) nor marked illustration",
            n + 1
        );
    }
    assert!(!inside, "an unclosed block");
    assert!(blocks >= 20, "{blocks} blocks");
    // Every curl line is in a `curl` block, and such blocks hold only curl lines.
    for block in GUIDE.split("```sh curl\n").skip(1) {
        let body = block.split("```").next().unwrap();
        assert!(body.lines().all(|l| l.starts_with("curl ")), "{body}");
    }
    let in_curl_blocks: usize = GUIDE
        .split("```sh curl\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap().lines().count())
        .sum();
    assert_eq!(
        in_curl_blocks,
        GUIDE.lines().filter(|l| l.starts_with("curl ")).count()
    );
}

/// `docs/guarantees.md` links each claim to a test by name: every test it names exists.
#[test]
fn every_test_the_guarantees_name_exists() {
    let guarantees = include_str!("../../docs/guarantees.md");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut sources = String::new();
    let mut dirs = vec![
        root.join("relay"),
        root.join("shared"),
        root.join("clients/python/tests"),
    ];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs" || e == "py") {
                sources.push_str(&std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    let named: Vec<&str> = guarantees
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|s| {
            s.matches('_').count() >= 3
                && s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        })
        .collect();
    assert!(named.len() >= 15, "{named:?}");
    for name in named {
        assert!(
            sources.contains(&format!("fn {name}(")) || sources.contains(&format!("def {name}(")),
            "docs/guarantees.md names {name}, which is no test"
        );
    }
}
