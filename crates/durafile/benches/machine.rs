//! What this machine's disk costs, and large streamed writes, in a standalone process.
//!
//! - `fsync` of a 1 KiB write, the creation of a file (`O_CREAT|O_EXCL`), a rename and an
//!   fsync of a directory: medians of 200, so that a reader can tell which regime the other
//!   benches ran in (cheap or costly fsync; cheap or costly file creation).
//! - A 1 GiB streamed write with a checksum (`AtomicFile`, `full`) against its two bounds:
//!   a raw buffered write + fsync of the same bytes, and one core's SHA-256 of them; and
//!   without a checksum, to show where the time goes.
//!
//! Prints `MACHINE name milliseconds` and `STREAM name seconds` lines for
//! `scripts/bench.sh`. With the argument `stream-only` it makes only the durafile stream, so
//! that `/usr/bin/time -v` measures its peak RSS alone.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use durafile::{AtomicFile, Options};

const SAMPLES: usize = 200;
const STREAM_MIB: u64 = 1024;

fn median(mut f: impl FnMut() -> Duration) -> f64 {
    let mut times: Vec<f64> = (0..SAMPLES).map(|_| f().as_secs_f64() * 1e3).collect();
    times.sort_by(f64::total_cmp);
    times[SAMPLES / 2]
}

fn timed(f: impl FnOnce()) -> Duration {
    let start = Instant::now();
    f();
    start.elapsed()
}

fn main() {
    let dir = match std::env::var("DURAFILE_BENCH_DIR") {
        Ok(parent) => tempfile::tempdir_in(parent),
        Err(_) => tempfile::tempdir(),
    }
    .unwrap();
    let d = dir.path();
    if std::env::args().any(|a| a == "stream-only") {
        durafile_stream(d);
        return;
    }
    let data = [0x42u8; 1024];
    let mut f = File::create(d.join("fsync")).unwrap();
    let fsync = median(|| {
        f.write_all(&data).unwrap();
        timed(|| f.sync_all().unwrap())
    });
    let mut i = 0;
    let create = median(|| {
        i += 1;
        let path = d.join(format!("c{i}"));
        let t = timed(|| {
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .unwrap();
        });
        fs::remove_file(&path).unwrap();
        t
    });
    fs::write(d.join("r0"), b"x").unwrap();
    let rename = median(|| {
        let t = timed(|| fs::rename(d.join("r0"), d.join("r1")).unwrap());
        fs::rename(d.join("r1"), d.join("r0")).unwrap();
        t
    });
    let dir_fsync = median(|| {
        fs::write(d.join("e"), b"x").unwrap();
        timed(|| File::open(d).unwrap().sync_all().unwrap())
    });
    println!("MACHINE fsync_1KiB {fsync:.3}");
    println!("MACHINE create {create:.3}");
    println!("MACHINE rename {rename:.3}");
    println!("MACHINE dir_fsync {dir_fsync:.3}");

    let chunk = vec![0x5a_u8; 1 << 20];
    let raw = timed(|| {
        let mut f = BufWriter::with_capacity(64 << 10, File::create(d.join("raw.bin")).unwrap());
        for _ in 0..STREAM_MIB {
            f.write_all(&chunk).unwrap();
        }
        f.into_inner().unwrap().sync_all().unwrap();
    });
    fs::remove_file(d.join("raw.bin")).unwrap();
    let sha = timed(|| {
        let reader = std::io::Read::take(std::io::repeat(0x5a), STREAM_MIB << 20);
        std::hint::black_box(durafile::checksum::hash_reader(reader).unwrap());
    });
    // Each stream's file is removed before the next one starts, as the raw one is: a stream
    // that comes after another one's 1 GiB kept in the page cache takes several times longer
    // here (measured: the same plain stream 0.5 s first, 3 s after another one), which would
    // charge the order of the streams to whichever comes second.
    let plain = timed(|| durafile_stream_with(d, false));
    fs::remove_file(d.join("durafile-false.bin")).unwrap();
    let ours = timed(|| durafile_stream(d));
    println!("STREAM raw_write_fsync {:.3}", raw.as_secs_f64());
    println!("STREAM sha256_one_core {:.3}", sha.as_secs_f64());
    println!("STREAM durafile_full {:.3}", plain.as_secs_f64());
    println!("STREAM durafile_checksum_full {:.3}", ours.as_secs_f64());
}

fn durafile_stream(d: &Path) {
    durafile_stream_with(d, true);
}

fn durafile_stream_with(d: &Path, checksum: bool) {
    let chunk = vec![0x5a_u8; 1 << 20];
    let opts = Options::new().checksum(checksum);
    let mut f = AtomicFile::new(d.join(format!("durafile-{checksum}.bin")), &opts).unwrap();
    for _ in 0..STREAM_MIB {
        f.write_all(&chunk).unwrap();
    }
    f.commit().unwrap();
}
