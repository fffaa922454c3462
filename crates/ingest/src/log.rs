//! The durable ingest log: an append-only sequence of segment files in the data directory.
//!
//! - **Group commit.** Requests hand their records to one writer thread, which appends every
//!   record waiting, calls `fsync` once, and only then acknowledges them all. A request is
//!   answered 2xx only after its records are on disk, and concurrency makes the fsyncs cheaper,
//!   not more frequent.
//! - **Framing.** Each record is `[u32 length][u32 CRC-32][payload]`, little-endian. On open,
//!   the last segment is scanned and cut at the first incomplete or corrupt record: that is a
//!   write torn by a crash, and it was never acknowledged.
//! - **One consumer.** The processor reads from its checkpoint, and after the records are safely
//!   in the stores it commits a new checkpoint (written to a temporary file, fsync'd, renamed),
//!   which also deletes segments it has passed. After a crash, records after the checkpoint are
//!   read again; everything downstream is idempotent.
//! - **Budget.** When the unprocessed backlog reaches the configured size (for example while
//!   ClickHouse is down), appends fail with [`LogError::Full`] and the API answers 503 with
//!   `Retry-After` instead of filling the disk.
//!
//! Written by hand because no maintained crate offers exactly this (a group-committed,
//! single-consumer WAL with a byte budget); the whole format is the 8-byte header above.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Read, Seek, SeekFrom, Write},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
};

use tokio::sync::{mpsc, oneshot, Notify};

const HEADER: usize = 8;
/// Largest single record accepted (a batch request is split into one record per message).
pub const MAX_RECORD: usize = 1024 * 1024;

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub dir: PathBuf,
    /// A segment is closed and a new one started past this size.
    pub segment_bytes: u64,
    /// Appends are refused while this many bytes await processing.
    pub budget_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("the ingest log is full ({backlog} bytes await processing)")]
    Full { backlog: u64 },
    #[error("ingest log I/O: {0}")]
    Io(#[from] io::Error),
    #[error("the ingest log writer has stopped")]
    Stopped,
}

/// A place in the log: a segment number and a byte offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Position {
    pub segment: u64,
    pub offset: u64,
}

struct Shared {
    dir: PathBuf,
    budget: u64,
    /// Bytes appended and not yet committed by the consumer.
    backlog: AtomicU64,
    /// Wakes the consumer when records arrive.
    appended: Notify,
}

struct Append {
    records: Vec<Vec<u8>>,
    ack: oneshot::Sender<Result<(), LogError>>,
}

/// The writing side, shared by every request handler. Cheap to clone.
#[derive(Clone)]
pub struct IngestLog {
    tx: mpsc::Sender<Append>,
    shared: Arc<Shared>,
}

/// The reading side, owned by the one processor.
pub struct LogReader {
    shared: Arc<Shared>,
    /// Where the next read starts (may be ahead of the committed checkpoint).
    pos: Position,
}

fn segment_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("{n:020}.log"))
}

fn segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if let Some(n) = name.strip_suffix(".log").and_then(|s| s.parse::<u64>().ok()) {
            out.push(n);
        }
    }
    out.sort_unstable();
    Ok(out)
}

fn read_checkpoint(dir: &Path) -> io::Result<Option<Position>> {
    match fs::read_to_string(dir.join("checkpoint")) {
        Ok(s) => {
            let mut parts = s.split_whitespace().map(str::parse::<u64>);
            match (parts.next(), parts.next()) {
                (Some(Ok(segment)), Some(Ok(offset))) => Ok(Some(Position { segment, offset })),
                _ => Err(io::Error::new(io::ErrorKind::InvalidData, "malformed ingest log checkpoint")),
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Reads one record at the file's current position. `Ok(None)`: no complete, valid record
/// there (end of data, a torn write, or a record still being written).
fn read_record(f: &mut File, len_left: u64) -> io::Result<Option<Vec<u8>>> {
    if len_left < HEADER as u64 {
        return Ok(None);
    }
    let mut header = [0u8; HEADER];
    f.read_exact(&mut header)?;
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if len > MAX_RECORD || (len as u64) > len_left - HEADER as u64 {
        return Ok(None);
    }
    let mut payload = vec![0u8; len];
    f.read_exact(&mut payload)?;
    if crc32fast::hash(&payload) != crc {
        return Ok(None);
    }
    Ok(Some(payload))
}

/// The length of the valid prefix of a segment.
fn valid_prefix(path: &Path) -> io::Result<u64> {
    let mut f = File::open(path)?;
    let size = f.metadata()?.len();
    let mut at = 0u64;
    while let Some(p) = read_record(&mut f, size - at)? {
        at += (HEADER + p.len()) as u64;
    }
    Ok(at)
}

impl IngestLog {
    /// Opens (or creates) the log, repairs a torn tail, and starts the writer thread.
    pub fn open(config: LogConfig) -> Result<(IngestLog, LogReader), LogError> {
        fs::create_dir_all(&config.dir)?;
        let mut segs = segments(&config.dir)?;
        let checkpoint = read_checkpoint(&config.dir)?;
        // Repair the last segment: cut at the first torn or corrupt record.
        if let Some(&last) = segs.last() {
            let path = segment_path(&config.dir, last);
            let valid = valid_prefix(&path)?;
            let f = OpenOptions::new().write(true).open(&path)?;
            if f.metadata()?.len() != valid {
                tracing::warn!(segment = last, kept_bytes = valid, "ingest log: cut a torn write at the end");
                f.set_len(valid)?;
                f.sync_all()?;
            }
        } else {
            File::create(segment_path(&config.dir, 1))?.sync_all()?;
            sync_dir(&config.dir)?;
            segs.push(1);
        }
        let start = checkpoint.unwrap_or(Position { segment: segs[0], offset: 0 });
        let mut backlog = 0u64;
        for &s in segs.iter().filter(|s| **s >= start.segment) {
            let len = fs::metadata(segment_path(&config.dir, s))?.len();
            backlog += if s == start.segment { len.saturating_sub(start.offset) } else { len };
        }
        let shared = Arc::new(Shared {
            dir: config.dir.clone(),
            budget: config.budget_bytes,
            backlog: AtomicU64::new(backlog),
            appended: Notify::new(),
        });
        let last = *segs.last().unwrap_or(&1);
        let file = OpenOptions::new().append(true).open(segment_path(&config.dir, last))?;
        let size = file.metadata()?.len();
        let (tx, rx) = mpsc::channel::<Append>(4096);
        let writer = Writer { shared: shared.clone(), segment: last, file, size, segment_bytes: config.segment_bytes };
        std::thread::Builder::new().name("cairn-ingest-log".into()).spawn(move || writer.run(rx))?;
        Ok((IngestLog { tx, shared: shared.clone() }, LogReader { shared, pos: start }))
    }

    /// Appends records durably: returns once they are fsync'd (or with the reason they are not).
    pub async fn append(&self, records: Vec<Vec<u8>>) -> Result<(), LogError> {
        let backlog = self.shared.backlog.load(Ordering::Relaxed);
        if backlog >= self.shared.budget {
            return Err(LogError::Full { backlog });
        }
        let (ack, done) = oneshot::channel();
        self.tx.send(Append { records, ack }).await.map_err(|_| LogError::Stopped)?;
        done.await.map_err(|_| LogError::Stopped)?
    }

    /// Bytes awaiting processing (for `/metrics` and the 503 decision).
    pub fn backlog(&self) -> u64 {
        self.shared.backlog.load(Ordering::Relaxed)
    }
}

struct Writer {
    shared: Arc<Shared>,
    segment: u64,
    file: File,
    size: u64,
    segment_bytes: u64,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Append>) {
        let mut group: Vec<Append> = Vec::new();
        while let Some(first) = rx.blocking_recv() {
            group.push(first);
            // Everything that queued up while the last fsync ran joins this group.
            while group.len() < 4096 {
                match rx.try_recv() {
                    Ok(a) => group.push(a),
                    Err(_) => break,
                }
            }
            let result = self.write_group(&group);
            let ok = result.is_ok();
            for a in group.drain(..) {
                let r = match &result {
                    Ok(()) => Ok(()),
                    Err(e) => Err(LogError::Io(io::Error::new(e.kind(), e.to_string()))),
                };
                let _ = a.ack.send(r);
            }
            if ok {
                self.shared.appended.notify_one();
            }
        }
        let _ = self.file.sync_all();
    }

    fn write_group(&mut self, group: &[Append]) -> io::Result<()> {
        let bytes: u64 = group.iter().flat_map(|a| &a.records).map(|r| (HEADER + r.len()) as u64).sum();
        if self.size > 0 && self.size + bytes > self.segment_bytes {
            self.file.sync_all()?;
            self.segment += 1;
            self.file =
                OpenOptions::new().create(true).append(true).open(segment_path(&self.shared.dir, self.segment))?;
            sync_dir(&self.shared.dir)?;
            self.size = 0;
        }
        let mut buf = Vec::with_capacity(bytes as usize);
        for r in group.iter().flat_map(|a| &a.records) {
            buf.extend_from_slice(&(r.len() as u32).to_le_bytes());
            buf.extend_from_slice(&crc32fast::hash(r).to_le_bytes());
            buf.extend_from_slice(r);
        }
        let before = self.size;
        if let Err(e) = self.file.write_all(&buf).and_then(|_| self.file.sync_data()) {
            // Leave no half-group behind: the next open would cut it anyway.
            let _ = self.file.set_len(before);
            return Err(e);
        }
        self.size += bytes;
        self.shared.backlog.fetch_add(bytes, Ordering::Relaxed);
        Ok(())
    }
}

impl LogReader {
    /// Reads up to `max` records after the read position and moves the read position past
    /// them. Returns the records and the position after the last one (to commit once they are
    /// processed). Blocking file I/O: call from a blocking context.
    pub fn read(&mut self, max: usize) -> io::Result<(Vec<Vec<u8>>, Position)> {
        let mut out = Vec::new();
        loop {
            let path = segment_path(&self.shared.dir, self.pos.segment);
            let mut f = match File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    // The checkpoint's segment is gone only if it was fully consumed.
                    match segments(&self.shared.dir)?.into_iter().find(|s| *s > self.pos.segment) {
                        Some(next) => {
                            self.pos = Position { segment: next, offset: 0 };
                            continue;
                        }
                        None => return Ok((out, self.pos)),
                    }
                }
                Err(e) => return Err(e),
            };
            let size = f.metadata()?.len();
            f.seek(SeekFrom::Start(self.pos.offset))?;
            while out.len() < max {
                match read_record(&mut f, size.saturating_sub(self.pos.offset))? {
                    Some(p) => {
                        self.pos.offset += (HEADER + p.len()) as u64;
                        out.push(p);
                    }
                    None => break,
                }
            }
            if out.len() >= max {
                return Ok((out, self.pos));
            }
            // At the end of this segment: move on only if a newer one exists (this one is
            // then complete); otherwise wait for more.
            let newer = segments(&self.shared.dir)?.into_iter().find(|s| *s > self.pos.segment);
            match newer {
                Some(next) if self.pos.offset >= valid_prefix(&path)? => {
                    self.pos = Position { segment: next, offset: 0 };
                }
                _ => return Ok((out, self.pos)),
            }
        }
    }

    /// Records that everything before `to` is processed: persists the checkpoint, deletes the
    /// segments wholly before it, and frees budget.
    pub fn commit(&mut self, from: Position, to: Position) -> io::Result<()> {
        let dir = &self.shared.dir;
        let tmp = dir.join("checkpoint.tmp");
        {
            let mut f = File::create(&tmp)?;
            write!(f, "{} {}", to.segment, to.offset)?;
            f.sync_all()?;
        }
        fs::rename(&tmp, dir.join("checkpoint"))?;
        sync_dir(dir)?;
        let mut freed = 0u64;
        for s in segments(dir)?.into_iter().filter(|s| *s < to.segment) {
            let path = segment_path(dir, s);
            let len = fs::metadata(&path)?.len();
            freed += if s == from.segment { len.saturating_sub(from.offset) } else { len };
            fs::remove_file(path)?;
        }
        freed += if to.segment == from.segment { to.offset - from.offset } else { to.offset };
        let _ =
            self.shared.backlog.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| Some(b.saturating_sub(freed)));
        Ok(())
    }

    /// The current read position.
    pub fn position(&self) -> Position {
        self.pos
    }

    /// Rewinds the read position (after a failed batch, to read it again).
    pub fn rewind(&mut self, to: Position) {
        self.pos = to;
    }

    /// Waits until new records may have arrived.
    pub async fn wait(&self) {
        self.shared.appended.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path) -> LogConfig {
        LogConfig { dir: dir.to_path_buf(), segment_bytes: 1024, budget_bytes: 1 << 30 }
    }

    fn blocking_read(r: &mut LogReader, max: usize) -> Vec<String> {
        r.read(max).unwrap().0.into_iter().map(|b| String::from_utf8(b).unwrap()).collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn appended_records_are_read_back_in_order_across_segments() {
        let dir = cairn_testkit::TempDir::new();
        let (log, mut reader) = IngestLog::open(config(&dir.0)).unwrap();
        for i in 0..100 {
            log.append(vec![format!("record {i:03} {}", "x".repeat(50)).into_bytes()]).await.unwrap();
        }
        assert!(segments(&dir.0).unwrap().len() > 3, "small segments rotate");
        let from = reader.position();
        let got = tokio::task::block_in_place(|| blocking_read(&mut reader, 1000));
        assert_eq!(got.len(), 100);
        assert!(got[0].starts_with("record 000") && got[99].starts_with("record 099"));
        let to = reader.position();
        reader.commit(from, to).unwrap();
        assert_eq!(log.backlog(), 0);
        assert_eq!(segments(&dir.0).unwrap().len(), 1, "consumed segments are deleted");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_reopened_log_resumes_after_the_checkpoint_and_cuts_a_torn_tail() {
        let dir = cairn_testkit::TempDir::new();
        {
            let (log, mut reader) = IngestLog::open(config(&dir.0)).unwrap();
            log.append(vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]).await.unwrap();
            let from = reader.position();
            let (first, _) = tokio::task::block_in_place(|| reader.read(2)).unwrap();
            assert_eq!(first, vec![b"a".to_vec(), b"b".to_vec()]);
            let to = reader.position();
            reader.commit(from, to).unwrap();
        }
        // A crash in the middle of a write leaves half a record.
        let last = *segments(&dir.0).unwrap().last().unwrap();
        let mut f = OpenOptions::new().append(true).open(segment_path(&dir.0, last)).unwrap();
        f.write_all(&[200, 0, 0, 0, 1, 2, 3, 4, b'h']).unwrap();
        drop(f);
        let (log, mut reader) = IngestLog::open(config(&dir.0)).unwrap();
        log.append(vec![b"d".to_vec()]).await.unwrap();
        let got = tokio::task::block_in_place(|| blocking_read(&mut reader, 10));
        assert_eq!(got, ["c", "d"], "after the checkpoint, the torn record is gone and new ones follow");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_budget_refuses_appends_until_the_consumer_catches_up() {
        let dir = cairn_testkit::TempDir::new();
        let cfg = LogConfig { budget_bytes: 100, ..config(&dir.0) };
        let (log, mut reader) = IngestLog::open(cfg).unwrap();
        log.append(vec![vec![b'x'; 120]]).await.unwrap();
        assert!(matches!(log.append(vec![b"y".to_vec()]).await, Err(LogError::Full { .. })));
        let from = reader.position();
        tokio::task::block_in_place(|| reader.read(10)).unwrap();
        let to = reader.position();
        reader.commit(from, to).unwrap();
        log.append(vec![b"y".to_vec()]).await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_appends_are_group_committed_and_all_acknowledged() {
        let dir = cairn_testkit::TempDir::new();
        let (log, mut reader) = IngestLog::open(LogConfig { segment_bytes: 1 << 20, ..config(&dir.0) }).unwrap();
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let log = log.clone();
                tokio::spawn(async move { log.append(vec![format!("{i}").into_bytes()]).await })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let mut got = tokio::task::block_in_place(|| blocking_read(&mut reader, 1000));
        got.sort_by_key(|s| s.parse::<u32>().unwrap());
        assert_eq!(got, (0..200).map(|i| i.to_string()).collect::<Vec<_>>());
    }
}
