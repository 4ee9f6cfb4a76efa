//! Hashing new content while it is written: inline for small content, on one persistent
//! thread for large content.
//!
//! # Guarantees
//!
//! - The digest covers exactly the bytes given to [`ContentHasher::update`], in order: one
//!   thread hashes them, taken from a first-in first-out channel, and content hashed inline
//!   before the thread starts is carried into it as the hasher's state.
//! - Small content never pays for a thread: below [`THREAD_MIN`] bytes in all it is hashed
//!   inline, as it is written.
//! - Memory stays bounded: at most [`BUFFERS`] pieces of [`PIECE`] bytes exist, allocated
//!   once and recycled between the writer and the thread, however long the stream.
//! - A failure or panic of the hashing thread is never a wrong digest:
//!   [`ContentHasher::finish`] returns it as an error (naming the panic), and nothing fed
//!   after it is hashed out of order.
//! - Dropping a [`ContentHasher`] ends its thread before it returns: the channel closes, the
//!   thread hashes what is queued (at most [`BUFFERS`] pieces) and exits, and the drop joins
//!   it. It cannot hang: the thread only ever waits on that channel.
//!
//! # Why a persistent thread
//!
//! A thread started and joined for each large piece (what `atomic` did before) costs a thread
//! start per piece, keeps writer and hash in lockstep (each write waited for its own piece's
//! hash), and never helped content written in small pieces (`io::copy` writes 8 KiB at a
//! time). Here the writer copies each piece into a recycled buffer (a copy costs a fraction
//! of SHA-256) and goes on writing while the thread hashes; it waits only when the thread is
//! [`BUFFERS`] pieces behind. The tail still queued at the commit is hashed while the commit
//! fsyncs the file. The overlap needs a free core: on a machine whose cores are all busy the
//! two threads take turns, and the stream costs the write plus the hash (BENCHMARKS.md).

use std::io;
use std::mem;
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::thread::{self, JoinHandle};

use crate::checksum::{Digest, Hasher};
use crate::fault;

/// Content at least this large (in all) is hashed on a second thread: starting one costs tens
/// of microseconds, under a tenth of hashing this much.
pub(crate) const THREAD_MIN: u64 = 1 << 20;

/// The bytes handed to the hashing thread at a time: large enough that the channel's cost
/// per piece is negligible, small enough that the tail left at the commit is short.
const PIECE: usize = 1 << 20;

/// How many pieces exist at most: one being filled, the rest queued or being hashed.
const BUFFERS: usize = 4;

/// Hashes content written in pieces, switching to a thread of its own once it is large.
#[derive(Debug)]
pub(crate) enum ContentHasher {
    /// Hashing on the writer's thread; the count of bytes hashed so far.
    Inline(Hasher, u64),
    /// Hashing on a thread of its own.
    Thread(Background),
}

impl Default for ContentHasher {
    fn default() -> ContentHasher {
        ContentHasher::Inline(Hasher::default(), 0)
    }
}

impl ContentHasher {
    /// Whether a piece of `len` bytes about to be written goes to the hashing thread,
    /// starting it when the content reaches [`THREAD_MIN`]. If the thread cannot be started,
    /// hashing stays inline (slower, never wrong).
    pub(crate) fn offload(&mut self, len: usize) -> bool {
        match self {
            ContentHasher::Thread(_) => true,
            ContentHasher::Inline(hasher, hashed) => {
                if *hashed + len as u64 >= THREAD_MIN
                    && let Ok(background) = Background::start(hasher.clone())
                {
                    *self = ContentHasher::Thread(background);
                    return true;
                }
                false
            }
        }
    }

    /// Hashes `bytes` next (or hands them to the thread).
    pub(crate) fn update(&mut self, bytes: &[u8]) {
        match self {
            ContentHasher::Inline(hasher, hashed) => {
                hasher.update(bytes);
                *hashed += bytes.len() as u64;
            }
            ContentHasher::Thread(background) => background.update(bytes),
        }
    }

    /// The digest of everything given to [`ContentHasher::update`].
    ///
    /// # Errors
    ///
    /// When the hashing thread failed or panicked: the digest would not cover the content.
    pub(crate) fn finish(self) -> io::Result<Digest> {
        match self {
            ContentHasher::Inline(hasher, _) => Ok(hasher.finish()),
            ContentHasher::Thread(background) => background.finish(),
        }
    }
}

/// The writer's side of the hashing thread.
#[derive(Debug)]
pub(crate) struct Background {
    /// The piece being filled, sent when full.
    filling: Vec<u8>,
    /// Pieces to hash, in order; `None` once the thread is gone (it failed or panicked), after
    /// which nothing more is sent and [`Background::finish`] reports why.
    work: Option<SyncSender<Vec<u8>>>,
    /// Pieces hashed, emptied, coming back to be filled again.
    free: Receiver<Vec<u8>>,
    /// How many pieces have been allocated, at most [`BUFFERS`].
    allocated: usize,
    /// `None` only once joined.
    thread: Option<JoinHandle<io::Result<Hasher>>>,
}

impl Background {
    /// Starts the thread, carrying on from `hasher`'s state.
    fn start(hasher: Hasher) -> io::Result<Background> {
        let (work, pieces) = mpsc::sync_channel(BUFFERS);
        let (recycle, free) = mpsc::channel();
        let thread = thread::Builder::new()
            .name("durafile-hash".into())
            .spawn(move || hash_pieces(hasher, pieces, recycle))?;
        Ok(Background {
            filling: Vec::with_capacity(PIECE),
            work: Some(work),
            free,
            allocated: 1,
            thread: Some(thread),
        })
    }

    fn update(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() && self.work.is_some() {
            let (now, rest) = bytes.split_at(bytes.len().min(PIECE - self.filling.len()));
            self.filling.extend_from_slice(now);
            bytes = rest;
            if self.filling.len() == PIECE {
                self.send();
            }
        }
    }

    /// Sends the full piece and takes an empty one: a recycled one if the thread has one
    /// back, a new one while fewer than [`BUFFERS`] exist, else the next one it gives back.
    fn send(&mut self) {
        let Some(work) = &self.work else { return };
        let full = mem::take(&mut self.filling);
        let next = match work.send(full) {
            Err(_) => None,
            Ok(()) => match self.free.try_recv() {
                Ok(piece) => Some(piece),
                Err(_) if self.allocated < BUFFERS => {
                    self.allocated += 1;
                    Some(Vec::with_capacity(PIECE))
                }
                Err(_) => self.free.recv().ok(),
            },
        };
        match next {
            Some(piece) => self.filling = piece,
            // The thread is gone: its result says why.
            None => self.work = None,
        }
    }

    fn finish(mut self) -> io::Result<Digest> {
        let complete = match self.work.take() {
            Some(work) => {
                self.filling.is_empty() || work.send(mem::take(&mut self.filling)).is_ok()
            }
            None => false,
        };
        // Dropping `work` (above) ends the thread's loop once it has hashed every piece.
        let Some(thread) = self.thread.take() else {
            unreachable!("the thread is joined only by finish or drop, each consuming self")
        };
        let hasher = match thread.join() {
            Ok(result) => result?,
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                return Err(io::Error::other(format!(
                    "the thread hashing the new content panicked ({what}), so its checksum is unknown; write it again"
                )));
            }
        };
        // The thread ends early only by failing, so this holds; checked anyway, since a
        // digest of part of the content would be a false alarm on the next read.
        if !complete {
            return Err(io::Error::other(
                "the thread hashing the new content stopped before its end, so its checksum is unknown; write it again",
            ));
        }
        Ok(hasher.finish())
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        // Closing the channel ends the thread once it has hashed what is queued.
        self.work = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The hashing thread: hashes each piece in order and gives it back emptied.
fn hash_pieces(
    mut hasher: Hasher,
    pieces: Receiver<Vec<u8>>,
    recycle: Sender<Vec<u8>>,
) -> io::Result<Hasher> {
    for mut piece in pieces {
        fault::point("durafile::hash")?;
        hasher.update(&piece);
        piece.clear();
        // The writer may have stopped taking pieces back (it is finishing or dropped).
        let _ = recycle.send(piece);
    }
    Ok(hasher)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::time::{Duration, Instant};

    /// The tests count the process's hashing threads, so they take turns.
    static SERIAL: Mutex<()> = Mutex::new(());

    fn hashing_threads() -> usize {
        std::fs::read_dir("/proc/self/task")
            .map(|tasks| {
                tasks
                    .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
                    .filter(|comm| comm.trim() == "durafile-hash")
                    .count()
            })
            .unwrap_or(0)
    }

    /// Waits (up to 5 s) until `n` hashing threads exist: a new thread names itself after it
    /// starts, and the kernel forgets a joined one's task shortly after the join.
    fn hashing_threads_become(n: usize) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        while hashing_threads() != n {
            if Instant::now() > deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(10));
        }
        true
    }

    fn content(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 4096) as u8).collect()
    }

    fn one_shot(bytes: &[u8]) -> Digest {
        let mut h = Hasher::default();
        h.update(bytes);
        h.finish()
    }

    /// Feeds `bytes` the way `AtomicFile::write` does, in pieces of `sizes` (cycled).
    fn hashed_in_pieces(bytes: &[u8], sizes: &[usize]) -> (Digest, bool) {
        let mut hasher = ContentHasher::default();
        let mut rest = bytes;
        let mut threaded = false;
        for &size in sizes.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (piece, next) = rest.split_at(size.min(rest.len()));
            threaded |= hasher.offload(piece.len());
            hasher.update(piece);
            rest = next;
        }
        (hasher.finish().unwrap(), threaded)
    }

    #[test]
    fn digest_is_the_one_shot_digest_at_every_size_and_piece_pattern() {
        let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        let bytes = content(9 * PIECE + 12345);
        let patterns: &[&[usize]] = &[&[1], &[1024], &[PIECE], &[PIECE + 1], &[3, PIECE * 2, 77]];
        for len in [
            0,
            1000,
            THREAD_MIN as usize - 1,
            THREAD_MIN as usize,
            bytes.len(),
        ] {
            for sizes in patterns {
                if sizes == &[1] && len > THREAD_MIN as usize {
                    continue; // a million one-byte pieces add time, not coverage
                }
                let (digest, threaded) = hashed_in_pieces(&bytes[..len], sizes);
                assert_eq!(digest, one_shot(&bytes[..len]), "{len} bytes in {sizes:?}");
                assert_eq!(
                    threaded,
                    len >= THREAD_MIN as usize,
                    "{len} bytes in {sizes:?}"
                );
            }
        }
        assert!(hashing_threads_become(0));
    }

    #[test]
    fn small_content_starts_no_thread() {
        let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        let mut hasher = ContentHasher::default();
        assert!(!hasher.offload(1024));
        hasher.update(&[0; 1024]);
        assert!(matches!(hasher, ContentHasher::Inline(_, 1024)));
        assert_eq!(hashing_threads(), 0);
    }

    #[test]
    fn dropping_mid_stream_ends_the_thread() {
        let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        let mut hasher = ContentHasher::default();
        let bytes = content(3 * PIECE + 5);
        assert!(hasher.offload(bytes.len()));
        hasher.update(&bytes);
        assert!(hashing_threads_become(1));
        drop(hasher);
        assert!(
            hashing_threads_become(0),
            "a hashing thread outlived its hasher"
        );
    }
}
