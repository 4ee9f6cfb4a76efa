//! The object-storage backend: the same JSON components on S3-compatible storage, chosen by
//! an `s3://bucket/prefix` URL instead of a path (cargo feature `s3`).
//!
//! # What it guarantees, and how
//!
//! - **Every write is whole.** An object is replaced by one `PutObject`: a reader sees the old
//!   object or the new one, never a mix. There is no temp file, lock file or sidecar.
//! - **No lost update across hosts.** [`Store::update`] reads the object and its ETag, runs the
//!   closure, and writes with `If-Match: <etag>` (or `If-None-Match: *` when there was no
//!   object). When another writer got there first the store answers 412 (or 409, or a create
//!   conflict); durafile reads again and reruns the closure, with jittered exponential backoff,
//!   up to [`Store::max_attempts`] times. **The closure may run more than once** and must have
//!   no side effects beyond computing the new content.
//! - **Exactly once, even when a reply is lost.** Each attempt carries a random operation id,
//!   and each object keeps the ids of the last [`KEPT_OPS`] writes in its metadata
//!   (`x-amz-meta-durafile-ops`). When a PUT's outcome is unknown (the connection dropped, a
//!   timeout, a 5xx), the next read checks whether one of this update's ids is there: if so
//!   the update is done and the closure does not run again. After 20 such PUTs in a row the
//!   update stops and says its outcome is unknown. The HTTP client's own retries are
//!   off, so it never resends a conditional PUT behind durafile's back. The one gap: if more
//!   than [`KEPT_OPS`] other writes land between a lost reply and the re-read, a landed write
//!   can no longer be recognised.
//! - **ABA is harmless.** A document that returns to earlier content has an earlier ETag (S3's
//!   ETag is the body's MD5). A conditional PUT against it still applies the closure to the
//!   content that is current, so nothing is lost; and whether a write was ours is decided by
//!   operation ids, never by ETags.
//! - **Integrity end to end.** The SHA-256 of the body goes with every PUT twice: as
//!   `x-amz-checksum-sha256`, which AWS S3 verifies before it stores anything (moto, the test
//!   server, ignores it), and in the metadata (`x-amz-meta-durafile-sha256`), which durafile
//!   verifies on every read whatever the store does. A
//!   mismatch is an [`Error::ChecksumMismatch`], like a corrupted local file. An object
//!   without the digest (written by another tool) is read unverified, unless the options
//!   require checksums ([`crate::Options::checksum`]), when it is an [`Error::MissingChecksum`].
//! - **Refusing what cannot be kept.** Without conditional writes (`AWS_CONDITIONAL_PUT=disabled`)
//!   an update would be last-writer-wins; it fails at once with
//!   [`Error::ConditionalWritesUnavailable`] and writes nothing.
//!
//! # What a 200 from the store promises
//!
//! A successful PUT means the store has accepted the whole object (and checked its SHA-256);
//! AWS S3 then stores it redundantly across availability zones before it answers, and every
//! later read sees it (strong read-after-write consistency since December 2020). Other stores
//! promise what their documentation says: a single-node MinIO or a test server is as durable
//! as its one disk. durafile's [`crate::Durability`] levels do not apply remotely.
//!
//! # Limits
//!
//! - A store that silently ignores `If-Match`/`If-None-Match` cannot be told apart from one
//!   that honours them; use one that honours them (AWS S3 since 2024, R2, MinIO, Ceph RGW).
//! - No locks: [`crate::DataHandler::delete`] and pruning of old generations are plain
//!   deletes. Objects are read into memory whole.
//! - The store runs on a private single-threaded tokio runtime, so the API stays synchronous;
//!   do not call it from inside another tokio runtime's async task.
//!
//! # Configuration
//!
//! As the AWS tools and `object_store`: `AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`, `AWS_ALLOW_HTTP=true` for a
//! plain-http endpoint, `AWS_CONDITIONAL_PUT` (default `etag`), and every other
//! `AmazonS3ConfigKey` as `AWS_<KEY>`.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey, Checksum, S3ConditionalPut};
use object_store::path::Path as Key;
use object_store::{
    Attribute, AttributeValue, Attributes, GetResult, ObjectStore, ObjectStoreExt, PutMode,
    PutOptions, PutPayload, RetryConfig, UpdateVersion,
};
use sha2::{Digest, Sha256};

use crate::checksum::to_hex;
use crate::error::{Error, Result, Step};

/// The URL scheme that selects this backend.
pub const SCHEME: &str = "s3://";

/// How many recent writes' operation ids an object remembers (in about 1.1 KB of metadata,
/// inside S3's 2 KB limit).
pub const KEPT_OPS: usize = 64;

/// How many times an update reads, runs its closure and tries to write, by default.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 1000;

/// How many PUTs in a row may fail without an answer (connection lost, a 5xx, a 400) before an
/// update stops: lost replies are retried, a store that refuses every write is not.
const MAX_UNANSWERED: u32 = 20;

const META_SHA256: &str = "durafile-sha256";
const META_OPS: &str = "durafile-ops";

/// Whether `path` is an `s3://` URL rather than a local path.
///
/// # Examples
///
/// ```
/// assert!(durafile::remote::is_url("s3://bucket/state.json".as_ref()));
/// assert!(!durafile::remote::is_url("/var/lib/app/state.json".as_ref()));
/// ```
pub fn is_url(path: &Path) -> bool {
    path.as_os_str().as_bytes().starts_with(SCHEME.as_bytes())
}

/// Splits `s3://bucket/prefix` into the process-wide store of the bucket (configured from the
/// environment on first use) and the prefix, which is empty for a bucket's root.
///
/// # Examples
///
/// ```no_run
/// let (store, key) = durafile::remote::locate("s3://my-bucket/app/state.json".as_ref())?;
/// assert_eq!((store.bucket(), key.as_str()), ("my-bucket", "app/state.json"));
/// # Ok::<(), durafile::Error>(())
/// ```
///
/// # Errors
///
/// [`Error::Remote`] at [`Step::Resolve`] for a malformed URL or configuration.
pub fn locate(url: &Path) -> Result<(Arc<Store>, String)> {
    let (bucket, key) = split_url(url)?;
    Ok((Store::shared(bucket, url)?, key.to_owned()))
}

/// As [`locate`], for one object: the key cannot be empty.
///
/// ```no_run
/// let (store, key) = durafile::remote::locate_object("s3://my-bucket/a.json".as_ref())?;
/// let bytes = store.read(&key, true)?; // verified against its SHA-256
/// assert!(durafile::remote::locate_object("s3://my-bucket".as_ref()).is_err());
/// # Ok::<(), durafile::Error>(())
/// ```
pub fn locate_object(url: &Path) -> Result<(Arc<Store>, String)> {
    let (store, key) = locate(url)?;
    if key.is_empty() {
        return Err(Error::Remote {
            step: Step::Resolve,
            path: url.to_path_buf(),
            reason: "names a bucket, not an object (expected s3://BUCKET/KEY)".to_owned(),
        });
    }
    Ok((store, key))
}

fn split_url(url: &Path) -> Result<(&str, &str)> {
    let bad = |reason: &str| Error::Remote {
        step: Step::Resolve,
        path: url.to_path_buf(),
        reason: format!("{reason} (expected s3://BUCKET/KEY)"),
    };
    let rest = url
        .to_str()
        .ok_or_else(|| bad("the URL is not UTF-8"))?
        .strip_prefix(SCHEME)
        .ok_or_else(|| bad("not an s3:// URL"))?;
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(bad("no bucket"));
    }
    if key.split('/').any(|c| c == "." || c == "..") || key.contains("//") {
        return Err(bad("a key cannot contain `.`, `..` or empty components"));
    }
    Ok((bucket, key.trim_end_matches('/')))
}

/// One object as read: its verified content and what a conditional write against it needs.
#[derive(Debug)]
struct Object {
    bytes: Vec<u8>,
    version: UpdateVersion,
    ops: Vec<String>,
}

/// One bucket of an S3-compatible store, with its HTTP client and the runtime that drives it.
///
/// # Examples
///
/// ```no_run
/// // AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID, ... from the environment.
/// let store = durafile::remote::Store::from_env("my-bucket")?;
/// type AnyError = Box<dyn std::error::Error + Send + Sync>;
/// store.update("counter.json", |current| {
///     let n: u64 = current.map_or(Ok(0), serde_json::from_slice)?;
///     Ok::<_, AnyError>(serde_json::to_vec(&(n + 1))?)
/// })?;
/// # Ok::<(), AnyError>(())
/// ```
#[derive(Debug)]
pub struct Store {
    bucket: String,
    s3: AmazonS3,
    conditional: bool,
    max_attempts: u32,
    runtime: tokio::runtime::Runtime,
}

impl Store {
    /// The store of `bucket`, configured from the environment as the AWS tools are.
    ///
    /// # Errors
    ///
    /// [`Error::Remote`] when the configuration is incomplete or invalid.
    pub fn from_env(bucket: &str) -> Result<Store> {
        Store::with_config(bucket, std::iter::empty::<(&str, &str)>())
    }

    /// The store of `bucket`, configured from the environment and then from `config`, pairs of
    /// `object_store` configuration keys (`"aws_endpoint"`, `"aws_conditional_put"`, ...) and
    /// values.
    ///
    /// ```no_run
    /// use durafile::remote::Store;
    /// let minio = Store::with_config("state", [
    ///     ("aws_endpoint", "http://minio.internal:9000"),
    ///     ("aws_allow_http", "true"),
    /// ])?
    /// .max_attempts(50);
    /// assert!(minio.create("generation-1.json", b"{}")?);
    /// assert!(!minio.create("generation-1.json", b"{}")?, "create-only: one winner");
    /// # Ok::<(), durafile::Error>(())
    /// ```
    pub fn with_config<K: AsRef<str>, V: Into<String>>(
        bucket: &str,
        config: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Store> {
        let url = PathBuf::from(format!("{SCHEME}{bucket}"));
        let fail = |reason: String| Error::Remote {
            step: Step::Resolve,
            path: url.clone(),
            reason,
        };
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_checksum_algorithm(Checksum::SHA256)
            // Never resend a request behind our back: a resent conditional PUT whose first
            // copy landed comes back 412, and only the update loop can tell that apart.
            .with_retry(RetryConfig {
                max_retries: 0,
                ..RetryConfig::default()
            });
        for (key, value) in config {
            let key: AmazonS3ConfigKey = key
                .as_ref()
                .parse()
                .map_err(|e| fail(format!("configuration key: {e}")))?;
            builder = builder.with_config(key, value);
        }
        let conditional = builder.get_config_value(&AmazonS3ConfigKey::ConditionalPut)
            != Some(S3ConditionalPut::Disabled.to_string());
        let s3 = builder.build().map_err(|e| {
            fail(format!(
                "{e} (set AWS_REGION, AWS_ENDPOINT_URL and credentials)"
            ))
        })?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| fail(format!("start the I/O runtime: {e}")))?;
        Ok(Store {
            bucket: bucket.to_owned(),
            s3,
            conditional,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            runtime,
        })
    }

    /// The process-wide store of `bucket`, configured from the environment on first use, so
    /// that every component addressing the bucket shares one connection pool.
    fn shared(bucket: &str, url: &Path) -> Result<Arc<Store>> {
        static STORES: OnceLock<Mutex<HashMap<String, Arc<Store>>>> = OnceLock::new();
        let mut stores = STORES
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(store) = stores.get(bucket) {
            return Ok(store.clone());
        }
        let store = Arc::new(Store::from_env(bucket).map_err(|e| match e {
            Error::Remote { step, reason, .. } => Error::Remote {
                step,
                path: url.to_path_buf(),
                reason,
            },
            other => other,
        })?);
        stores.insert(bucket.to_owned(), store.clone());
        Ok(store)
    }

    /// Gives up an update after `n` (at least 1) attempts instead of
    /// [`DEFAULT_MAX_ATTEMPTS`].
    #[must_use]
    pub fn max_attempts(mut self, n: u32) -> Store {
        self.max_attempts = n.max(1);
        self
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// `s3://bucket/key`, for messages.
    pub fn url(&self, key: &str) -> PathBuf {
        PathBuf::from(format!("{SCHEME}{}/{key}", self.bucket))
    }

    fn err(&self, step: Step, key: &str, e: object_store::Error) -> Error {
        let path = self.url(key);
        match e {
            object_store::Error::NotFound { .. } => Error::io(
                step,
                path,
                io::Error::new(io::ErrorKind::NotFound, "no such object"),
            ),
            e => Error::Remote {
                step,
                path,
                reason: e.to_string(),
            },
        }
    }

    /// Reads `key`, verified against the SHA-256 it was written with; `None` when there is no
    /// such object. `require_checksum` refuses an object that carries no digest.
    ///
    /// # Errors
    ///
    /// [`Error::ChecksumMismatch`] for corrupt content, [`Error::MissingChecksum`], or the
    /// store's error at [`Step::Read`].
    pub fn get(&self, key: &str, require_checksum: bool) -> Result<Option<Vec<u8>>> {
        Ok(self.fetch(key, require_checksum)?.map(|o| o.bytes))
    }

    /// As [`Store::get`], with a missing object an error (NotFound at [`Step::Read`]).
    pub fn read(&self, key: &str, require_checksum: bool) -> Result<Vec<u8>> {
        self.get(key, require_checksum)?.ok_or_else(|| {
            Error::io(
                Step::Read,
                self.url(key),
                io::Error::new(io::ErrorKind::NotFound, "no such object"),
            )
        })
    }

    /// Checks `key` against the SHA-256 it was written with and returns that digest.
    ///
    /// # Errors
    ///
    /// [`Error::ChecksumMismatch`], [`Error::MissingChecksum`] for an object written without
    /// one, NotFound at [`Step::Read`], or the store's error.
    pub fn verify(&self, key: &str) -> Result<crate::checksum::Digest> {
        Ok(Sha256::digest(self.read(key, true)?).into())
    }

    fn fetch(&self, key: &str, require_checksum: bool) -> Result<Option<Object>> {
        let location = Key::from(key);
        let got = self.runtime.block_on(async {
            let result: GetResult = self.s3.get(&location).await?;
            let meta = result.meta.clone();
            let attributes = result.attributes.clone();
            let bytes = result.bytes().await?;
            Ok::<_, object_store::Error>((bytes, meta, attributes))
        });
        let (bytes, meta, attributes) = match got {
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.err(Step::Read, key, e)),
            Ok(got) => got,
        };
        let metadata = |name: &'static str| {
            attributes
                .get(&Attribute::Metadata(name.into()))
                .map(|v| v.as_ref().to_owned())
        };
        let actual = to_hex(&Sha256::digest(&bytes).into());
        match metadata(META_SHA256) {
            Some(expected) if !expected.eq_ignore_ascii_case(&actual) => {
                return Err(Error::ChecksumMismatch {
                    path: self.url(key),
                    expected: vec![expected],
                    actual,
                });
            }
            None if require_checksum => {
                return Err(Error::MissingChecksum {
                    path: self.url(key),
                    sidecar: self.url(&format!("{key} (metadata {META_SHA256})")),
                });
            }
            _ => {}
        }
        let ops = metadata(META_OPS)
            .map(|v| v.split(',').map(str::to_owned).collect())
            .unwrap_or_default();
        Ok(Some(Object {
            bytes: bytes.to_vec(),
            version: UpdateVersion {
                e_tag: meta.e_tag,
                version: meta.version,
            },
            ops,
        }))
    }

    /// One PUT of `bytes` with its digest and `ops` in the metadata.
    fn put(
        &self,
        key: &str,
        bytes: &[u8],
        mode: PutMode,
        ops: &[String],
    ) -> std::result::Result<(), object_store::Error> {
        let mut attributes = Attributes::new();
        attributes.insert(
            Attribute::Metadata(META_SHA256.into()),
            AttributeValue::from(to_hex(&Sha256::digest(bytes).into())),
        );
        if !ops.is_empty() {
            attributes.insert(
                Attribute::Metadata(META_OPS.into()),
                AttributeValue::from(ops.join(",")),
            );
        }
        attributes.insert(
            Attribute::ContentType,
            AttributeValue::from("application/octet-stream"),
        );
        let opts = PutOptions {
            mode,
            attributes,
            ..PutOptions::default()
        };
        let payload = PutPayload::from(bytes.to_vec());
        self.runtime
            .block_on(self.s3.put_opts(&Key::from(key), payload, opts))
            .map(drop)
    }

    /// Replaces `key` with `bytes`, whole: last writer wins, as a local [`crate::write()`].
    pub fn write(&self, key: &str, bytes: &[u8]) -> Result<()> {
        self.put(key, bytes, PutMode::Overwrite, &[op_id()])
            .map_err(|e| self.err(Step::Write, key, e))
    }

    /// Creates `key` with `bytes` only if no object has that key (`If-None-Match: *`); returns
    /// whether it did. Two hosts racing to create one key: exactly one gets `true`.
    ///
    /// # Errors
    ///
    /// [`Error::ConditionalWritesUnavailable`] when conditional writes are disabled.
    pub fn create(&self, key: &str, bytes: &[u8]) -> Result<bool> {
        self.require_conditional(key)?;
        match self.put(key, bytes, PutMode::Create, &[op_id()]) {
            Ok(()) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(self.err(Step::Write, key, e)),
        }
    }

    /// Removes `key`; returns whether there was an object.
    pub fn delete(&self, key: &str) -> Result<bool> {
        let location = Key::from(key);
        let existed = match self.runtime.block_on(self.s3.head(&location)) {
            Ok(_) => true,
            Err(object_store::Error::NotFound { .. }) => false,
            Err(e) => return Err(self.err(Step::Remove, key, e)),
        };
        match self.runtime.block_on(self.s3.delete(&location)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(existed),
            Err(e) => Err(self.err(Step::Remove, key, e)),
        }
    }

    /// The names (not full keys) of the objects directly under `prefix`, sorted.
    pub fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let location = (!prefix.is_empty()).then(|| Key::from(prefix));
        let listed = self
            .runtime
            .block_on(self.s3.list_with_delimiter(location.as_ref()))
            .map_err(|e| self.err(Step::ReadDir, prefix, e))?;
        let mut names: Vec<String> = listed
            .objects
            .into_iter()
            .filter_map(|o| o.location.filename().map(str::to_owned))
            .collect();
        names.sort();
        Ok(names)
    }

    /// Replaces `key` with what `f` makes of its current content (`None` when there is no
    /// object), with no lost update across processes and hosts.
    ///
    /// **`f` may run more than once**: whenever another writer changed the object between the
    /// read and the write, `f` runs again on the new content. It must have no side effects.
    /// When `f` fails, nothing is written and its error is returned.
    ///
    /// # Errors
    ///
    /// [`Error::ConditionalWritesUnavailable`] at once (nothing read or written) when the store
    /// is configured without conditional writes; [`Error::UpdateConflict`] after
    /// [`Store::max_attempts`] lost races; the store's error; or `f`'s.
    pub fn update<E, F>(&self, key: &str, mut f: F) -> Result<(), E>
    where
        F: FnMut(Option<&[u8]>) -> Result<Vec<u8>, E>,
        E: From<Error>,
    {
        self.update_with(key, false, |current| Ok((f(current)?, ())))
    }

    /// [`Store::update`] where `f` also returns a value, the one of the run that was written.
    pub fn update_with<R, E, F>(&self, key: &str, require_checksum: bool, mut f: F) -> Result<R, E>
    where
        F: FnMut(Option<&[u8]>) -> Result<(Vec<u8>, R), E>,
        E: From<Error>,
    {
        self.require_conditional(key)?;
        // Every attempt whose PUT may have landed, with the value its run returned.
        let mut maybe_landed: Vec<(String, R)> = Vec::new();
        let mut backoff = Duration::from_millis(4);
        let mut unanswered = 0;
        for _ in 0..self.max_attempts {
            let current = self
                .fetch(key, require_checksum)
                .map_err(|e| self.unknown_outcome(key, &maybe_landed, e))?;
            if let Some(object) = &current
                && let Some(i) = maybe_landed
                    .iter()
                    .position(|(id, _)| object.ops.contains(id))
            {
                return Ok(maybe_landed.swap_remove(i).1);
            }
            let (bytes, value) = f(current.as_ref().map(|o| o.bytes.as_slice()))?;
            let id = op_id();
            let (mode, mut ops) = match current {
                Some(o) => (PutMode::Update(o.version), o.ops),
                None => (PutMode::Create, Vec::new()),
            };
            ops.insert(0, id.clone());
            ops.truncate(KEPT_OPS);
            match self.put(key, &bytes, mode, &ops) {
                Ok(()) => return Ok(value),
                // Another writer won; this attempt certainly did not land.
                Err(
                    object_store::Error::Precondition { .. }
                    | object_store::Error::AlreadyExists { .. },
                ) => unanswered = 0,
                // A definite refusal: retrying cannot help.
                Err(
                    e @ (object_store::Error::NotImplemented { .. }
                    | object_store::Error::PermissionDenied { .. }
                    | object_store::Error::Unauthenticated { .. }
                    | object_store::Error::NotFound { .. }),
                ) => {
                    let e = self.err(Step::Write, key, e);
                    return Err(self.unknown_outcome(key, &maybe_landed, e).into());
                }
                // The request or its reply was lost: it may have landed. The next read says.
                Err(e) => {
                    maybe_landed.push((id, value));
                    unanswered += 1;
                    if unanswered == MAX_UNANSWERED {
                        let e = self.err(Step::Write, key, e);
                        return Err(self.unknown_outcome(key, &maybe_landed, e).into());
                    }
                }
            }
            std::thread::sleep(backoff.mul_f64(0.5 + random_unit()));
            backoff = (backoff * 2).min(Duration::from_millis(250));
        }
        let gave_up = Error::UpdateConflict {
            path: self.url(key),
            attempts: self.max_attempts,
        };
        Err(self.unknown_outcome(key, &maybe_landed, gave_up).into())
    }

    /// `e`, or when an earlier attempt's PUT may have landed unseen, an error that says the
    /// update may have been applied: never "nothing was written" when that is not known.
    fn unknown_outcome<R>(&self, key: &str, maybe_landed: &[(String, R)], e: Error) -> Error {
        if maybe_landed.is_empty() {
            return e;
        }
        Error::Remote {
            step: Step::Write,
            path: self.url(key),
            reason: format!(
                "{e}; the reply to an earlier attempt was lost, so this update may or may not \
                 have been applied (read the object to find out before retrying)"
            ),
        }
    }

    fn require_conditional(&self, key: &str) -> Result<()> {
        if self.conditional {
            Ok(())
        } else {
            Err(Error::ConditionalWritesUnavailable {
                path: self.url(key),
                reason: "conditional put is disabled in this configuration (AWS_CONDITIONAL_PUT=disabled)",
            })
        }
    }
}

/// A fresh operation id: 16 hex digits, unique across processes and hosts with overwhelming
/// probability (std's per-process random hash keys, the pid, the time and a counter).
fn op_id() -> String {
    format!("{:016x}", random_u64())
}

fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    RandomState::new().hash_one((
        std::process::id(),
        nanos,
        COUNTER.fetch_add(1, Ordering::Relaxed),
    ))
}

/// A pseudo-random number in [0, 1), for backoff jitter.
fn random_unit() -> f64 {
    (random_u64() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_bucket_and_key() {
        fn split(s: &str) -> std::result::Result<(&str, &str), String> {
            split_url(Path::new(s)).map_err(|e| e.to_string())
        }
        assert_eq!(split("s3://b/k.json"), Ok(("b", "k.json")));
        assert_eq!(split("s3://b/p/q/"), Ok(("b", "p/q")));
        assert_eq!(split("s3://b"), Ok(("b", "")));
        for bad in [
            "s3:///k",
            "s3://b/../k",
            "s3://b/a//k",
            "s3://b/./k",
            "/local",
        ] {
            assert!(split(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn operation_ids_do_not_repeat() {
        let ids: std::collections::HashSet<String> = (0..10_000).map(|_| op_id()).collect();
        assert_eq!(ids.len(), 10_000);
        assert!(ids.iter().all(|id| id.len() == 16));
    }
}
