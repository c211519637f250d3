//! Labelled files read through an on-disk row index, so memory stays bounded whatever the
//! file's size: one streaming pass records where every good row lies (byte offset, length,
//! line, label key) and what the label column holds ([`LabelStats`]); rows are then read back
//! and parsed one at a time. The index is cached (`$BURNBERT_CACHE`, else
//! `$XDG_CACHE_HOME/burnbert`, else `~/.cache/burnbert`) and reused while the file's size and
//! modification time are unchanged.

use std::fs::File;
use std::hash::{Hash, Hasher};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

use super::labels::{LabelSpace, LabelStats, NO_LABEL_KEY};
use super::table::{
    BadRow, Columns, Format, RawRow, RowParser, bad_rows_error, for_each_row, no_rows_error,
};
use crate::error::{Error, Result};

/// Bumped whenever the index layout or the row rules change, so old indexes are not reused.
const INDEX_VERSION: u32 = 1;

/// Bytes of one entry: offset (u64), length (u32), line (u32), label key (u32), little-endian.
const ENTRY: usize = 20;

/// Where one good row lies, and its label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Byte offset of the row in the file.
    pub offset: u64,
    /// Byte length of the row (line end included).
    pub len: u32,
    /// 1-based line (row number) for messages.
    pub line: u32,
    /// Index of the row's label cell in the file's [`LabelStats`].
    pub key: u32,
}

impl Entry {
    fn to_bytes(self) -> [u8; ENTRY] {
        let mut out = [0u8; ENTRY];
        out[..8].copy_from_slice(&self.offset.to_le_bytes());
        out[8..12].copy_from_slice(&self.len.to_le_bytes());
        out[12..16].copy_from_slice(&self.line.to_le_bytes());
        out[16..].copy_from_slice(&self.key.to_le_bytes());
        out
    }

    fn from_bytes(b: &[u8]) -> Self {
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let mut offset = [0u8; 8];
        offset.copy_from_slice(&b[..8]);
        Self {
            offset: u64::from_le_bytes(offset),
            len: u32_at(8),
            line: u32_at(12),
            key: u32_at(16),
        }
    }
}

/// What the pass learned, saved next to the entries.
#[derive(Serialize, Deserialize)]
struct Summary {
    version: u32,
    rows: usize,
    header: Option<Vec<String>>,
    stats: LabelStats,
    bad_rows: usize,
    first_bad: Option<BadRow>,
}

/// A labelled file and its parser, shared by every [`RowSet`] over it.
struct DataFile {
    file: File,
    parser: RowParser,
}

/// The index of one labelled file: its good rows, its label statistics, its bad rows.
pub struct FileIndex {
    /// The file indexed.
    pub path: PathBuf,
    /// Every good row, in file order.
    pub rows: RowSet,
    /// What the label column holds.
    pub stats: LabelStats,
    /// Bad rows (ragged, missing field, empty text) left out of [`Self::rows`].
    pub bad_rows: usize,
    first_bad: Option<BadRow>,
    /// Whether a cached index was reused (no pass over the file).
    pub reused: bool,
}

/// Progress of an indexing pass: bytes read of the file's total.
pub type IndexProgress<'a> = &'a (dyn Fn(u64, u64) + Sync);

impl FileIndex {
    /// Indexes `path` in one streaming pass, or reuses the cached index of the unchanged file.
    /// `progress` is called now and then with (bytes read, file size).
    pub fn open(
        path: &Path,
        format: Format,
        columns: &Columns,
        progress: IndexProgress,
    ) -> Result<Self> {
        Self::open_in(cache_dir().as_deref(), path, format, columns, progress)
    }

    /// [`Self::open`] with the index cached in `cache` (`None`: not cached).
    pub fn open_in(
        cache: Option<&Path>,
        path: &Path,
        format: Format,
        columns: &Columns,
        progress: IndexProgress,
    ) -> Result<Self> {
        let data = File::open(path).map_err(|e| Error::io(path, e))?;
        let cached = cache.and_then(|dir| cache_name(dir, path, format, columns, &data));
        if let Some(index) = cached
            .as_ref()
            .and_then(|c| Self::load(path, format, columns, c))
        {
            return Ok(index);
        }
        let size = data.metadata().map(|m| m.len()).unwrap_or(0);
        let mut entries = tempfile::NamedTempFile::new_in(
            cached
                .as_ref()
                .and_then(|c| c.parent())
                .unwrap_or(&std::env::temp_dir()),
        )
        .or_else(|_| tempfile::NamedTempFile::new())
        .map_err(|e| Error::io(&std::env::temp_dir(), e))?;
        let mut writer = BufWriter::with_capacity(1 << 20, entries.as_file_mut());
        let (mut rows, mut bad_rows, mut first_bad) = (0usize, 0usize, None);
        let mut stats = LabelStats::default();
        let reader = for_each_row(path, format, columns, |row, (offset, len)| {
            match row {
                Ok(row) => {
                    let key = row
                        .label
                        .as_ref()
                        .map_or(NO_LABEL_KEY, |c| stats.add(c, row.line));
                    let entry = Entry {
                        offset,
                        len: len as u32,
                        line: row.line as u32,
                        key,
                    };
                    writer
                        .write_all(&entry.to_bytes())
                        .map_err(|e| Error::io(path, e))?;
                    rows += 1;
                    if rows % 65_536 == 0 {
                        progress(offset, size);
                    }
                }
                Err(bad) => {
                    bad_rows += 1;
                    first_bad.get_or_insert(bad);
                }
            }
            Ok(())
        })?;
        progress(size, size);
        writer.flush().map_err(|e| Error::io(path, e))?;
        drop(writer);
        let summary = Summary {
            version: INDEX_VERSION,
            rows,
            header: reader.header.clone(),
            stats,
            bad_rows,
            first_bad,
        };
        let file = match &cached {
            Some(cached) => persist(entries, &summary, cached),
            None => entries.into_file(),
        };
        Self::from_parts(path, format, columns, summary, data, file, false)
    }

    /// The cached index at `cached`, if it is complete and of this version.
    fn load(path: &Path, format: Format, columns: &Columns, cached: &Path) -> Option<Self> {
        let summary: Summary =
            serde_json::from_slice(&std::fs::read(cached.with_extension("json")).ok()?).ok()?;
        let entries = File::open(cached).ok()?;
        let complete = entries.metadata().ok()?.len() == (summary.rows * ENTRY) as u64;
        if summary.version != INDEX_VERSION || !complete {
            return None;
        }
        let data = File::open(path).ok()?;
        Self::from_parts(path, format, columns, summary, data, entries, true).ok()
    }

    fn from_parts(
        path: &Path,
        format: Format,
        columns: &Columns,
        mut summary: Summary,
        data: File,
        entries: File,
        reused: bool,
    ) -> Result<Self> {
        summary.stats.rebuild_keys();
        let parser = RowParser::new(path, format, columns, summary.header.as_deref())?;
        Ok(Self {
            path: path.to_path_buf(),
            rows: RowSet {
                data: Arc::new(DataFile { file: data, parser }),
                entries: Arc::new(entries),
                len: summary.rows,
            },
            stats: summary.stats,
            bad_rows: summary.bad_rows,
            first_bad: summary.first_bad,
            reused,
        })
    }

    /// Fails on the first bad row unless `skip_bad_rows`, and on a file without good rows.
    pub fn check_rows(&self, skip_bad_rows: bool) -> Result<()> {
        if let Some(first) = &self.first_bad
            && !skip_bad_rows
        {
            return Err(bad_rows_error(first, self.bad_rows));
        }
        if self.rows.is_empty() {
            return Err(no_rows_error(&self.path));
        }
        Ok(())
    }
}

/// Moves the entries to `cached` and writes the summary beside them; when the cache cannot
/// be written the index lives in its temporary file for this run only.
fn persist(entries: tempfile::NamedTempFile, summary: &Summary, cached: &Path) -> File {
    match entries.persist(cached) {
        Ok(file) => {
            if let Ok(json) = serde_json::to_vec(summary) {
                crate::fsutil::write_atomic(&cached.with_extension("json"), &json).ok();
            }
            file
        }
        Err(e) => e.file.into_file(),
    }
}

/// The cache path of the index of `path` (read as `format` with `columns`): keyed by the
/// canonical path, size and modification time, so an edited file is indexed again.
fn cache_name(
    cache: &Path,
    path: &Path,
    format: Format,
    columns: &Columns,
    data: &File,
) -> Option<PathBuf> {
    let meta = data.metadata().ok()?;
    let modified = meta
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (
        INDEX_VERSION,
        std::fs::canonicalize(path).ok()?,
        meta.len(),
        modified,
    )
        .hash(&mut hasher);
    (
        format!("{format:?}"),
        &columns.text,
        &columns.text_pair,
        &columns.label,
    )
        .hash(&mut hasher);
    columns.no_header.hash(&mut hasher);
    let dir = cache.join("index");
    std::fs::create_dir_all(&dir).ok()?;
    let stem = path.file_stem()?.to_string_lossy();
    Some(dir.join(format!("{stem}-{:016x}.rows", hasher.finish())))
}

/// burnbert's cache directory: `$BURNBERT_CACHE`, `$XDG_CACHE_HOME/burnbert` or
/// `~/.cache/burnbert`.
pub fn cache_dir() -> Option<PathBuf> {
    let var = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    var("BURNBERT_CACHE")
        .or_else(|| var("XDG_CACHE_HOME").map(|d| d.join("burnbert")))
        .or_else(|| var("HOME").map(|d| d.join(".cache").join("burnbert")))
}

/// Some rows of an indexed file (all of them, or a subset such as a split), read on demand.
#[derive(Clone)]
pub struct RowSet {
    data: Arc<DataFile>,
    entries: Arc<File>,
    len: usize,
}

impl RowSet {
    /// The file the rows are in.
    pub fn path(&self) -> &Path {
        self.data.parser.path()
    }

    /// Rows in the set.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the set has no rows.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The first `n` rows (all when fewer).
    pub fn truncated(mut self, n: Option<usize>) -> Self {
        self.len = self.len.min(n.unwrap_or(usize::MAX));
        self
    }

    /// Where row `i` lies.
    pub fn entry(&self, i: usize) -> Result<Entry> {
        let mut bytes = [0u8; ENTRY];
        read_at(&self.entries, &mut bytes, (i * ENTRY) as u64)
            .map_err(|e| Error::Input(format!("reading the row index: {e}")))?;
        Ok(Entry::from_bytes(&bytes))
    }

    /// Row `i`, read from the file and parsed.
    pub fn row(&self, i: usize) -> Result<RawRow> {
        let entry = self.entry(i)?;
        let mut bytes = vec![0u8; entry.len as usize];
        let path = self.path();
        read_at(&self.data.file, &mut bytes, entry.offset).map_err(|e| Error::io(path, e))?;
        self.data
            .parser
            .parse(entry.line as usize, &bytes)
            .map_err(|bad| Error::Input(format!("{bad} (the file changed while training?)")))
    }

    /// Calls `each` with every entry in order, reading the index in large blocks.
    pub fn for_each_entry(&self, mut each: impl FnMut(usize, Entry) -> Result<()>) -> Result<()> {
        const BLOCK: usize = 4096;
        let mut bytes = vec![0u8; BLOCK * ENTRY];
        for start in (0..self.len).step_by(BLOCK) {
            let n = BLOCK.min(self.len - start);
            read_at(
                &self.entries,
                &mut bytes[..n * ENTRY],
                (start * ENTRY) as u64,
            )
            .map_err(|e| Error::Input(format!("reading the row index: {e}")))?;
            for (k, chunk) in bytes[..n * ENTRY].chunks_exact(ENTRY).enumerate() {
                each(start + k, Entry::from_bytes(chunk))?;
            }
        }
        Ok(())
    }

    /// The rows for which `keep` is true and the others, in order, as two new sets (their
    /// entries in temporary files removed when the last copy is dropped), in one pass.
    pub fn partition(
        &self,
        mut keep: impl FnMut(usize, &Entry) -> bool,
    ) -> Result<(RowSet, RowSet)> {
        let temp = std::env::temp_dir();
        let dir = cache_dir().filter(|d| d.is_dir()).unwrap_or(temp);
        let file = || tempfile::tempfile_in(&dir).map_err(|e| Error::io(&dir, e));
        let (mut kept, mut rest) = (file()?, file()?);
        let mut writers = [
            BufWriter::with_capacity(1 << 20, &mut kept),
            BufWriter::with_capacity(1 << 20, &mut rest),
        ];
        let mut lens = [0usize; 2];
        self.for_each_entry(|i, entry| {
            let side = usize::from(!keep(i, &entry));
            lens[side] += 1;
            writers[side]
                .write_all(&entry.to_bytes())
                .map_err(|e| Error::io(&dir, e))
        })?;
        for writer in &mut writers {
            writer.flush().map_err(|e| Error::io(&dir, e))?;
        }
        drop(writers);
        let set = |file, len| RowSet {
            data: self.data.clone(),
            entries: Arc::new(file),
            len,
        };
        Ok((set(kept, lens[0]), set(rest, lens[1])))
    }

    /// Rows per class (single-label; everything is class 0 otherwise).
    pub fn class_counts(&self, space: &LabelSpace, stats: &LabelStats) -> Result<Vec<usize>> {
        let mut counts = vec![0usize; space.names.len().max(1)];
        self.for_each_entry(|_, e| {
            counts[space.class_of(stats, e.key)] += 1;
            Ok(())
        })?;
        Ok(counts)
    }

    /// Holds out about `ratio` of each class (single-label; of all rows otherwise), at least
    /// one of each class with two or more rows, drawn with `seed`: `(train, valid)`, each in
    /// file order. One pass of selection sampling per class: exact sizes, bounded memory.
    pub fn stratified_split(
        &self,
        space: &LabelSpace,
        stats: &LabelStats,
        ratio: f64,
        seed: u64,
    ) -> Result<(RowSet, RowSet)> {
        let counts = self.class_counts(space, stats)?;
        let mut left = counts.clone();
        let mut need: Vec<usize> = counts
            .iter()
            .map(|&n| {
                let take = (n as f64 * ratio).round() as usize;
                if take == 0 && n > 1 && ratio > 0.0 {
                    1
                } else {
                    take.min(n)
                }
            })
            .collect();
        let mut rng = StdRng::seed_from_u64(seed);
        // One bit per row: 1.25 MB for 10 million rows.
        let mut bits = vec![0u64; self.len.div_ceil(64)];
        self.for_each_entry(|i, e| {
            let c = space.class_of(stats, e.key);
            if rng.random_range(0..left[c]) < need[c] {
                need[c] -= 1;
                bits[i / 64] |= 1 << (i % 64);
            }
            left[c] -= 1;
            Ok(())
        })?;
        let (valid, train) = self.partition(|i, _| bits[i / 64] >> (i % 64) & 1 == 1)?;
        Ok((train, valid))
    }
}

#[cfg(unix)]
fn read_at(file: &File, out: &mut [u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, out, offset)
}

#[cfg(windows)]
fn read_at(file: &File, mut out: &mut [u8], mut offset: u64) -> std::io::Result<()> {
    while !out.is_empty() {
        match std::os::windows::fs::FileExt::seek_read(file, out, offset)? {
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            n => {
                out = &mut out[n..];
                offset += n as u64;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{LabelCell, read_rows};
    use crate::model::ProblemType;

    fn columns(label: &str) -> Columns {
        Columns {
            text: "text".into(),
            text_pair: None,
            label: Some(label.into()),
            no_header: false,
        }
    }

    fn index(cache: &Path, path: &Path) -> FileIndex {
        FileIndex::open_in(
            Some(cache),
            path,
            Format::Auto,
            &columns("label"),
            &|_, _| {},
        )
        .unwrap()
    }

    fn all_rows(index: &FileIndex) -> Vec<RawRow> {
        (0..index.rows.len())
            .map(|i| index.rows.row(i).unwrap())
            .collect()
    }

    #[test]
    fn rows_read_back_through_the_index_are_the_rows_of_a_full_read() {
        let dir = tempfile::tempdir().unwrap();
        let files = [
            (
                "a.csv",
                "\u{feff}text,label\r\n\"multi\r\nline, quoted\",pos\r\nplain,neg\r\n,neg\r\nlast,pos",
            ),
            (
                "b.tsv",
                "text\tlabel\n\"literal quotes\tpos\nragged\n\u{e9}t\u{e9}\tneg\n",
            ),
            (
                "c.jsonl",
                "\u{feff}{\"text\": \"a\", \"label\": 1}\r\n\n{\"text\": \"b\"}\n{\"text\": \"c\", \"label\": 0}",
            ),
        ];
        for (name, content) in files {
            let path = dir.path().join(name);
            std::fs::write(&path, content).unwrap();
            let (expected, bad) = read_rows(&path, Format::Auto, &columns("label")).unwrap();
            let index = index(dir.path(), &path);
            assert_eq!(all_rows(&index), expected, "{name}");
            assert_eq!(index.bad_rows, bad.len(), "{name}");
            assert_eq!(index.stats.cell(0), expected[0].label.as_ref(), "{name}");
            assert!(!index.reused);
        }
    }

    #[test]
    fn the_index_is_reused_until_the_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.tsv");
        std::fs::write(&path, "text\tlabel\nx\t1\ny\t0\n").unwrap();
        assert!(!index(dir.path(), &path).reused);
        let again = index(dir.path(), &path);
        assert!(again.reused);
        assert_eq!(all_rows(&again).len(), 2);
        assert_eq!(again.stats.cell(1), Some(&LabelCell::Text("0".into())));
        std::fs::write(&path, "text\tlabel\nx\t1\ny\t0\nz\t1\n").unwrap();
        let changed = index(dir.path(), &path);
        assert!(!changed.reused);
        assert_eq!(changed.rows.len(), 3);
        // Without a cache the index lives in a temporary file.
        let uncached =
            FileIndex::open_in(None, &path, Format::Auto, &columns("label"), &|_, _| {}).unwrap();
        assert_eq!(all_rows(&uncached), all_rows(&changed));
    }

    #[test]
    fn split_is_stratified_seeded_and_complete() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.tsv");
        let mut text = String::from("text\tlabel\n");
        for i in 0..300 {
            text.push_str(&format!("t{i}\t{}\n", if i % 3 == 0 { "a" } else { "b" }));
        }
        std::fs::write(&path, text).unwrap();
        let index = index(dir.path(), &path);
        let space =
            LabelSpace::from_training(&index.stats, ProblemType::SingleLabel, None, ",").unwrap();
        let split = |seed| {
            let (train, valid) = index
                .rows
                .stratified_split(&space, &index.stats, 0.2, seed)
                .unwrap();
            let lines = |set: &RowSet| -> Vec<u32> {
                (0..set.len()).map(|i| set.entry(i).unwrap().line).collect()
            };
            (
                lines(&train),
                lines(&valid),
                valid.class_counts(&space, &index.stats).unwrap(),
            )
        };
        let (train, valid, counts) = split(42);
        // 20% of each class: 20 of the 100 a's, 40 of the 200 b's.
        assert_eq!(counts, [20, 40]);
        let mut all: Vec<u32> = train.iter().chain(&valid).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (2..302).collect::<Vec<u32>>());
        assert!(train.is_sorted() && valid.is_sorted());
        assert_eq!(split(42).1, valid);
        assert_ne!(split(7).1, valid);
        // A class of one row keeps it for training; one of three gives one to validation.
        let tiny = dir.path().join("t.tsv");
        std::fs::write(&tiny, "text\tlabel\na\tx\nb\ty\nc\ty\nd\ty\n").unwrap();
        let index = super::tests::index(dir.path(), &tiny);
        let space =
            LabelSpace::from_training(&index.stats, ProblemType::SingleLabel, None, ",").unwrap();
        let (_, valid) = index
            .rows
            .stratified_split(&space, &index.stats, 0.1, 1)
            .unwrap();
        assert_eq!(valid.class_counts(&space, &index.stats).unwrap(), [0, 1]);
    }
}
