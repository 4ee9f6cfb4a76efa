//! Moving bytes from a reader into an [`AtomicFile`], optionally checking on the way that
//! they are one JSON document, without ever holding the whole input in memory.

use std::io::{self, BufReader, Read, Write};

use durafile::AtomicFile;
use durafile::error::quote;
use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::failure::Failure;

/// Copies `src` (described as `what` in messages) into `out`; with `json`, fails unless the
/// bytes are exactly one JSON value, surrounding whitespace allowed. On failure `out` must
/// not be committed: dropping it removes the temp file and leaves the target untouched.
pub fn pump(
    src: &mut dyn Read,
    out: &mut AtomicFile,
    json: bool,
    what: &str,
) -> Result<(), Failure> {
    let mut tee = Tee {
        src,
        out,
        write_failed: false,
    };
    let result = if json {
        let reader = BufReader::with_capacity(64 * 1024, &mut tee);
        let mut de = serde_json::Deserializer::from_reader(reader);
        IgnoredAny::deserialize(&mut de).and_then(|_| de.end())
    } else {
        io::copy(&mut tee, &mut io::sink())
            .map(drop)
            .map_err(serde_json::Error::io)
    };
    let Err(e) = result else {
        return Ok(());
    };
    let target = quote(tee.out.path()).to_string();
    if !e.is_io() {
        return Err(Failure::new(format!(
            "write {target}: {what} is not valid JSON: {e} ({target} is unchanged)"
        )));
    }
    let e = io::Error::from(e);
    Err(Failure::new(if tee.write_failed {
        // durafile's own message: step, path, cause, advice.
        e.to_string()
    } else {
        format!("read {what}: {e} ({target} is unchanged)")
    }))
}

/// A reader that copies everything it reads into the atomic file.
struct Tee<'a> {
    src: &'a mut dyn Read,
    out: &'a mut AtomicFile,
    write_failed: bool,
}

impl Read for Tee<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.src.read(buf)?;
        if let Err(e) = self.out.write_all(&buf[..n]) {
            self.write_failed = true;
            return Err(e);
        }
        Ok(n)
    }
}
