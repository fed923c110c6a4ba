//! An in-memory [`FileSystem`] for the flush server, with the semantics a
//! logfile race depends on, so that concurrent adds, sends and refreshes
//! can be explored thread by thread (with loom, under the `loom` feature).
//!
//! As on Linux:
//!
//! - **Names are separate from files.** A directory maps names to inode
//!   numbers; unlinking a name leaves the file alive for every open handle,
//!   still readable and writable, with `nlink` 0. Renaming over a name
//!   unlinks the file it named.
//! - **Every open makes an open file description**, with its own offset
//!   and append flag. `flock` belongs to the description: a second open of
//!   the same file by the same thread still waits for the first's lock. A
//!   lock is granted at once or the caller sleeps until it is released (by
//!   an unlock, or by the last close of the description holding it).
//! - **Times** are whole seconds from the file system's own clock
//!   ([`MemFs::set_clock`]), which the kernel would read on create, write
//!   and truncate; reads leave the atime alone, as with `O_NOATIME`.
//!
//! What it leaves out: symbolic links, hard links made by anyone but
//! `rename`, permission checks (the server runs as the files' owner), and
//! `..` in paths.
//!
//! The locks and the sleeping are built on [`Primitives`]: the standard
//! library's by default ([`StdSync`]), loom's with the `loom` feature
//! ([`LoomSync`]), so that a loom model sees every point where a thread
//! may be preempted.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::io;
use std::ops::DerefMut;
use std::path::{Component, Path};
use std::sync::Arc;

use flushbed_vocab::Time;
use rustix::io::Errno;

use crate::fs::{FileSystem, Metadata};

/// The file type bits of a regular file and of a directory.
const S_IFREG: u32 = 0o100000;
const S_IFDIR: u32 = 0o040000;

/// The inode number of `/`.
const ROOT: u64 = 1;

/// The device number every file reports.
const DEVICE: u64 = 1;

/// The mutex and condition variable the file system is built on.
pub trait Primitives: Send + Sync + 'static {
    type Mutex: Send + Sync;
    type Guard<'a>: DerefMut<Target = Tree>;
    type Condvar: Send + Sync;

    fn mutex(tree: Tree) -> Self::Mutex;
    fn lock(mutex: &Self::Mutex) -> Self::Guard<'_>;
    fn condvar() -> Self::Condvar;
    fn wait<'a>(condvar: &Self::Condvar, guard: Self::Guard<'a>) -> Self::Guard<'a>;
    fn notify_all(condvar: &Self::Condvar);
}

/// The standard library's primitives.
#[derive(Debug, Clone, Copy, Default)]
pub struct StdSync;

impl Primitives for StdSync {
    type Mutex = std::sync::Mutex<Tree>;
    type Guard<'a> = std::sync::MutexGuard<'a, Tree>;
    type Condvar = std::sync::Condvar;

    fn mutex(tree: Tree) -> Self::Mutex {
        std::sync::Mutex::new(tree)
    }

    fn lock(mutex: &Self::Mutex) -> Self::Guard<'_> {
        mutex.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn condvar() -> Self::Condvar {
        std::sync::Condvar::new()
    }

    fn wait<'a>(condvar: &Self::Condvar, guard: Self::Guard<'a>) -> Self::Guard<'a> {
        condvar.wait(guard).unwrap_or_else(|e| e.into_inner())
    }

    fn notify_all(condvar: &Self::Condvar) {
        condvar.notify_all();
    }
}

/// loom's primitives: usable only inside `loom::model`.
#[cfg(feature = "loom")]
#[derive(Debug, Clone, Copy, Default)]
pub struct LoomSync;

#[cfg(feature = "loom")]
impl Primitives for LoomSync {
    type Mutex = loom::sync::Mutex<Tree>;
    type Guard<'a> = loom::sync::MutexGuard<'a, Tree>;
    type Condvar = loom::sync::Condvar;

    fn mutex(tree: Tree) -> Self::Mutex {
        loom::sync::Mutex::new(tree)
    }

    fn lock(mutex: &Self::Mutex) -> Self::Guard<'_> {
        mutex.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn condvar() -> Self::Condvar {
        loom::sync::Condvar::new()
    }

    fn wait<'a>(condvar: &Self::Condvar, guard: Self::Guard<'a>) -> Self::Guard<'a> {
        condvar.wait(guard).unwrap_or_else(|e| e.into_inner())
    }

    fn notify_all(condvar: &Self::Condvar) {
        condvar.notify_all();
    }
}

enum Kind {
    File(Vec<u8>),
    /// Names in the order they were made: the order `readdir` returns.
    Dir(Vec<(OsString, u64)>),
}

struct Inode {
    kind: Kind,
    /// Permission bits.
    mode: u32,
    nlink: u64,
    atime: Time,
    mtime: Time,
    /// The open file description holding the `flock`.
    locked_by: Option<u64>,
}

struct Description {
    ino: u64,
    offset: u64,
    append: bool,
}

/// The whole file system: inodes, names, open file descriptions.
pub struct Tree {
    inodes: BTreeMap<u64, Inode>,
    descriptions: BTreeMap<u64, Description>,
    next_ino: u64,
    next_description: u64,
    clock: Time,
}

fn errno(errno: Errno) -> io::Error {
    io::Error::from_raw_os_error(errno.raw_os_error())
}

impl Tree {
    fn new() -> Tree {
        let root = Inode {
            kind: Kind::Dir(Vec::new()),
            mode: 0o755,
            nlink: 2,
            atime: 0,
            mtime: 0,
            locked_by: None,
        };
        Tree {
            inodes: BTreeMap::from([(ROOT, root)]),
            descriptions: BTreeMap::new(),
            next_ino: ROOT + 1,
            next_description: 1,
            clock: 0,
        }
    }

    fn inode(&self, ino: u64) -> io::Result<&Inode> {
        self.inodes.get(&ino).ok_or_else(|| errno(Errno::BADF))
    }

    fn inode_mut(&mut self, ino: u64) -> io::Result<&mut Inode> {
        self.inodes.get_mut(&ino).ok_or_else(|| errno(Errno::BADF))
    }

    fn entries(&self, dir: u64) -> io::Result<&Vec<(OsString, u64)>> {
        match &self.inode(dir)?.kind {
            Kind::Dir(entries) => Ok(entries),
            Kind::File(_) => Err(errno(Errno::NOTDIR)),
        }
    }

    fn entries_mut(&mut self, dir: u64) -> io::Result<&mut Vec<(OsString, u64)>> {
        match &mut self.inode_mut(dir)?.kind {
            Kind::Dir(entries) => Ok(entries),
            Kind::File(_) => Err(errno(Errno::NOTDIR)),
        }
    }

    fn lookup(&self, dir: u64, name: &OsStr) -> io::Result<Option<u64>> {
        let entries = self.entries(dir)?;
        Ok(entries.iter().find(|(n, _)| n == name).map(|&(_, ino)| ino))
    }

    /// The directory a path's last name is in, and that name.
    fn parent<'p>(&self, path: &'p Path) -> io::Result<(u64, &'p OsStr)> {
        let name = path.file_name().ok_or_else(|| errno(Errno::INVAL))?;
        let dir = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => self.resolve(parent)?,
            _ => ROOT,
        };
        self.entries(dir)?;
        Ok((dir, name))
    }

    fn resolve(&self, path: &Path) -> io::Result<u64> {
        let mut ino = ROOT;
        for component in path.components() {
            match component {
                Component::RootDir | Component::CurDir => {}
                Component::Normal(name) => {
                    ino = self.lookup(ino, name)?.ok_or_else(|| errno(Errno::NOENT))?;
                }
                Component::ParentDir | Component::Prefix(_) => return Err(errno(Errno::INVAL)),
            }
        }
        Ok(ino)
    }

    fn metadata(&self, ino: u64) -> io::Result<Metadata> {
        let inode = self.inode(ino)?;
        let (kind, size) = match &inode.kind {
            Kind::File(data) => (S_IFREG, data.len() as u64),
            Kind::Dir(entries) => (S_IFDIR, entries.len() as u64),
        };
        Ok(Metadata {
            dev: DEVICE,
            ino,
            mode: kind | inode.mode,
            nlink: inode.nlink,
            size,
            atime: inode.atime,
            mtime: inode.mtime,
        })
    }

    fn make(&mut self, dir: u64, name: &OsStr, kind: Kind, mode: u32) -> io::Result<u64> {
        let ino = self.next_ino;
        self.next_ino += 1;
        let nlink = if matches!(kind, Kind::Dir(_)) { 2 } else { 1 };
        let inode = Inode {
            kind,
            mode: mode & 0o7777,
            nlink,
            atime: self.clock,
            mtime: self.clock,
            locked_by: None,
        };
        self.inodes.insert(ino, inode);
        self.entries_mut(dir)?.push((name.to_os_string(), ino));
        Ok(ino)
    }

    fn describe(&mut self, ino: u64, append: bool) -> u64 {
        let id = self.next_description;
        self.next_description += 1;
        let description = Description {
            ino,
            offset: 0,
            append,
        };
        self.descriptions.insert(id, description);
        id
    }

    fn description(&self, id: u64) -> io::Result<&Description> {
        self.descriptions.get(&id).ok_or_else(|| errno(Errno::BADF))
    }

    fn file_data(&mut self, ino: u64) -> io::Result<&mut Vec<u8>> {
        match &mut self.inode_mut(ino)?.kind {
            Kind::File(data) => Ok(data),
            Kind::Dir(_) => Err(errno(Errno::ISDIR)),
        }
    }

    /// Takes a name away from its file; the file lives on while open.
    fn unlink_entry(&mut self, dir: u64, name: &OsStr) -> io::Result<u64> {
        let entries = self.entries_mut(dir)?;
        let at = entries
            .iter()
            .position(|(n, _)| n == name)
            .ok_or_else(|| errno(Errno::NOENT))?;
        let (_, ino) = entries.remove(at);
        let inode = self.inode_mut(ino)?;
        inode.nlink = inode.nlink.saturating_sub(1);
        self.forget_if_unused(ino);
        Ok(ino)
    }

    fn forget_if_unused(&mut self, ino: u64) {
        let linked = self.inodes.get(&ino).is_some_and(|inode| inode.nlink > 0);
        let open = self.descriptions.values().any(|d| d.ino == ino);
        if !linked && !open {
            self.inodes.remove(&ino);
        }
    }

    /// The last close of a description: its lock goes with it.
    fn close(&mut self, id: u64) -> bool {
        let Some(description) = self.descriptions.remove(&id) else {
            return false;
        };
        let mut released = false;
        if let Some(inode) = self.inodes.get_mut(&description.ino) {
            if inode.locked_by == Some(id) {
                inode.locked_by = None;
                released = true;
            }
        }
        self.forget_if_unused(description.ino);
        released
    }
}

struct Shared<P: Primitives> {
    tree: P::Mutex,
    /// Signalled whenever a lock is released.
    released: P::Condvar,
}

/// The in-memory file system; clones share it.
pub struct MemFs<P: Primitives = StdSync> {
    shared: Arc<Shared<P>>,
}

impl<P: Primitives> Clone for MemFs<P> {
    fn clone(&self) -> Self {
        MemFs {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<P: Primitives> Default for MemFs<P> {
    fn default() -> Self {
        MemFs::new()
    }
}

/// An open file: one open file description.
pub struct MemFile<P: Primitives = StdSync> {
    shared: Arc<Shared<P>>,
    description: u64,
}

impl<P: Primitives> Drop for MemFile<P> {
    fn drop(&mut self) {
        let released = P::lock(&self.shared.tree).close(self.description);
        if released {
            P::notify_all(&self.shared.released);
        }
    }
}

impl<P: Primitives> MemFs<P> {
    /// An empty file system: only `/`.
    pub fn new() -> MemFs<P> {
        MemFs {
            shared: Arc::new(Shared {
                tree: P::mutex(Tree::new()),
                released: P::condvar(),
            }),
        }
    }

    /// Sets the clock the file system stamps new files, writes and
    /// truncations with.
    pub fn set_clock(&self, now: Time) {
        self.tree().clock = now;
    }

    fn tree(&self) -> P::Guard<'_> {
        P::lock(&self.shared.tree)
    }

    fn file(&self, description: u64) -> MemFile<P> {
        MemFile {
            shared: Arc::clone(&self.shared),
            description,
        }
    }

    fn open_existing(&self, path: &Path, append: bool) -> io::Result<MemFile<P>> {
        let mut tree = self.tree();
        let ino = tree.resolve(path)?;
        if matches!(tree.inode(ino)?.kind, Kind::Dir(_)) {
            return Err(errno(Errno::ISDIR));
        }
        let description = tree.describe(ino, append);
        drop(tree);
        Ok(self.file(description))
    }

    fn write_into(&self, file: &MemFile<P>, offset: Option<u64>, buf: &[u8]) -> io::Result<usize> {
        let mut tree = self.tree();
        let description = tree.description(file.description)?;
        let (ino, append, current) = (description.ino, description.append, description.offset);
        let clock = tree.clock;
        let data = tree.file_data(ino)?;
        let at = match offset {
            Some(at) => at,
            None if append => data.len() as u64,
            None => current,
        };
        let at = usize::try_from(at).map_err(|_| errno(Errno::FBIG))?;
        let end = at + buf.len();
        if data.len() < end {
            data.resize(end, 0);
        }
        data[at..end].copy_from_slice(buf);
        tree.inode_mut(ino)?.mtime = clock;
        if offset.is_none() {
            if let Some(description) = tree.descriptions.get_mut(&file.description) {
                description.offset = end as u64;
            }
        }
        Ok(buf.len())
    }
}

impl<P: Primitives> FileSystem for MemFs<P> {
    type File = MemFile<P>;

    fn open_append(&self, path: &Path, mode: u32) -> io::Result<(MemFile<P>, bool)> {
        let mut tree = self.tree();
        let (dir, name) = tree.parent(path)?;
        let (ino, created) = match tree.lookup(dir, name)? {
            Some(ino) if matches!(tree.inode(ino)?.kind, Kind::Dir(_)) => {
                return Err(errno(Errno::ISDIR))
            }
            Some(ino) => (ino, false),
            None => (tree.make(dir, name, Kind::File(Vec::new()), mode)?, true),
        };
        let description = tree.describe(ino, true);
        drop(tree);
        Ok((self.file(description), created))
    }

    fn open_read_write(&self, path: &Path) -> io::Result<MemFile<P>> {
        self.open_existing(path, false)
    }

    fn open_queue_file(&self, path: &Path) -> io::Result<(MemFile<P>, Metadata)> {
        let file = self.open_existing(path, false)?;
        let meta = self.fstat(&file)?;
        if meta.nlink != 1 {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("file has {} hard links", meta.nlink),
            ));
        }
        Ok((file, meta))
    }

    fn read_file(&self, path: &Path) -> io::Result<Vec<u8>> {
        let mut tree = self.tree();
        let ino = tree.resolve(path)?;
        Ok(tree.file_data(ino)?.clone())
    }

    fn lock_exclusive(&self, file: &MemFile<P>) -> io::Result<()> {
        let mut tree = self.tree();
        loop {
            let ino = tree.description(file.description)?.ino;
            let inode = tree.inode_mut(ino)?;
            match inode.locked_by {
                None => {
                    inode.locked_by = Some(file.description);
                    return Ok(());
                }
                Some(holder) if holder == file.description => return Ok(()),
                Some(_) => tree = P::wait(&self.shared.released, tree),
            }
        }
    }

    fn unlock(&self, file: &MemFile<P>) -> io::Result<()> {
        let mut tree = self.tree();
        let ino = tree.description(file.description)?.ino;
        let inode = tree.inode_mut(ino)?;
        if inode.locked_by == Some(file.description) {
            inode.locked_by = None;
            drop(tree);
            P::notify_all(&self.shared.released);
        }
        Ok(())
    }

    fn read(&self, file: &MemFile<P>, buf: &mut [u8]) -> io::Result<usize> {
        let mut tree = self.tree();
        let description = tree.description(file.description)?;
        let (ino, offset) = (description.ino, description.offset);
        let data = tree.file_data(ino)?;
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(data.len());
        let n = buf.len().min(data.len() - start);
        buf[..n].copy_from_slice(&data[start..start + n]);
        if let Some(description) = tree.descriptions.get_mut(&file.description) {
            description.offset += n as u64;
        }
        Ok(n)
    }

    fn write(&self, file: &MemFile<P>, buf: &[u8]) -> io::Result<usize> {
        self.write_into(file, None, buf)
    }

    fn write_at(&self, file: &MemFile<P>, offset: u64, buf: &[u8]) -> io::Result<usize> {
        self.write_into(file, Some(offset), buf)
    }

    fn truncate(&self, file: &MemFile<P>, len: u64) -> io::Result<()> {
        let mut tree = self.tree();
        let ino = tree.description(file.description)?.ino;
        let clock = tree.clock;
        let len = usize::try_from(len).map_err(|_| errno(Errno::FBIG))?;
        tree.file_data(ino)?.resize(len, 0);
        tree.inode_mut(ino)?.mtime = clock;
        Ok(())
    }

    fn fstat(&self, file: &MemFile<P>) -> io::Result<Metadata> {
        let tree = self.tree();
        let ino = tree.description(file.description)?.ino;
        tree.metadata(ino)
    }

    fn fchmod(&self, file: &MemFile<P>, mode: u32) -> io::Result<()> {
        let mut tree = self.tree();
        let ino = tree.description(file.description)?.ino;
        tree.inode_mut(ino)?.mode = mode & 0o7777;
        Ok(())
    }

    fn close(&self, file: MemFile<P>) -> io::Result<()> {
        drop(file);
        Ok(())
    }

    fn stat(&self, path: &Path) -> io::Result<Metadata> {
        let tree = self.tree();
        let ino = tree.resolve(path)?;
        tree.metadata(ino)
    }

    fn set_times(&self, path: &Path, atime: Time, mtime: Time) -> io::Result<()> {
        let mut tree = self.tree();
        let ino = tree.resolve(path)?;
        let inode = tree.inode_mut(ino)?;
        inode.atime = atime;
        inode.mtime = mtime;
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut tree = self.tree();
        let (from_dir, from_name) = tree.parent(from)?;
        let (to_dir, to_name) = tree.parent(to)?;
        let ino = tree
            .lookup(from_dir, from_name)?
            .ok_or_else(|| errno(Errno::NOENT))?;
        if let Some(existing) = tree.lookup(to_dir, to_name)? {
            if existing == ino {
                return Ok(());
            }
            tree.unlink_entry(to_dir, to_name)?;
        }
        let entries = tree.entries_mut(from_dir)?;
        entries.retain(|(name, _)| name != from_name);
        tree.entries_mut(to_dir)?
            .push((to_name.to_os_string(), ino));
        Ok(())
    }

    fn unlink(&self, path: &Path) -> io::Result<()> {
        let mut tree = self.tree();
        let (dir, name) = tree.parent(path)?;
        let ino = tree.lookup(dir, name)?.ok_or_else(|| errno(Errno::NOENT))?;
        if matches!(tree.inode(ino)?.kind, Kind::Dir(_)) {
            return Err(errno(Errno::ISDIR));
        }
        tree.unlink_entry(dir, name)?;
        Ok(())
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<OsString>> {
        let tree = self.tree();
        let ino = tree.resolve(path)?;
        Ok(tree
            .entries(ino)?
            .iter()
            .map(|(name, _)| name.clone())
            .collect())
    }

    fn mkdir(&self, path: &Path, mode: u32) -> io::Result<()> {
        let mut tree = self.tree();
        let (dir, name) = tree.parent(path)?;
        if tree.lookup(dir, name)?.is_some() {
            return Err(errno(Errno::EXIST));
        }
        tree.make(dir, name, Kind::Dir(Vec::new()), mode)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::{is_not_found, read_to_end, write_all};

    fn fs() -> MemFs {
        let fs = MemFs::new();
        fs.mkdir(Path::new("/flush"), 0o700).unwrap();
        fs
    }

    #[test]
    fn an_unlinked_file_stays_writable_through_an_open_handle() {
        let fs = fs();
        let path = Path::new("/flush/example_com");
        let (file, created) = fs.open_append(path, 0o600).unwrap();
        assert!(created);
        fs.unlink(path).unwrap();
        write_all(&fs, &file, b"A1\n").unwrap();
        let meta = fs.fstat(&file).unwrap();
        assert_eq!((meta.nlink, meta.size), (0, 3));
        assert!(is_not_found(&fs.stat(path).unwrap_err()));

        // A new open by name makes a new file.
        let (_again, created) = fs.open_append(path, 0o600).unwrap();
        assert!(created);
        assert_eq!(fs.read_file(path).unwrap(), b"");
    }

    #[test]
    fn each_open_has_its_own_offset_and_append_writes_at_the_end() {
        let fs = fs();
        let path = Path::new("/flush/example_com");
        let (append, _) = fs.open_append(path, 0o600).unwrap();
        write_all(&fs, &append, b"A1\n").unwrap();
        let reader = fs.open_read_write(path).unwrap();
        write_all(&fs, &append, b"B2\n").unwrap();
        assert_eq!(read_to_end(&fs, &reader).0, b"A1\nB2\n");
        fs.truncate(&reader, 0).unwrap();
        write_all(&fs, &append, b"C3\n").unwrap();
        assert_eq!(fs.read_file(path).unwrap(), b"C3\n");
    }

    #[test]
    fn a_lock_belongs_to_the_open_file_description_and_goes_with_its_close() {
        let fs = fs();
        let path = Path::new("/flush/example_com");
        let (first, _) = fs.open_append(path, 0o600).unwrap();
        let second = fs.open_read_write(path).unwrap();
        fs.lock_exclusive(&first).unwrap();
        fs.lock_exclusive(&first).unwrap();

        let waiter = {
            let fs = fs.clone();
            std::thread::spawn(move || {
                fs.lock_exclusive(&second).unwrap();
                fs.unlock(&second).unwrap();
            })
        };
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(!waiter.is_finished(), "the second description must wait");
        fs.close(first).unwrap();
        waiter.join().unwrap();
    }

    #[test]
    fn rename_over_a_name_unlinks_what_it_named_and_keeps_directory_order() {
        let fs = fs();
        fs.mkdir(Path::new("/incoming"), 0o700).unwrap();
        let (kept, _) = fs.open_append(Path::new("/incoming/A1"), 0o700).unwrap();
        fs.open_append(Path::new("/flush/b_x"), 0o600).unwrap();
        fs.open_append(Path::new("/flush/A1"), 0o700).unwrap();
        fs.open_append(Path::new("/flush/a_x"), 0o600).unwrap();
        fs.rename(Path::new("/flush/A1"), Path::new("/incoming/A1"))
            .unwrap();
        assert_eq!(fs.fstat(&kept).unwrap().nlink, 0);
        assert_eq!(
            fs.list_dir(Path::new("/flush")).unwrap(),
            vec![OsString::from("b_x"), OsString::from("a_x")]
        );
    }

    #[test]
    fn writes_and_new_files_take_the_file_systems_clock_and_reads_do_not() {
        let fs = fs();
        fs.set_clock(100);
        let path = Path::new("/flush/example_com");
        let (file, _) = fs.open_append(path, 0o600).unwrap();
        fs.set_clock(200);
        write_all(&fs, &file, b"A1\n").unwrap();
        fs.set_clock(300);
        read_to_end(&fs, &fs.open_read_write(path).unwrap());
        let meta = fs.stat(path).unwrap();
        assert_eq!((meta.atime, meta.mtime), (100, 200));
        assert!(meta.is_file());
        assert_eq!(meta.permissions(), 0o600);
    }
}
