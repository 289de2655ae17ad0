//! Password hashing on a fixed pool of `WORKERS` threads: argon2 takes 19 MiB a
//! hash, so however many sign-ins arrive at once, at most `WORKERS` hashes are in
//! memory; the rest wait their turn (as cheap async tasks, not threads). Each
//! worker keeps its argon2 memory's addresses and reuses them, so the allocator never
//! has to give back (or fail to give back) 19 MiB per attempt; their pages are handed
//! back to the kernel after each hash, so a server that is not signing anyone in does
//! not hold them.

use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use std::cell::RefCell;
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};

/// Hashes computed at once, at most.
pub const WORKERS: usize = 2;

type Work = Box<dyn FnOnce() + Send>;

fn queue() -> &'static Mutex<mpsc::Sender<Work>> {
    static QUEUE: OnceLock<Mutex<mpsc::Sender<Work>>> = OnceLock::new();
    QUEUE.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Work>();
        let rx = std::sync::Arc::new(Mutex::new(rx));
        for i in 0..WORKERS {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("kiln-hash-{i}"))
                .spawn(move || loop {
                    let next = rx.lock().unwrap().recv();
                    match next {
                        Ok(work) => work(),
                        Err(_) => return,
                    }
                })
                .expect("start a password hashing thread");
        }
        Mutex::new(tx)
    })
}

/// Run `f` on the pool and wait for its answer without blocking the async threads.
pub async fn run<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, String> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let work: Work = Box::new(move || {
        let _ = tx.send(f());
    });
    queue().lock().unwrap().send(work).map_err(|_| "the password hashing threads stopped".to_string())?;
    rx.await.map_err(|_| "a password hashing task failed".to_string())
}

/// Stored hashes asking for more memory than this are refused (64 MiB).
const MAX_BLOCKS: usize = 64 * 1024;

thread_local! {
    static MEMORY: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// Run argon2 with this thread's kept memory.
fn argon2_into(argon: &Argon2, params: &Params, password: &[u8], salt: &[u8], out: &mut [u8]) -> Result<(), String> {
    let n = params.block_count();
    if n > MAX_BLOCKS {
        return Err(format!("a password hash asks for {n} KiB of memory (at most {MAX_BLOCKS})"));
    }
    MEMORY.with(|m| {
        let mut m = m.borrow_mut();
        if m.len() < n {
            m.resize(n, Block::default());
        }
        let hashed = argon.hash_password_into_with_memory(password, salt, out, &mut m[..n]).map_err(|e| e.to_string());
        release_pages(&mut m);
        hashed
    })
}

/// Hand the whole pages inside `memory` back to the kernel (`MADV_DONTNEED`): its
/// addresses stay ours and read as zeros until written again, so the next hash
/// reuses them without asking the allocator for 19 MiB.
fn release_pages(memory: &mut [Block]) {
    // The kernel's page size (4 KiB on x86-64, 16 or 64 KiB on some arm64 and ppc64 kernels):
    // madvise rounds its length up to it, so the range must be whole pages of it.
    let page = rustix::param::page_size();
    let start = memory.as_mut_ptr() as usize;
    let end = start + std::mem::size_of_val(memory);
    let (first, last) = (start.next_multiple_of(page), end / page * page);
    if last > first {
        // SAFETY: [first, last) lies inside `memory`, which this thread borrows mutably, and
        // it is private anonymous memory: after MADV_DONTNEED it reads as zeros, a valid
        // `Block` (plain u64s) that every hash overwrites before reading.
        let _ = unsafe { rustix::mm::madvise(first as *mut _, last - first, rustix::mm::Advice::LinuxDontNeed) };
    }
}

/// A PHC string (`$argon2id$v=19$…`, default parameters) for `password`, with a fresh salt.
pub fn hash(password: &[u8]) -> Result<String, String> {
    let params = Params::default();
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let salt: [u8; 16] = rand::random();
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    argon2_into(&argon, &params, password, &salt, &mut out)?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(|e| e.to_string())?,
        salt: Some(Salt::new(&salt).map_err(|e| e.to_string())?),
        hash: Some(Output::new(&out).map_err(|e| e.to_string())?),
    };
    Ok(phc.to_string())
}

/// Whether `password` matches the PHC string `stored`. A malformed hash never matches.
pub fn verify(password: &[u8], stored: &str) -> bool {
    let check = || -> Result<bool, String> {
        let h = PasswordHash::new(stored).map_err(|e| e.to_string())?;
        let algorithm = Algorithm::try_from(h.algorithm.as_str()).map_err(|e| e.to_string())?;
        let version = h.version.map(Version::try_from).transpose().map_err(|e| e.to_string())?.unwrap_or_default();
        let params = Params::try_from(&h).map_err(|e| e.to_string())?;
        let (Some(salt), Some(expected)) = (&h.salt, &h.hash) else { return Ok(false) };
        let mut out = vec![0u8; expected.len()];
        argon2_into(&Argon2::new(algorithm, version, params.clone()), &params, password, salt.as_ref(), &mut out)?;
        Ok(crate::auth::constant_time_eq(&out, expected.as_bytes()))
    };
    check().unwrap_or(false)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_hash_verifies_only_its_password_and_reads_hashes_made_by_the_argon2_crate() {
        let h = super::hash(b"correct horse").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(super::verify(b"correct horse", &h));
        assert!(!super::verify(b"wrong horse", &h));
        assert!(!super::verify(b"x", "not a hash"));
        use argon2::password_hash::PasswordHasher;
        let theirs = argon2::Argon2::default().hash_password(b"older user").unwrap().to_string();
        assert!(super::verify(b"older user", &theirs));
        let ours = super::hash(b"p").unwrap();
        use argon2::password_hash::PasswordVerifier;
        assert!(argon2::Argon2::default().verify_password(b"p", &argon2::PasswordHash::new(&ours).unwrap()).is_ok());
    }

    /// Resident pages of this process in [addr, addr + len), from /proc/self/pagemap
    /// (bit 63 of each page's entry: present in memory).
    fn resident_pages(addr: usize, len: usize) -> usize {
        use std::os::unix::fs::FileExt;
        let page = rustix::param::page_size();
        let pages = len / page;
        let mut entries = vec![0u8; pages * 8];
        std::fs::File::open("/proc/self/pagemap").unwrap().read_exact_at(&mut entries, (addr / page * 8) as u64).unwrap();
        entries.chunks(8).filter(|e| u64::from_le_bytes((*e).try_into().unwrap()) >> 63 == 1).count()
    }

    #[test]
    fn the_kept_memory_is_not_resident_between_hashes() {
        let h = super::hash(b"correct horse").unwrap();
        let (addr, len) = super::MEMORY.with(|m| (m.borrow().as_ptr() as usize, m.borrow().len() * 1024));
        assert!(len >= 19 << 20, "argon2 used {len} bytes");
        // At most the two partial pages at its ends stay resident.
        assert!(resident_pages(addr, len) <= 2, "{} pages of the hash's memory still resident", resident_pages(addr, len));
        // The same addresses serve the next hash, and it still verifies.
        assert!(super::verify(b"correct horse", &h));
        assert_eq!(super::MEMORY.with(|m| m.borrow().as_ptr() as usize), addr);
        assert!(resident_pages(addr, len) <= 2);
    }

    #[tokio::test]
    async fn no_more_than_the_workers_run_at_once() {
        use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
        static NOW: AtomicUsize = AtomicUsize::new(0);
        static MAX: AtomicUsize = AtomicUsize::new(0);
        let tasks: Vec<_> = (0..12)
            .map(|_| {
                tokio::spawn(super::run(|| {
                    let n = NOW.fetch_add(1, SeqCst) + 1;
                    MAX.fetch_max(n, SeqCst);
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    NOW.fetch_sub(1, SeqCst);
                }))
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert!(MAX.load(SeqCst) <= super::WORKERS, "{} ran at once", MAX.load(SeqCst));
    }
}
