//! `.npz` archives (NumPy's `np.savez` / `np.savez_compressed` / `np.load`) on top of
//! the `zip` crate: stored and deflated members, ZIP64 on both sides, one member
//! loaded at a time. Re-exported from [`crate::npy`].

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::{BufReader, BufWriter, Cursor, ErrorKind, Read, Seek, SeekFrom, Write};
use std::path::Path;

use tensor_core::{Error, Result, Tensor};
use zip::read::ZipFile;
use zip::result::ZipError;
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipArchive, ZipWriter};

use crate::npy::{format_err, io_err, npy_to_bytes, parse_layout, parse_preamble, Preamble};

/// Deflate cannot expand data by more than about 1032:1 (a 258-byte match costs at
/// least 2 bits); a member that claims more is corrupt, and is rejected before any
/// inflating.
const MAX_DEFLATE_RATIO: u64 = 1032;
/// Room for the fixed overhead of a tiny deflate stream (block headers, the last
/// partial byte) on top of [`MAX_DEFLATE_RATIO`].
const DEFLATE_SLACK: u64 = 1024;
/// How many names a "no such array" error lists.
const NAMES_SHOWN: usize = 20;

/// A `.npz` archive opened for reading one array at a time, like the `NpzFile` that
/// NumPy's `np.load` returns: [`names`](Self::names) is its `.files`,
/// [`load`](Self::load) its `npz[name]`.
///
/// Opening reads the archive's directory and each member's local header (to check
/// that members lie inside the file and do not share bytes), never the arrays
/// themselves; [`load`](Self::load) then reads and inflates only the member it
/// names. Archives over 4 GiB (ZIP64) are read like any other.
///
/// Every problem is an `Err` naming the archive and, where there is one, the
/// member: a bad CRC, a truncated file, a member that is not a `.npy` file, sizes
/// that disagree, an unknown name. No buffer is sized from a length field before that
/// field is checked against what the member can hold: a member's `.npy` header sets
/// how many bytes are read, its declared size must agree, and a deflated member
/// cannot claim more than deflate can produce from its compressed bytes.
///
/// ```
/// use data::npy::{write_npz_compressed, NpzReader};
/// use tensor_core::Tensor;
///
/// let path = std::env::temp_dir().join(format!("npz_reader_doc_{}.npz", std::process::id()));
/// let w = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], [2, 2])?;
/// let b = Tensor::from_vec(vec![0.5f32, -0.5], [2])?;
/// write_npz_compressed(&path, &[("weight", &w), ("bias", &b)])?;
///
/// let mut npz = NpzReader::open(&path)?;
/// assert_eq!(npz.names(), ["weight", "bias"]);    // NumPy's npz.files
/// let bias = npz.load("bias")?;                     // npz["bias"]: only this member is read
/// assert_eq!(bias.to_vec::<f32>()?, vec![0.5, -0.5]);
/// assert!(npz.load("missing").is_err());
/// # std::fs::remove_file(&path).ok();
/// # Ok::<(), tensor_core::Error>(())
/// ```
pub struct NpzReader<R: Read + Seek = BufReader<File>> {
    archive: ZipArchive<R>,
    /// The archive's name in messages (its path, or what the caller passed).
    path: String,
    /// The member names as stored (`x.npy`), in archive order.
    members: Vec<String>,
    /// The names without their `.npy` suffix, aligned with `members`.
    names: Vec<String>,
}

impl<R: Read + Seek> fmt::Debug for NpzReader<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NpzReader").field("path", &self.path).field("names", &self.names).finish()
    }
}

impl NpzReader<BufReader<File>> {
    /// Opens a `.npz` file and reads its directory (no array data).
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|e| io_err(path, e))?;
        NpzReader::new(BufReader::new(file), path.display().to_string())
    }
}

impl<R: Read + Seek> NpzReader<R> {
    /// Reads the directory of the archive in `reader` (a file, a `Cursor` over bytes,
    /// ...); `name` is used in error messages.
    pub fn new(mut reader: R, name: impl Into<String>) -> Result<Self> {
        let path = name.into();
        let archive_len = reader.seek(SeekFrom::End(0)).map_err(|e| Error::Io { path: path.clone(), source: e })?;
        let mut archive = ZipArchive::new(reader).map_err(|e| zip_err(&path, "opening the archive", e))?;
        let mut members = Vec::with_capacity(archive.len());
        // The byte ranges (local header through data) of the members: they must lie
        // inside the file and must not share bytes, or a small archive could name the
        // same compressed data many times over and inflate to a multiple of what any
        // real archive holds. Keyed by start: (end, index in `members`).
        let mut spans: BTreeMap<u64, (u64, usize)> = BTreeMap::new();
        for i in 0..archive.len() {
            let f = archive
                .by_index_raw(i)
                .map_err(|e| zip_err(&path, &format!("reading the local header of member {i}"), e))?;
            let member = f.name().to_string();
            let start = f.header_start();
            let data_start = f.data_start().unwrap_or(start);
            let end =
                data_start.checked_add(f.compressed_size()).filter(|&end| end <= archive_len).ok_or_else(|| {
                    format_err(
                        &path,
                        format!(
                            "truncated archive: member {member:?} has {} bytes of data from byte {data_start}, \
                         past the end of the {archive_len}-byte file",
                            f.compressed_size()
                        ),
                    )
                })?;
            // The spans so far are disjoint, so only the nearest one on each side can overlap.
            let before = spans.range(..=start).next_back().filter(|(_, &(e, _))| e > start);
            let after = spans.range(start..).next().filter(|(&s, _)| s < end);
            if let Some((_, &(_, other))) = before.or(after) {
                return Err(format_err(
                    &path,
                    format!(
                        "corrupt archive: member {member:?} (bytes {start}..{end}) overlaps member {:?}",
                        members[other]
                    ),
                ));
            }
            spans.insert(start, (end, members.len()));
            members.push(member);
        }
        let names = members.iter().map(|m| m.strip_suffix(".npy").unwrap_or(m).to_string()).collect();
        Ok(NpzReader { archive, path, members, names })
    }

    /// The array names, in archive order, without the `.npy` suffix of the members
    /// (NumPy's `NpzFile.files`).
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The number of arrays.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the archive holds no array.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Whether [`load`](Self::load) knows `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.index_of(name).is_some()
    }

    /// Loads one array, reading and inflating only its member (NumPy's `npz[name]`).
    ///
    /// `name` is an array name from [`names`](Self::names) or a member name as stored
    /// (`"x.npy"`), tried in NumPy's order: the stored name first. An unknown name is
    /// an [`Error::InvalidArgument`]; a corrupt member a [`Error::Format`] naming it.
    pub fn load(&mut self, name: &str) -> Result<Tensor> {
        match self.index_of(name) {
            Some(i) => self.load_index(i),
            None => {
                let shown: Vec<&str> = self.names.iter().take(NAMES_SHOWN).map(String::as_str).collect();
                let more = if self.names.len() > NAMES_SHOWN { ", ..." } else { "" };
                Err(Error::arg(
                    "NpzReader::load",
                    format!("{} has no array named {name:?} (it has {shown:?}{more})", self.path),
                ))
            }
        }
    }

    /// Loads every array, in archive order.
    pub fn load_all(&mut self) -> Result<Vec<(String, Tensor)>> {
        (0..self.members.len()).map(|i| Ok((self.names[i].clone(), self.load_index(i)?))).collect()
    }

    fn index_of(&self, name: &str) -> Option<usize> {
        let with_suffix = format!("{name}.npy");
        self.members.iter().position(|m| m == name).or_else(|| self.members.iter().position(|m| *m == with_suffix))
    }

    fn load_index(&mut self, i: usize) -> Result<Tensor> {
        let member = self.members[i].as_str();
        let path = self.path.as_str();
        // Problems with the zip container name the archive and say which member;
        // problems with the .npy inside name "archive:member".
        let at = format!("{path}:{member}");
        let err = |msg: String| format_err(path, format!("member {member:?}: {msg}"));
        let file = self.archive.by_index(i).map_err(|e| err(format!("opening: {e}")))?;
        let declared = file.size();
        let csize = file.compressed_size();
        match file.compression() {
            CompressionMethod::Stored if declared != csize => {
                return Err(err(format!("stored member has compressed size {csize} but size {declared}")));
            }
            CompressionMethod::Stored => {}
            CompressionMethod::Deflated => {
                let most = csize.saturating_mul(MAX_DEFLATE_RATIO).saturating_add(DEFLATE_SLACK);
                if declared > most {
                    return Err(err(format!(
                        "declared size {declared} cannot come from {csize} bytes of deflate data (at most {most})"
                    )));
                }
            }
            m => return Err(err(format!("compression method {m} is not supported (only stored and deflated)"))),
        }
        let mut r = MemberReader { file, declared, got: 0, err: &err };

        // The preamble, then the header it announces, then exactly the data the
        // header describes: each read is sized by what was checked before it.
        let mut head = Vec::new();
        r.read_into(&mut head, declared.min(Preamble::MAX_LEN as u64) as usize)?;
        let pre = parse_preamble(&head, &at)?;
        let header_end = pre.start.checked_add(pre.header_len).filter(|&end| end as u64 <= declared);
        let Some(header_end) = header_end else {
            return Err(pre.header_cut_off(usize::try_from(declared).unwrap_or(usize::MAX), &at));
        };
        // A short header leaves the first data bytes in `head`.
        let mut data = if head.len() > header_end { head.split_off(header_end) } else { Vec::new() };
        let missing = header_end - head.len();
        r.read_into(&mut head, missing)?;
        let layout = parse_layout(&head[pre.start..], pre.utf8, &at)?;
        layout.check_data_len(usize::try_from(declared - header_end as u64).unwrap_or(usize::MAX), &at)?;
        let missing = layout.nbytes - data.len(); // `data` holds at most the declared data bytes
        r.read_into(&mut data, missing)?;
        r.finish()?;
        layout.tensor(&data)
    }
}

/// Reads a member in pieces of checked sizes, and checks at the end that it holds
/// exactly its declared size and the right CRC.
struct MemberReader<'a, 'b, R: Read + Seek, E: Fn(String) -> Error> {
    file: ZipFile<'a, R>,
    declared: u64,
    got: u64,
    err: &'b E,
}

impl<R: Read + Seek, E: Fn(String) -> Error> MemberReader<'_, '_, R, E> {
    /// Appends the next `n` bytes to `buf`; the caller has checked that they fit the
    /// declared size, and the buffer grows by `n` at most, fallibly.
    fn read_into(&mut self, buf: &mut Vec<u8>, n: usize) -> Result<()> {
        buf.try_reserve_exact(n).map_err(|_| Error::OutOfMemory { device: "cpu".into(), bytes: n })?;
        let got = (&mut self.file).take(n as u64).read_to_end(buf).map_err(|e| (self.err)(read_failure(&e)))?;
        self.got += got as u64;
        if got < n {
            return Err((self.err)(format!(
                "the data ends after {} bytes but the directory says {}",
                self.got, self.declared
            )));
        }
        Ok(())
    }

    /// Checks that the member ends here; reaching its end checks its CRC.
    fn finish(mut self) -> Result<()> {
        let mut probe = [0u8; 1];
        match self.file.read(&mut probe) {
            Ok(0) => Ok(()),
            Ok(_) => Err((self.err)(format!("the data runs past the {} bytes the directory says", self.declared))),
            Err(e) => Err((self.err)(read_failure(&e))),
        }
    }
}

/// What went wrong reading a member's data.
fn read_failure(e: &std::io::Error) -> String {
    // The zip crate's CRC check reports itself with this message.
    if e.kind() == ErrorKind::InvalidData && e.to_string() == "Invalid checksum" {
        "CRC mismatch: the data does not match the CRC-32 in the directory".to_string()
    } else {
        format!("reading the data: {e}")
    }
}

/// A zip error while reading the directory: a format error naming the archive, or an
/// I/O error where the reader itself failed.
fn zip_err(path: &str, what: &str, e: ZipError) -> Error {
    match e {
        ZipError::Io(io)
            if !matches!(io.kind(), ErrorKind::UnexpectedEof | ErrorKind::InvalidData | ErrorKind::InvalidInput) =>
        {
            Error::Io { path: path.to_string(), source: io }
        }
        e => format_err(path, format!("{what}: {}", e)),
    }
}

/// Reads every array of a `.npz` file (stored or deflated, ZIP64 or not), in archive
/// order. For one array of a large archive, [`NpzReader::load`] reads only that one.
///
/// Names lose their `.npy` suffix, as with NumPy's `np.load(...)[name]`.
///
/// ```
/// use data::npy::{read_npz, write_npz};
/// use tensor_core::Tensor;
///
/// let path = std::env::temp_dir().join(format!("read_npz_doc_{}.npz", std::process::id()));
/// let x = Tensor::from_vec(vec![1.0f32, 2.0], [2])?;
/// let y = Tensor::from_vec(vec![true, false, true], [3])?;
/// write_npz(&path, &[("x", &x), ("y", &y)])?;
/// let arrays = read_npz(&path)?;
/// assert_eq!(arrays[0].0, "x");
/// assert_eq!(arrays[1].1.to_vec::<bool>()?, vec![true, false, true]);
/// # std::fs::remove_file(&path).ok();
/// # Ok::<(), tensor_core::Error>(())
/// ```
pub fn read_npz(path: impl AsRef<Path>) -> Result<Vec<(String, Tensor)>> {
    NpzReader::open(path)?.load_all()
}

/// Parses the bytes of a `.npz` archive; `name` is used in error messages.
pub fn npz_from_bytes(bytes: &[u8], name: &str) -> Result<Vec<(String, Tensor)>> {
    NpzReader::new(Cursor::new(bytes), name)?.load_all()
}

/// Writes named tensors as an uncompressed `.npz` archive (NumPy's `np.savez`).
///
/// Each name gets a `.npy` suffix inside the archive. Names must be distinct. Like
/// NumPy, every member carries ZIP64 sizes, so no array is too large; the archive
/// is written as it goes, one member in memory at a time.
pub fn write_npz<S: AsRef<str>, T: Borrow<Tensor>>(path: impl AsRef<Path>, arrays: &[(S, T)]) -> Result<()> {
    write_npz_file(path.as_ref(), arrays, false)
}

/// Writes named tensors as a deflate-compressed `.npz` archive (NumPy's
/// `np.savez_compressed`).
pub fn write_npz_compressed<S: AsRef<str>, T: Borrow<Tensor>>(path: impl AsRef<Path>, arrays: &[(S, T)]) -> Result<()> {
    write_npz_file(path.as_ref(), arrays, true)
}

/// Serializes named tensors as the bytes of a `.npz` archive.
pub fn npz_to_bytes<S: AsRef<str>, T: Borrow<Tensor>>(arrays: &[(S, T)], compress: bool) -> Result<Vec<u8>> {
    Ok(write_archive(Cursor::new(Vec::new()), arrays, compress, None)?.into_inner())
}

fn write_npz_file<S: AsRef<str>, T: Borrow<Tensor>>(path: &Path, arrays: &[(S, T)], compress: bool) -> Result<()> {
    check_names(arrays)?;
    let file = File::create(path).map_err(|e| io_err(path, e))?;
    let result = write_archive(BufWriter::new(file), arrays, compress, Some(path))
        .and_then(|w| w.into_inner().map(drop).map_err(|e| io_err(path, e.into_error())));
    if result.is_err() {
        // Leave no half-written archive behind.
        std::fs::remove_file(path).ok();
    }
    result
}

/// The member names (`name.npy`), or an error if two arrays share a name.
fn check_names<S: AsRef<str>, T>(arrays: &[(S, T)]) -> Result<Vec<String>> {
    let mut files: Vec<String> = Vec::with_capacity(arrays.len());
    for (name, _) in arrays {
        let file = format!("{}.npy", name.as_ref());
        if files.contains(&file) {
            return Err(Error::arg("write_npz", format!("the name {:?} appears twice", name.as_ref())));
        }
        files.push(file);
    }
    Ok(files)
}

fn write_archive<W: Write + Seek, S: AsRef<str>, T: Borrow<Tensor>>(
    writer: W,
    arrays: &[(S, T)],
    compress: bool,
    path: Option<&Path>,
) -> Result<W> {
    let files = check_names(arrays)?;
    let fail = |e: ZipError| match (e, path) {
        (ZipError::Io(io), Some(path)) => io_err(path, io),
        (e, _) => Error::arg("write_npz", e.to_string()),
    };
    let method = if compress { CompressionMethod::Deflated } else { CompressionMethod::Stored };
    // A fixed date (1980-01-01) keeps the output reproducible. ZIP64 sizes on every
    // member, as NumPy writes them (`force_zip64=True`): 20 bytes per member, and no
    // size limit on an array.
    let options = SimpleFileOptions::DEFAULT.compression_method(method).large_file(true);
    let mut zip = ZipWriter::new(writer);
    for (file, (_, t)) in files.into_iter().zip(arrays) {
        let bytes = npy_to_bytes(t.borrow())?;
        zip.start_file(file, options).map_err(fail)?;
        zip.write_all(&bytes).map_err(|e| fail(ZipError::Io(e)))?;
    }
    zip.finish().map_err(fail)
}
