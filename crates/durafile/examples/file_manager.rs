//! FileManager: typed JSON files, with a lost-update-free update from many threads.
//!
//! Run: `cargo run -p durafile --example file_manager`

use std::thread;

use durafile::{Durability, FileManager, Options};
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Serialize, Deserialize)]
struct Settings {
    theme: String,
    launches: u64,
}

fn main() -> Result<(), durafile::Error> {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("settings.json");
    let files = FileManager::new(
        Options::new()
            .durability(Durability::Consistent)
            .checksum(true),
    )
    .pretty(true);

    files.write_json_file(
        &path,
        &Settings {
            theme: "dark".into(),
            launches: 0,
        },
    )?;

    // Eight threads, a hundred launches each: the lock makes every update count.
    thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                for _ in 0..100 {
                    files
                        .update_json_file(&path, |st: &mut Settings| {
                            st.launches += 1;
                            Ok::<_, durafile::Error>(())
                        })
                        .expect("update");
                }
            });
        }
    });

    let settings: Settings = files.read_json_file(&path)?;
    println!("{settings:?}  (expected 800 launches)");
    println!(
        "{}",
        std::fs::read_to_string(dir.path().join("settings.json.sha256")).unwrap()
    );
    Ok(())
}
