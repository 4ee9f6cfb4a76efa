//! DataHandler: a directory of keyed JSON documents, with keys checked before they touch disk.
//!
//! Run: `cargo run -p durafile --example data_handler`

use durafile::{DataHandler, FileManager, Options};
use serde_json::json;

fn main() -> Result<(), durafile::Error> {
    let dir = tempfile::tempdir().expect("temp dir");
    let orders = DataHandler::open(dir.path().join("orders"), FileManager::new(Options::new()))?;

    orders.save("order-1001", &json!({"sku": "A-1", "qty": 2}))?;
    orders.save("order-1002", &json!({"sku": "B-7", "qty": 1}))?;
    orders.update("order-1001", |o: &mut serde_json::Value| {
        o["qty"] = json!(3);
        Ok::<_, durafile::Error>(())
    })?;
    println!("keys: {:?}", orders.list()?);
    println!(
        "order-1001: {}",
        orders.load::<serde_json::Value>("order-1001")?
    );

    for key in ["../../etc/passwd", ".hidden", "a/b"] {
        match orders.save(key, &json!({})) {
            Err(e) => println!("refused: {e}"),
            Ok(()) => unreachable!("{key} must be refused"),
        }
    }
    orders.delete("order-1002")?;
    println!("after delete: {:?}", orders.list()?);
    Ok(())
}
