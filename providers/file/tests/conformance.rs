//! The shared provider conformance suite against the file provider, in every format.

use std::sync::Mutex;

use rangekeeper_provider::conformance::{Fault, Suite};
use rangekeeper_provider::{RangeSet, TargetConfig, cidr};
use rangekeeper_provider_file::FileProvider;

fn set(items: &[&str]) -> RangeSet {
    RangeSet::from_nets(items.iter().map(|s| cidr::parse(s).unwrap().net))
}

#[tokio::test]
async fn every_format_passes_the_conformance_suite() {
    let a = set(&["203.0.113.0/24", "198.51.100.7", "2001:db8::/48"]);
    let b = set(&["192.0.2.0/25", "10.0.0.0/8", "2001:db8:1::1"]);
    for format in ["plain", "nginx", "haproxy", "json"] {
        let dir = tempfile::tempdir().unwrap();
        // The reload command runs after every write, so its log counts the writes.
        let log = dir.path().join("writes.log");
        let fields = serde_json::json!({
            "path": "allow.conf",
            "format": format,
            "reload": ["sh", "-c", format!("echo x >> '{}'", log.display())],
        });
        let p = FileProvider::from_config(&TargetConfig {
            name: format!("conformance-{format}"),
            base_dir: dir.path().to_path_buf(),
            fields: fields.as_object().unwrap().clone(),
        })
        .unwrap();
        let writes = || {
            std::fs::read_to_string(&log)
                .map(|s| s.lines().count())
                .unwrap_or(0)
        };
        // The fault: the file is replaced by a directory, which the provider must refuse
        // to read as a config error (never as "no file yet: unrestricted").
        let file = dir.path().join("allow.conf");
        let saved = Mutex::new(None);
        let inject = || {
            *saved.lock().unwrap() = std::fs::read(&file).ok();
            std::fs::remove_file(&file).unwrap();
            std::fs::create_dir(&file).unwrap();
        };
        let clear = || {
            std::fs::remove_dir(&file).unwrap();
            std::fs::write(&file, saved.lock().unwrap().take().unwrap()).unwrap();
        };
        Suite::new(&p, &a, &b)
            .with_write_counter(&writes)
            .with_fault(Fault {
                name: "the file replaced by a directory",
                inject: &inject,
                clear: &clear,
                expect: "config",
            })
            .run()
            .await
            .unwrap_or_else(|e| panic!("format {format}: {e}"));
        assert_eq!(
            writes(),
            5,
            "format {format}: A, B, disable, A, B without waiting"
        );
    }
}
