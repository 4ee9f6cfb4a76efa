//! `write`, `cat`, `update` and `verify` of `s3://bucket/key` URLs: the library's object-store
//! backend (feature `s3`), configured from the environment as the AWS tools are.
//!
//! Unlike a local file, an object is handled whole in memory, and `update` runs its command
//! again whenever another writer changed the object first (compare-and-swap), so the command
//! must only compute the new content.

use std::path::Path;

#[cfg(not(feature = "s3"))]
pub use disabled::{cat, supported, update, verify, write};
#[cfg(feature = "s3")]
pub use enabled::{cat, supported, update, verify, write};

/// Whether the command was given an object URL rather than a path.
pub fn is_url(path: &Path) -> bool {
    path.as_os_str().as_encoded_bytes().starts_with(b"s3://")
}

#[cfg(not(feature = "s3"))]
mod disabled {
    use std::ffi::OsString;
    use std::path::Path;

    use durafile::error::quote;

    use crate::WriteArgs;
    use crate::failure::Failure;

    const UNSUPPORTED: &str = "this durafile was built without object-storage support (rebuild with `cargo build --release --features s3`)";

    fn unsupported(url: &Path) -> Failure {
        Failure::new(format!("{}: {UNSUPPORTED}", quote(url)))
    }

    /// Refuses `url`: this build cannot reach object stores.
    pub fn supported(url: &Path) -> Result<(), Failure> {
        Err(unsupported(url))
    }

    pub fn write(url: &Path, _: &WriteArgs) -> Result<(), Failure> {
        Err(unsupported(url))
    }

    pub fn cat(url: &Path, _: bool) -> Result<(), Failure> {
        Err(unsupported(url))
    }

    pub fn update(url: &Path, _: &WriteArgs, _: &[OsString]) -> Result<(), Failure> {
        Err(unsupported(url))
    }

    pub fn verify(url: &Path) -> Result<durafile::checksum::Verification, durafile::Error> {
        Err(durafile::Error::Remote {
            step: durafile::Step::Resolve,
            path: url.to_path_buf(),
            reason: UNSUPPORTED.to_owned(),
        })
    }
}

#[cfg(feature = "s3")]
mod enabled {
    use durafile::error::quote;
    use durafile::remote::locate_object;
    use std::ffi::OsString;
    use std::io::{self, Read, Write};
    use std::path::Path;

    use crate::WriteArgs;
    use crate::failure::{self, Failure};

    /// Accepts `url`: the library's components take it in place of a directory.
    pub fn supported(_: &Path) -> Result<(), Failure> {
        Ok(())
    }

    /// `durafile write s3://...`: standard input, whole, as the new object.
    pub fn write(url: &Path, args: &WriteArgs) -> Result<(), Failure> {
        let (store, key) = locate_object(url)?;
        let mut bytes = Vec::new();
        io::stdin().read_to_end(&mut bytes).map_err(|e| {
            Failure::new(format!(
                "read standard input: {e} ({} is unchanged)",
                quote(url)
            ))
        })?;
        check_json(url, &bytes, args.json, "standard input")?;
        Ok(store.write(&key, &bytes)?)
    }

    /// `durafile cat s3://...`: the object, after verifying its SHA-256.
    pub fn cat(url: &Path, require_checksum: bool) -> Result<(), Failure> {
        let (store, key) = locate_object(url)?;
        let bytes = store.read(&key, require_checksum)?;
        crate::unless_broken_pipe(io::stdout().lock().write_all(&bytes))
            .map_err(|e| Failure::new(format!("cat {}: {e}", quote(url))))
    }

    /// `durafile update s3://... -- CMD`: CMD turns the current object into the new one, and runs
    /// again whenever another writer got there first.
    pub fn update(url: &Path, args: &WriteArgs, command: &[OsString]) -> Result<(), Failure> {
        let (store, key) = locate_object(url)?;
        store.update_with(&key, args.checksum, |current| {
            let output = run(url, command, current.unwrap_or_default())?;
            check_json(
                url,
                &output,
                args.json,
                &format!("the output of {}", crate::show(command)),
            )?;
            Ok((output, ()))
        })
    }

    /// Runs `command` with `input` on its standard input; its standard output.
    fn run(url: &Path, command: &[OsString], input: &[u8]) -> Result<Vec<u8>, Failure> {
        let mut child = crate::spawn_filter(command)?;
        let mut stdin = child.stdin.take().expect("piped");
        let output = std::thread::scope(|s| {
            let feeder = s.spawn(move || crate::unless_broken_pipe(stdin.write_all(input)));
            let output = child.wait_with_output();
            (feeder.join().expect("feeder thread does not panic"), output)
        });
        let fail = |e: io::Error| {
            Failure::new(format!(
                "update {}: running {}: {e}; {} is unchanged",
                quote(url),
                crate::show(command),
                quote(url)
            ))
        };
        let output = output.1.map_err(fail)?;
        if !output.status.success() {
            return Err(Failure::with_code(
                format!(
                    "update {}: {} failed ({}); {} is unchanged",
                    quote(url),
                    crate::show(command),
                    output.status,
                    quote(url)
                ),
                failure::exit_code(output.status),
            ));
        }
        Ok(output.stdout)
    }

    fn check_json(url: &Path, bytes: &[u8], json: bool, what: &str) -> Result<(), Failure> {
        if !json {
            return Ok(());
        }
        serde_json::from_slice::<serde::de::IgnoredAny>(bytes)
            .map(drop)
            .map_err(|e| {
                Failure::new(format!(
                    "write {}: {what} is not valid JSON: {e} ({} is unchanged)",
                    quote(url),
                    quote(url)
                ))
            })
    }

    /// `durafile verify s3://...`: the object against the SHA-256 it was written with.
    pub fn verify(url: &Path) -> Result<durafile::checksum::Verification, durafile::Error> {
        let (store, key) = locate_object(url)?;
        Ok(durafile::checksum::Verification::Match {
            digest: store.verify(&key)?,
            pending: false,
        })
    }
}
