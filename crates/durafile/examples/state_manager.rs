//! StateManager: an application state in generations that survives a damaged save.
//!
//! Run: `cargo run -p durafile --example state_manager [DIR]`, then try
//! `durafile state history DIR` and `durafile state show DIR`.

use durafile::{FileManager, Options, StateManager};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
struct Editor {
    open_files: Vec<String>,
    cursor: (u32, u32),
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = match std::env::args_os().nth(1) {
        Some(dir) => std::path::PathBuf::from(dir),
        None => std::env::temp_dir().join(format!("durafile-state-{}", std::process::id())),
    };
    let states = StateManager::open(&dir, FileManager::new(Options::new().checksum(true)))?;

    for (i, file) in ["main.rs", "lib.rs", "README.md"].iter().enumerate() {
        let open_files = ["main.rs", "lib.rs", "README.md"][..=i]
            .iter()
            .map(|f| f.to_string());
        let n = states.save_current_state(&Editor {
            open_files: open_files.collect(),
            cursor: (i as u32 * 10, 0),
        })?;
        println!("saved generation {n} (opened {file})");
    }

    // Something damages the newest generation on disk.
    let newest = states.history()?[0].clone();
    let mut bytes = std::fs::read(&newest.path)?;
    bytes[3] ^= 0x40;
    std::fs::write(&newest.path, bytes)?;

    let loaded = states.load_current_state::<Editor>()?.expect("saved");
    for (generation, why) in &loaded.skipped {
        println!("generation {generation} is damaged: {why}");
    }
    println!(
        "loaded generation {}: {:?}",
        loaded.generation, loaded.state
    );

    let restored = states.rollback(loaded.generation)?;
    println!("rolled back: generation {restored} is now current");
    println!("state directory: {}", dir.display());
    Ok(())
}
