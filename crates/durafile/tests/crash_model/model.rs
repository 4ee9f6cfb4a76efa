//! The persistence model: which states a power loss can leave, given a recorded run.
//!
//! # The model (conservative, in the spirit of ALICE and SQLite's crash VFS)
//!
//! The machine may lose power after any recorded operation. What the disk then holds:
//!
//! - **File data.** What an fsync that returned covered is kept. Data written since the
//!   file's last fsync (all of it, for a file never fsynced) may be lost or cut at any byte;
//!   the states tried cut it at 0, 1, the middle, one short and in full, at every page
//!   boundary in between (up to four), and once with its length kept and its bytes zeroed
//!   (ext4 `data=writeback` can show that).
//! - **A shrink** (`ftruncate` to a shorter length) not yet covered by an fsync may be lost
//!   or kept, as a whole: a file's size is one inode field, which journaling filesystems log
//!   whole. Also tried: the old length with the cut-off bytes zeroed, since a filesystem
//!   zeroes the tail of the block past the new end of file in the page cache, and that page
//!   can be written back before the new size is logged.
//! - **Directory entries.** A create, rename, link, unlink, mkdir or rmdir is kept once an
//!   fsync of its directory (of both, for a rename across directories) returned after it.
//!   Before that it may be lost, independently of every other entry, with two exceptions that
//!   every journaling filesystem honours: operations on one name persist in the order they
//!   were made (a later one kept means the earlier ones were), and a rename is atomic (its
//!   source and destination change together or not at all).
//! - **Nothing else is lost or invented**: a state where an fsync's promise is broken, or
//!   where bytes never written appear (other than the zeroed tail above), is not tried.
//!
//! The state where everything persisted and no data was cut is the state a SIGKILL leaves;
//! it is flagged (`kill`), for the `none` level, which promises nothing else.
//!
//! # Limits
//!
//! Metadata (modes, owners, timestamps) is not modelled. Only operations of the recording
//! process are seen. When the number of entry subsets at one point exceeds a cap, an even
//! sample of them is tried (the none-kept and all-kept ones always), so a large batch is
//! checked less than exhaustively; the scenarios stay small enough that it rarely matters.
//! A real filesystem allows fewer states than this model (ext4 commits directory operations
//! in order), so a protocol that passes here passes there; one that fails here may still
//! happen to survive on one filesystem, and is a bug on another.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use durafile::crash_record::{Event, Trace};

/// The most entry subsets tried at one crash point, and the most data-cut combinations per
/// subset.
const SUBSET_CAP: usize = 32;
const CUT_CAP: usize = 16;
const PAGE: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Dir,
    File(u64),
}

type Ns = BTreeMap<PathBuf, Node>;

/// One state a power loss may leave.
#[derive(Debug, Clone)]
pub struct CrashState {
    /// How many recorded events happened before the power loss.
    pub point: usize,
    /// The labels set so far.
    pub marks: Vec<String>,
    /// Every directory (`None`) and file (its content) on disk.
    pub tree: BTreeMap<PathBuf, Option<Vec<u8>>>,
    /// Whether this is the state a SIGKILL leaves (everything kept).
    pub kill: bool,
    /// What was lost, for the report.
    pub lost: String,
}

impl CrashState {
    /// How many marks start with `prefix`.
    pub fn count(&self, prefix: &str) -> usize {
        self.marks.iter().filter(|m| m.starts_with(prefix)).count()
    }

    pub fn file(&self, rel: &str) -> Option<&[u8]> {
        self.tree.get(Path::new(rel)).and_then(|c| c.as_deref())
    }
}

#[derive(Debug, Clone)]
struct Pending {
    event: Event,
    names: Vec<PathBuf>,
    /// Directories whose fsync is still needed.
    needs: BTreeSet<PathBuf>,
    durable: bool,
}

fn parent(p: &Path) -> PathBuf {
    p.parent().map(Path::to_path_buf).unwrap_or_default()
}

fn apply(ns: &mut Ns, e: &Event) {
    match e {
        Event::Create { path, id } => {
            ns.insert(path.clone(), Node::File(*id));
        }
        Event::Rename { from, to } => {
            if let Some(node) = ns.remove(from) {
                let moved: Vec<PathBuf> =
                    ns.keys().filter(|k| k.starts_with(from)).cloned().collect();
                for old in moved {
                    let n = ns.remove(&old).unwrap();
                    ns.insert(to.join(old.strip_prefix(from).unwrap()), n);
                }
                ns.retain(|k, _| !k.starts_with(to) || k == to);
                ns.insert(to.clone(), node);
            }
        }
        Event::Link { from, to } => {
            if let Some(Node::File(id)) = ns.get(from).cloned() {
                ns.insert(to.clone(), Node::File(id));
            }
        }
        Event::Unlink { path } => {
            ns.remove(path);
        }
        Event::Mkdir { path } => {
            ns.insert(path.clone(), Node::Dir);
        }
        Event::Rmdir { path } => {
            ns.retain(|k, _| !k.starts_with(path));
        }
        _ => {}
    }
}

/// The names and directories an entry operation touches.
fn entry_op(e: &Event) -> Option<(Vec<PathBuf>, BTreeSet<PathBuf>)> {
    let one = |p: &PathBuf| Some((vec![p.clone()], BTreeSet::from([parent(p)])));
    match e {
        Event::Create { path, .. }
        | Event::Unlink { path }
        | Event::Mkdir { path }
        | Event::Rmdir { path } => one(path),
        Event::Rename { from, to } => Some((
            vec![from.clone(), to.clone()],
            BTreeSet::from([parent(from), parent(to)]),
        )),
        Event::Link { from, to } => {
            Some((vec![from.clone(), to.clone()], BTreeSet::from([parent(to)])))
        }
        _ => None,
    }
}

/// Every crash state the model allows for `trace`, deduplicated.
pub fn crash_states(trace: &Trace, kill_only: bool) -> Vec<CrashState> {
    let mut durable: Ns = BTreeMap::new();
    let mut now: HashMap<u64, Vec<u8>> = HashMap::new();
    let mut synced: HashMap<u64, Vec<u8>> = HashMap::new();
    for (path, file) in &trace.base {
        match file {
            None => {
                durable.insert(path.clone(), Node::Dir);
            }
            Some((id, content)) => {
                durable.insert(path.clone(), Node::File(*id));
                now.insert(*id, content.clone());
                synced.insert(*id, content.clone());
            }
        }
    }
    // A file seen before any snapshot of it: its content is a prefix of its next snapshot.
    let mut future: HashMap<u64, Vec<u8>> = HashMap::new();
    for e in &trace.events {
        if let Event::Data { id, content } = e {
            future.entry(*id).or_insert_with(|| content.clone());
        }
    }
    let mut pending: Vec<Pending> = Vec::new();
    let mut marks = Vec::new();
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for point in 0..=trace.events.len() {
        let data = |id: u64| {
            let cur = now
                .get(&id)
                .or(future.get(&id))
                .cloned()
                .unwrap_or_default();
            let syn = synced.get(&id).cloned().unwrap_or_default();
            (cur, syn)
        };
        let all_kept = || vec![((0..pending.len()).collect(), true)];
        let subsets = if kill_only {
            all_kept()
        } else {
            subsets(&pending)
        };
        for (subset, all) in subsets {
            let mut ns = durable.clone();
            let mut lost = Vec::new();
            for (i, p) in pending.iter().enumerate() {
                if subset.contains(&i) {
                    apply(&mut ns, &p.event);
                } else {
                    lost.push(describe(&p.event));
                }
            }
            // Entries under a directory whose own entry was lost are unreachable.
            let reachable: Vec<(PathBuf, Node)> = ns
                .iter()
                .filter(|(k, _)| {
                    k.ancestors()
                        .skip(1)
                        .filter(|a| !a.as_os_str().is_empty())
                        .all(|a| ns.get(a) == Some(&Node::Dir))
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let mut ids: Vec<u64> = reachable
                .iter()
                .filter_map(|(_, n)| match n {
                    Node::File(id) => Some(*id),
                    Node::Dir => None,
                })
                .collect();
            ids.sort();
            ids.dedup();
            let choices: Vec<Vec<(Vec<u8>, String)>> = ids
                .iter()
                .map(|&id| {
                    let (cur, syn) = data(id);
                    let mut cuts = cuts(&cur, &syn);
                    cuts.truncate(if kill_only { 1 } else { cuts.len() });
                    cuts
                })
                .collect();
            for combo in combos(&choices) {
                let mut tree = BTreeMap::new();
                let mut cut_desc = Vec::new();
                let content: HashMap<u64, &Vec<u8>> = ids
                    .iter()
                    .zip(&combo)
                    .map(|(&id, &c)| {
                        (
                            id,
                            &choices[ids.iter().position(|x| *x == id).unwrap()][c].0,
                        )
                    })
                    .collect();
                for (i, &c) in combo.iter().enumerate() {
                    if c != 0 {
                        cut_desc.push(format!("file #{} {}", ids[i], choices[i][c].1));
                    }
                }
                for (path, node) in &reachable {
                    tree.insert(
                        path.clone(),
                        match node {
                            Node::Dir => None,
                            Node::File(id) => Some(content[id].clone()),
                        },
                    );
                }
                let kill = all && combo.iter().all(|&c| c == 0);
                let mut h = std::collections::hash_map::DefaultHasher::new();
                (&tree, marks.len(), kill).hash(&mut h);
                if !seen.insert(h.finish()) {
                    continue;
                }
                let mut why = lost.clone();
                why.extend(cut_desc);
                out.push(CrashState {
                    point,
                    marks: marks.clone(),
                    tree,
                    kill,
                    lost: if why.is_empty() {
                        "nothing lost".into()
                    } else {
                        why.join("; ")
                    },
                });
            }
        }
        let Some(e) = trace.events.get(point) else {
            break;
        };
        match e {
            Event::Data { id, content } => {
                now.insert(*id, content.clone());
            }
            Event::Fsync { id } => {
                let cur = data(*id).0;
                synced.insert(*id, cur);
            }
            Event::Mark(m) => marks.push(m.clone()),
            Event::DirFsync { path } => {
                for p in &mut pending {
                    p.needs.remove(path);
                    if p.needs.is_empty() {
                        p.durable = true;
                    }
                }
                // A name's operations persist in order: a kept one keeps the earlier ones.
                for i in (0..pending.len()).rev() {
                    if pending[i].durable {
                        let names = pending[i].names.clone();
                        for p in &mut pending[..i] {
                            if p.names.iter().any(|n| names.contains(n)) {
                                p.durable = true;
                            }
                        }
                    }
                }
                for p in pending.iter().filter(|p| p.durable) {
                    apply(&mut durable, &p.event);
                }
                pending.retain(|p| !p.durable);
            }
            e => {
                if let Some((names, needs)) = entry_op(e) {
                    pending.push(Pending {
                        event: e.clone(),
                        names,
                        needs,
                        durable: false,
                    });
                }
            }
        }
    }
    out
}

fn describe(e: &Event) -> String {
    match e {
        Event::Create { path, .. } => format!("create {} lost", path.display()),
        Event::Rename { from, to } => format!("rename {} -> {} lost", from.display(), to.display()),
        Event::Link { from, to } => format!("link {} -> {} lost", from.display(), to.display()),
        Event::Unlink { path } => format!("unlink {} lost", path.display()),
        Event::Mkdir { path } => format!("mkdir {} lost", path.display()),
        Event::Rmdir { path } => format!("rmdir {} lost", path.display()),
        e => format!("{e:?} lost"),
    }
}

/// The subsets of pending entry operations that may have persisted: closed under "an
/// earlier operation on a shared name". Returns each with whether it is all of them.
fn subsets(pending: &[Pending]) -> Vec<(BTreeSet<usize>, bool)> {
    let n = pending.len();
    let deps: Vec<Vec<usize>> = (0..n)
        .map(|i| {
            (0..i)
                .filter(|&j| {
                    pending[j]
                        .names
                        .iter()
                        .any(|x| pending[i].names.contains(x))
                })
                .collect()
        })
        .collect();
    let mut all = Vec::new();
    let mut stack = vec![(0usize, BTreeSet::new())];
    while let Some((i, set)) = stack.pop() {
        if all.len() > 4096 {
            break;
        }
        if i == n {
            all.push(set);
            continue;
        }
        stack.push((i + 1, set.clone()));
        if deps[i].iter().all(|d| set.contains(d)) {
            let mut with = set;
            with.insert(i);
            stack.push((i + 1, with));
        }
    }
    let full: BTreeSet<usize> = (0..n).collect();
    if all.len() > SUBSET_CAP {
        let step = all.len() as f64 / SUBSET_CAP as f64;
        let mut sample: Vec<BTreeSet<usize>> = (0..SUBSET_CAP)
            .map(|k| all[(k as f64 * step) as usize].clone())
            .collect();
        sample.push(BTreeSet::new());
        sample.push(full.clone());
        all = sample;
    }
    if !all.contains(&full) {
        all.push(full.clone());
    }
    all.into_iter()
        .map(|s| {
            let is_full = s == full;
            (s, is_full)
        })
        .collect()
}

/// The contents a file may have: first the full current content, then the cuts.
fn cuts(cur: &[u8], syn: &[u8]) -> Vec<(Vec<u8>, String)> {
    let mut out = vec![(cur.to_vec(), "whole".to_string())];
    if cur == syn {
        return out;
    }
    if syn.starts_with(cur) {
        let (lo, hi) = (cur.len(), syn.len());
        let mut zeroed = cur.to_vec();
        zeroed.resize(hi, 0);
        out.push((syn.to_vec(), format!("shrink to {lo} bytes lost")));
        out.push((zeroed, format!("shrink lost, bytes {lo}..{hi} zeroed")));
        return out;
    }
    if !cur.starts_with(syn) {
        out.push((syn.to_vec(), "at its last fsync".into()));
        return out;
    }
    let (lo, hi) = (syn.len(), cur.len());
    let mut at: BTreeSet<usize> = [lo, lo + 1, (lo + hi) / 2, hi.saturating_sub(1)]
        .into_iter()
        .filter(|&k| k >= lo && k < hi)
        .collect();
    at.extend(
        (lo / PAGE + 1..)
            .map(|p| p * PAGE)
            .take_while(|&k| k < hi)
            .take(4),
    );
    for k in at {
        out.push((cur[..k].to_vec(), format!("cut at byte {k} of {hi}")));
    }
    let mut zeroed = syn.to_vec();
    zeroed.resize(hi, 0);
    out.push((zeroed, format!("bytes {lo}..{hi} zeroed")));
    out
}

/// Which cut each file gets: every combination when few, else each file's cuts one at a
/// time with the others whole, plus all at their shortest.
fn combos(choices: &[Vec<(Vec<u8>, String)>]) -> Vec<Vec<usize>> {
    let product: usize = choices.iter().map(Vec::len).product();
    if product <= CUT_CAP {
        let mut out = vec![vec![]];
        for c in choices {
            out = out
                .into_iter()
                .flat_map(|prefix| {
                    (0..c.len()).map(move |k| {
                        let mut p = prefix.clone();
                        p.push(k);
                        p
                    })
                })
                .collect();
        }
        return out;
    }
    let mut out = vec![vec![0; choices.len()]];
    for (i, c) in choices.iter().enumerate() {
        for k in 1..c.len() {
            let mut p = vec![0; choices.len()];
            p[i] = k;
            out.push(p);
        }
    }
    out.push(choices.iter().map(|c| c.len() - 1).collect());
    out
}

/// Creates `state`'s files and directories under `dir` (emptied first).
pub fn materialise(state: &CrashState, dir: &Path) {
    if dir.exists() {
        std::fs::remove_dir_all(dir).unwrap();
    }
    std::fs::create_dir_all(dir).unwrap();
    for (path, content) in &state.tree {
        let at = dir.join(path);
        match content {
            None => std::fs::create_dir_all(&at).unwrap(),
            Some(bytes) => {
                std::fs::create_dir_all(at.parent().unwrap()).unwrap();
                std::fs::write(&at, bytes).unwrap();
            }
        }
    }
}

/// Operations that would lose a lock file a waiter could be queued on: durafile must never
/// unlink, rename or replace a `.NAME.lock`.
pub fn lock_violations(trace: &Trace) -> Vec<String> {
    let is_lock = |p: &Path| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.') && n.ends_with(".lock"))
    };
    trace
        .events
        .iter()
        .filter(|e| match e {
            Event::Unlink { path } => is_lock(path),
            Event::Rename { from, to } => is_lock(from) || is_lock(to),
            Event::Link { to, .. } => is_lock(to),
            _ => false,
        })
        .map(|e| format!("{e:?}"))
        .collect()
}
